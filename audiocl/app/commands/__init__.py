"""CLI subcommands; see ``audiocl.cli.COMMANDS``."""
