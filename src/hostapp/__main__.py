"""``python -m hostapp`` runs the ``hostapp`` command."""

from hostapp.cli import main

main()
