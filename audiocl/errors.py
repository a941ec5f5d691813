"""Typed errors. Library code raises these; only ``cli.py`` turns them into exit codes."""


def first_line(error: Exception) -> str:
    """The first line of an error's message (its type's name when it has none), for a one-line
    message that wraps an error raised by another library."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class AudioclError(Exception):
    """Base class: a problem the user can act on. ``exit_code`` is what the CLI returns."""

    exit_code = 1


class ConfigError(AudioclError):
    """A config file or ``--set`` override is invalid (unknown key, bad type or value)."""

    exit_code = 2


class AudioError(AudioclError):
    """An audio file cannot be used: missing, empty, corrupt, too short, NaN/Inf samples."""

    exit_code = 3

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class NoSpeechError(AudioError):
    """A recording holds less speech than the minimum (silence, hum, a click)."""


class DataError(AudioclError):
    """A corpus, manifest or trial list is malformed; the message names file and line."""

    exit_code = 3


class ModelError(AudioclError):
    """A checkpoint is missing, unreadable, or does not match what it is used with."""

    exit_code = 4


class StoreError(AudioclError):
    """The speaker store refuses an operation (unknown speaker, other model, ...)."""

    exit_code = 5


class StoreArgumentError(StoreError):
    """A store operation's own argument is invalid (a speaker name, an enrol mode, an embedding,
    a count): the request is at fault, not the store's state."""


class UnknownSpeakerError(StoreError):
    """The store has no speaker of that name."""


class ModelMismatchError(StoreError):
    """The store holds speakers of another model: their embeddings cannot be compared."""
