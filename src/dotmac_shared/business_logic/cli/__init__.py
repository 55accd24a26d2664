"""The ``dotmac-bl`` command line (Typer and Rich)."""

from dotmac_shared.business_logic.cli._app import app, main

__all__ = ["app", "main"]
