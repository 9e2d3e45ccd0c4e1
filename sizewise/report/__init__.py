"""Renderers: terminal (rich), Markdown and HTML views of cards and runs."""
