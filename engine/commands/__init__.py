"""One module per `homestream` subcommand (see engine/cli.py)."""
