"""The hh-exporter command."""

from ._main import main

__all__ = ["main"]
