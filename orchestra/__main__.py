"""``python -m orchestra`` runs the command line."""

from orchestra.cli import main

main()
