"""The `conveyor` command: thin. Parse, call, render. One module per area registers its commands."""

from __future__ import annotations

from conveyor.cli.main import main

__all__ = ["main"]
