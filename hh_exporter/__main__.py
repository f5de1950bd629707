"""``python -m hh_exporter`` runs the CLI."""

from .cli import main

# Guarded: `ingest --workers` spawns processes, which import the parent's main module
# (as __mp_main__) and must not run the CLI again.
if __name__ == "__main__":
    raise SystemExit(main())
