"""keel command line (Typer + Rich)."""
