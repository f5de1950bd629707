"""``python -m hh_exporter`` runs the CLI."""

from .cli import main

raise SystemExit(main())
