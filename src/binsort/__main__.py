"""``python -m binsort`` runs the ``binsort`` command."""

from binsort.cli import main

main()
