"""Lists of audio paths (``audiocl embed --list``, AS-Norm cohorts): one path per line; blank
lines and lines starting with ``#`` are skipped. A ``#`` inside a line is part of the path."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DataError


def read_path_list(path: str | os.PathLike, what: str = "file list") -> list[str]:
    """The entries of the list file ``path``, as written (callers resolve relative ones)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise DataError(f"{path}: cannot read the {what} ({e.strerror})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: the {what} is not UTF-8 text") from None
    return [s.strip() for s in text.splitlines() if s.strip() and not s.lstrip().startswith("#")]
