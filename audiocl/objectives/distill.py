"""Distillation from a frozen teacher's embeddings: the student learns, without labels, to put
each crop where the teacher puts the whole clean utterance.

The teacher's embeddings ``(B, Dt)`` are computed once per utterance before training
(``audiocl.training.teacher``), so a step pays only for a linear projection of the student's
``(V, B, D)`` embeddings into the teacher's space (``D`` and ``Dt`` may differ). Two losses:

- ``cosine``: regression, ``1 - cos(W s, t)`` for every view, the usual embedding-level
  distillation of speaker verification;
- ``clip``: a CLIP-style cross-entropy over the batch, the two "modalities" being the two
  encoders: each student view must pick its own utterance's teacher embedding among the batch's
  (and each teacher embedding its student view), with a learned temperature. Other utterances of
  a known speaker, and repeats of one utterance, are no negatives.

Rows whose teacher embedding is missing (NaN: the teacher could not embed the file) are left out.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .clip import MAX_LOGIT_SCALE
from .common import no_autocast
from .simclr import same_speaker_mask

LOSSES = ("cosine", "clip", "both")
HEAD_INITS = ("random", "identity")
# two teacher rows this close are one utterance drawn twice in a batch (sampling with replacement)
SAME_UTTERANCE_COS = 0.9999


def clip_distill(student: Tensor, teacher: Tensor, logit_scale: Tensor, labels: Tensor) -> Tensor:
    """``student (V, B, Dt)`` projections against ``teacher (B, Dt)``: for each view the mean of
    the student-to-teacher and teacher-to-student cross-entropies, averaged over views.
    ``labels (B,)`` (-1 = unknown) mask same-speaker pairs out of the negatives."""
    s = F.normalize(student, dim=-1)
    t = F.normalize(teacher, dim=-1)
    scale = logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()
    diag = torch.arange(t.shape[0], device=t.device)
    twin = (t @ t.t()) > SAME_UTTERANCE_COS
    masked = same_speaker_mask(labels, diag[:, None]) | twin
    masked[diag, diag] = False
    losses = []
    for view in s:
        logits = (scale * (view @ t.t())).masked_fill(masked, -math.inf)
        losses.append((F.cross_entropy(logits, diag) + F.cross_entropy(logits.t(), diag)) / 2)
    return torch.stack(losses).mean()


class Distill(nn.Module):
    """``forward(emb (V, B, D), teacher (B, Dt), labels (B,)) -> (loss, logs)``.

    ``head``: a linear map ``D -> Dt`` without bias (a rotation-and-scale into the teacher's
    space; the student's own cosine geometry is what the model file keeps), random or, when
    the student is the teacher's size, the identity (``head_init``: fine-tuning the teacher
    itself, whose cosine term then anchors each embedding to the teacher's from the first step).
    ``logs``:
    ``distill_cos``, the mean cosine of the projected student views to their teacher rows.
    """

    def __init__(
        self,
        embed_dim: int,
        teacher_dim: int,
        loss: str = "cosine",
        temperature: float = 0.07,
        head_init: str = "random",
    ):
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"distill loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        self.loss = loss
        self.head = nn.Linear(embed_dim, teacher_dim, bias=False)
        if head_init == "identity":
            if embed_dim != teacher_dim:
                raise ValueError(
                    f"distill head_init identity: the student's embeddings are {embed_dim}-dim, "
                    f"the teacher's {teacher_dim}-dim"
                )
            with torch.no_grad():
                self.head.weight.copy_(torch.eye(embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))

    def forward(self, emb: Tensor, teacher: Tensor, labels: Tensor) -> tuple[Tensor, dict]:
        if teacher.dim() != 2 or teacher.shape[0] != emb.shape[1]:
            raise ValueError(
                f"Distill: teacher embeddings (B={emb.shape[1]}, Dt) expected, got "
                f"{tuple(teacher.shape)}"
            )
        with no_autocast(emb.device):
            ok = torch.isfinite(teacher).all(dim=1)
            if not bool(ok.any()):
                zero = emb.sum() * 0.0  # keeps the graph (DDP needs every parameter used)
                return zero + self.head.weight.sum() * 0.0 + self.logit_scale * 0.0, {}
            t = teacher[ok].float()
            s = self.head(emb[:, ok].float())  # (V, B_ok, Dt)
            v, b = s.shape[0], s.shape[1]
            cos = F.cosine_similarity(s.reshape(v * b, -1), t.repeat(v, 1), dim=1)
            total = s.new_zeros(())
            if self.loss in ("cosine", "both"):
                total = total + (1 - cos).mean()
            if self.loss in ("clip", "both"):
                total = total + clip_distill(s, t, self.logit_scale.float(), labels[ok])
            else:
                total = total + self.logit_scale * 0.0  # unused, but DDP sees it
        logs = {"distill_cos": float(cos.detach().mean())}
        if self.loss != "cosine":
            logs["distill_logit_scale"] = float(
                self.logit_scale.detach().clamp(max=MAX_LOGIT_SCALE).exp()
            )
        return total, logs
