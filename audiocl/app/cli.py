"""The ``audiocl`` command line: one subcommand per module in ``audiocl.app.commands``.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``
and imports heavy libraries inside ``run`` so that ``--help`` stays fast. Library errors
(``AudioclError``) become one line on stderr and the error's exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import AudioclError

# name -> module under audiocl.app.commands (plain dict registry; order is the help order)
COMMANDS = {
    "synth": "synth",
    "shard": "shard",
    "train": "train",
    "quickstart": "quickstart",
    "embed": "embed",
    "enroll": "enroll",
    "speakers": "speakers",
    "verify": "verify",
    "identify": "identify",
    "eval": "evaluate",
    "import": "import_model",
    "export": "export",
    "average": "average",
    "ensemble": "ensemble",
    "adapt": "adapt",
    "serve": "serve",
}

EXIT_CODES = """exit codes:
  0  success (verify: same speaker)
  1  failure (verify: different speaker)
  2  bad usage or config
  3  bad input data (audio file, corpus, trial list)
  4  model/checkpoint problem (verify: no calibrated threshold and no --threshold)
  5  speaker-store problem
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="audiocl",
        description="Speaker verification with contrastive learning.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"audiocl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f".commands.{module_name}", __package__)
        p = sub.add_parser(
            name,
            help=module.HELP,
            description=getattr(module, "DESCRIPTION", module.HELP),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


# not 1: verify's "different speakers" (a script must not read a full disk as a decision)
OS_ERROR = 6


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        with _library_log():
            return int(args._run(args) or 0)
    except AudioclError as e:
        return _fail(args, str(e), e.exit_code)
    except OSError as e:  # a folder that cannot be written, a full disk: the user's to fix
        return _fail(args, str(e), OS_ERROR)
    except KeyboardInterrupt:
        return _fail(args, "interrupted", 130)


def _library_log():
    """The library logs (``logging.getLogger("audiocl")``); the command line shows its records
    on stderr, one line each, written above any progress bar."""
    import logging

    from tqdm.contrib.logging import logging_redirect_tqdm

    lib = logging.getLogger("audiocl")
    if not any(getattr(h, "_audiocl_cli", False) for h in lib.handlers):
        handler = logging.StreamHandler()  # stderr
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._audiocl_cli = True
        lib.addHandler(handler)
        lib.setLevel(logging.INFO)
    return logging_redirect_tqdm([lib])


def _fail(args, message: str, code: int) -> int:
    """One line on stderr, or with ``--json`` one JSON object on stdout; returns ``code``."""
    if getattr(args, "json", False):
        import json

        print(json.dumps({"error": message, "exit_code": code}))
    else:
        print(f"audiocl {args.command}: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
