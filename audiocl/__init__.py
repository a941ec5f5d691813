"""audiocl: speaker verification with contrastive learning."""

__version__ = "0.1.0"
