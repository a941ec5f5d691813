"""CLI subcommands; see ``audiocl.app.cli.COMMANDS``."""
