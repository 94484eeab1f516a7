"""``python -m dps_cli`` runs the command-line app."""

from dps_cli.cli.app import main

main()
