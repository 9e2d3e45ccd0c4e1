"""Command-line layer (Typer + rich). Imports the API; nothing imports it."""
