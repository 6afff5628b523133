"""Allows ``python -m server``, the same as the ``library`` console script."""

from server.app.cli import main

main()
