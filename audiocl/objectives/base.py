"""What every contrastive objective is to the trainer.

``forward(emb (V, B, D), labels (B,), feats (G, B, T, F) | None) -> (loss, logs)``: ``emb`` holds
the online embeddings of all ``V`` views of ``B`` utterances, the ``G`` global crops first, then
the local crops (multi-crop); ``feats`` are the global crops' features, for objectives whose
teacher runs its own encoder (``needs_feats``). ``labels`` are class ids, ``-1`` = unlabelled.
``logs`` are floats for ``metrics.jsonl``. ``set_step(k)`` sets step-dependent schedules (also
on resume); ``on_step(k)`` runs after the ``k``-th optimiser step (EMA updates).
"""

from __future__ import annotations

from torch import Tensor, nn


class ContrastiveObjective(nn.Module):
    needs_feats = False
    # keeps an EMA copy of the encoder in ``self.teacher`` (an ``EmaTeacher``)
    has_teacher = False

    def __init__(self, global_views: int):
        super().__init__()
        if global_views < 2:
            raise ValueError(f"{type(self).__name__} needs at least 2 global views")
        self.global_views = int(global_views)
        self.step = 0

    def check(self, emb: Tensor, feats: Tensor | None) -> None:
        if emb.dim() != 3 or emb.shape[0] < self.global_views:
            raise ValueError(
                f"{type(self).__name__}: expected (V >= {self.global_views}, B, D) embeddings, "
                f"got {tuple(emb.shape)}"
            )
        if self.needs_feats and (
            feats is None or tuple(feats.shape[:2]) != (self.global_views, emb.shape[1])
        ):
            raise ValueError(
                f"{type(self).__name__} needs the global views' features (G, B, T, F), got "
                f"{None if feats is None else tuple(feats.shape)}"
            )

    def teacher_encoder(self) -> nn.Module | None:
        """The EMA copy of the encoder, for objectives that keep one (MoCo, BYOL, DINO)."""
        return self.teacher.copies[0] if self.has_teacher else None

    def set_step(self, step: int) -> None:
        self.step = int(step)

    def on_step(self, step: int) -> None:
        self.set_step(step)
