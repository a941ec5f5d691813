"""audiocl: speaker verification with contrastive learning.

The Python API (``audiocl.load_model``, ``audiocl.SpeakerStore``, ...) is imported lazily on first
use, so ``import audiocl`` (and ``audiocl --help``) stays fast and does not import torch.
"""

__version__ = "0.1.0"

# public name -> module that defines it (plain dict registry)
_LAZY = {
    "load_model": "app.api",
    "Model": "app.api",
    "Speakers": "app.api",
    "Verification": "app.api",
    "SpeakerStore": "inference.store",
    "Embedder": "inference.embed",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'audiocl' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
