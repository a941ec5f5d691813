import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from audiocl.config import ObjectiveConfig
from audiocl.nn.heads import ProjectionHead
from audiocl.objectives import (
    AAMSoftmax,
    MarginSchedule,
    MoCo,
    Objective,
    build_objective,
    nt_xent,
)


class MeanLinear(nn.Module):
    """Toy encoder ``(B, T, F) -> (B, D)``."""

    def __init__(self, n_mels: int = 6, dim: int = 8):
        super().__init__()
        self.linear = nn.Linear(n_mels, dim)
        self.embed_dim = dim

    def forward(self, feats):
        return self.linear(feats.mean(dim=1))


def _naive_nt_xent(z: torch.Tensor, t: float) -> torch.Tensor:
    views, batch, _ = z.shape
    rows = F.normalize(z.reshape(views * batch, -1), dim=1)
    n = rows.shape[0]
    terms = []
    for i in range(n):
        others = [k for k in range(n) if k != i]
        denom = sum(math.exp(float(rows[i] @ rows[k]) / t) for k in others)
        for j in others:
            if j % batch == i % batch:
                terms.append(-math.log(math.exp(float(rows[i] @ rows[j]) / t) / denom))
    return torch.tensor(sum(terms) / len(terms))


def test_nt_xent_closed_form():
    z = torch.tensor([[[1.0, 0.0], [0.0, 2.0]], [[3.0, 0.0], [0.0, 1.0]]])  # (V=2, B=2, D=2)
    for t in (0.25, 0.5, 1.0):
        expected = math.log(1 + 2 * math.exp(-1 / t))
        assert nt_xent(z, t).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(("views", "batch"), [(2, 5), (3, 4), (2, 3), (4, 2)])
def test_nt_xent_matches_naive_for_any_views_and_batch(views, batch):
    z = torch.randn(views, batch, 7, generator=torch.Generator().manual_seed(views * 10 + batch))
    assert nt_xent(z, 0.2).item() == pytest.approx(_naive_nt_xent(z, 0.2).item(), rel=1e-4)


def test_nt_xent_lower_for_aligned_views_than_shuffled():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(16, 32, generator=g)
    aligned = torch.stack([base, base + 0.1 * torch.randn(16, 32, generator=g)])
    shuffled = torch.stack([aligned[0], aligned[1][torch.roll(torch.arange(16), 1)]])
    assert nt_xent(aligned, 0.1) < nt_xent(shuffled, 0.1) - 1.0
    z = aligned.clone().requires_grad_(True)
    nt_xent(z, 0.1).backward()
    assert torch.isfinite(z.grad).all()


def _moco(queue_size=5, momentum=0.9):
    torch.manual_seed(0)
    encoder = MeanLinear()
    head = ProjectionHead(8, 16, 4)
    return encoder, MoCo(encoder, head, queue_size, momentum, temperature=0.2, dim=4)


def test_moco_queue_rotates():
    encoder, moco = _moco(queue_size=5)
    moco.train()
    g = torch.Generator().manual_seed(1)
    history = []
    for _ in range(3):
        feats = torch.randn(2, 2, 10, 6, generator=g)  # (V, B, T, F)
        emb = torch.stack([encoder(f) for f in feats])
        with torch.no_grad():  # keys are computed for all views at once (BatchNorm in the head)
            keys = moco.teacher.copies[1](moco.teacher.copies[0](feats.reshape(4, 10, 6)))
        history.append(F.normalize(keys, dim=1)[2:])  # view 1's keys are enqueued
        loss, _ = moco(emb, torch.full((2,), -1), feats)
        assert torch.isfinite(loss)
    assert int(moco.queue_ptr) == 6 % 5 and int(moco.queue_filled) == 5
    # slots 0 and 1 were overwritten by step 3 (slot 0) and step 1 (slot 1); 2-3 by step 2
    torch.testing.assert_close(moco.queue[0], history[2][1])
    torch.testing.assert_close(moco.queue[4], history[2][0])
    torch.testing.assert_close(moco.queue[1], history[0][1])
    torch.testing.assert_close(moco.queue[2:4], history[1])
    # eval mode: no enqueue
    moco.eval()
    moco(emb.detach(), torch.full((2,), -1), feats)
    assert int(moco.queue_ptr) == 1


def test_moco_key_encoder_no_grad_and_ema():
    encoder, moco = _moco(momentum=0.9)
    objective = Objective(moco, 1.0)
    objective.train()
    feats = torch.randn(2, 4, 10, 6)
    params = list(encoder.parameters()) + list(objective.parameters())
    assert not any(p is q for p in encoder.parameters() for q in objective.parameters())
    opt = torch.optim.SGD([p for p in params if p.requires_grad], lr=0.5)
    for step in range(2):  # step 0: empty queue, so no negatives and a zero loss
        emb = torch.stack([encoder(f) for f in feats])
        loss, parts = objective(emb, torch.full((4,), -1), feats)
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is None for p in moco.teacher.parameters())
        assert all(not p.requires_grad for p in moco.teacher.parameters())
        assert (encoder.linear.weight.grad.abs().sum() > 0) == (step > 0)
        before = [p.detach().clone() for p in moco.teacher.copies[0].parameters()]
        opt.step()
        objective.on_step(1)
        for old, key, online in zip(
            before, moco.teacher.copies[0].parameters(), encoder.parameters(), strict=True
        ):
            torch.testing.assert_close(key, 0.9 * old + 0.1 * online.detach())
        assert set(parts) == {"contrastive", "loss", "emb_spread"}


def test_moco_state_dict_resumes_exactly():
    encoder, moco = _moco()
    moco.train()
    feats = torch.randn(2, 3, 10, 6)
    moco(torch.stack([encoder(f) for f in feats]), torch.full((3,), -1), feats)
    state = moco.state_dict()
    assert {"queue", "queue_ptr", "queue_filled"} <= set(state)
    assert any(k.startswith("teacher.copies.0.") for k in state)
    assert not any(k.startswith("encoder.") for k in state)  # the online encoder is not owned
    _, fresh = _moco()
    fresh.load_state_dict(state)
    assert torch.equal(fresh.queue, moco.queue) and int(fresh.queue_ptr) == 3


def test_aam_margin_zero_is_scaled_cosine_cross_entropy():
    g = torch.Generator().manual_seed(0)
    aam = AAMSoftmax(16, 10, scale=30.0, margin=0.0)
    emb, labels = torch.randn(8, 16, generator=g), torch.randint(0, 10, (8,), generator=g)
    cos = F.normalize(emb, dim=1) @ F.normalize(aam.weight, dim=1).t()
    torch.testing.assert_close(aam(emb, labels), F.cross_entropy(30.0 * cos, labels))
    aam.margin = 0.2
    assert aam(emb, labels) > F.cross_entropy(30.0 * cos, labels)


@pytest.mark.parametrize("easy_margin", [False, True])
@pytest.mark.parametrize("autocast", [False, True])
def test_aam_no_nan_at_extreme_cosines(easy_margin, autocast):
    aam = AAMSoftmax(4, 3, scale=30.0, margin=0.3, easy_margin=easy_margin)
    with torch.no_grad():
        aam.weight.copy_(torch.eye(3, 4))
    # cos = +1 with the true class, cos = -1 with the true class, and exact zeros
    emb = torch.tensor([[1.0, 0, 0, 0], [-1.0, 0, 0, 0], [0, 0, 0, 1.0], [0, 5.0, 0, 0]])
    labels = torch.tensor([0, 0, 1, 1])
    emb = (emb.bfloat16() if autocast else emb).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = aam(emb, labels)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(emb.grad.float()).all() and torch.isfinite(aam.weight.grad).all()


def test_aam_ignores_unlabelled_rows():
    g = torch.Generator().manual_seed(0)
    aam = AAMSoftmax(16, 5, margin=0.2)
    emb = torch.randn(6, 16, generator=g)
    labels = torch.tensor([0, -1, 3, -1, 4, 1])
    keep = labels >= 0
    torch.testing.assert_close(aam(emb, labels), aam(emb[keep], labels[keep]))
    emb.requires_grad_(True)
    none = aam(emb, torch.full((6,), -1))
    assert none.item() == 0.0
    none.backward()
    assert emb.grad.abs().sum() == 0 and aam.weight.grad.abs().sum() == 0


def test_margin_schedule():
    s = MarginSchedule(0.2, start_step=10, warmup_steps=20)
    assert s(0) == 0.0 and s(10) == 0.0
    assert s(20) == pytest.approx(0.1) and s(30) == pytest.approx(0.2) and s(1000) == 0.2
    assert MarginSchedule(0.3)(0) == 0.3


def _embeddings(views=2, batch=6, dim=8, seed=0):
    return torch.randn(views, batch, dim, generator=torch.Generator().manual_seed(seed))


def test_objective_weights():
    torch.manual_seed(0)
    labels = torch.tensor([0, 1, 2, 0, 1, -1])
    emb = _embeddings()
    encoder = MeanLinear()
    joint = build_objective(
        ObjectiveConfig(contrastive="simclr", aam_weight=0.5, contrastive_weight=2.0, head_dim=4),
        encoder,
        embed_dim=8,
        n_classes=3,
    )
    loss, parts = joint(emb, labels)
    assert loss.item() == pytest.approx(0.5 * parts["aam"] + 2.0 * parts["contrastive"], rel=1e-5)
    assert parts["margin"] == pytest.approx(0.2)

    aam_only = build_objective(
        ObjectiveConfig(contrastive="none", contrastive_weight=0.0, aam_weight=1.0),
        encoder,
        embed_dim=8,
        n_classes=3,
    )
    loss, parts = aam_only(emb, labels)
    assert "contrastive" not in parts and loss.item() == pytest.approx(parts["aam"], rel=1e-6)
    assert aam_only.contrastive is None
    # an unlabelled batch: zero loss that still backpropagates
    emb_grad = emb.clone().requires_grad_(True)
    loss, _ = aam_only(emb_grad, torch.full((6,), -1))
    loss.backward()
    assert loss.item() == 0.0 and emb_grad.grad is not None

    simclr_only = build_objective(ObjectiveConfig(aam_weight=0.0), encoder, 8, n_classes=3)
    loss, parts = simclr_only(emb, labels)
    assert "aam" not in parts and loss.item() == pytest.approx(parts["contrastive"], rel=1e-6)
    # no labelled speakers: the AAM part is dropped, the contrastive part alone remains
    unlabelled = build_objective(ObjectiveConfig(aam_weight=1.0), encoder, 8, n_classes=0)
    assert unlabelled.aam is None
    with pytest.raises(ValueError):
        build_objective(
            ObjectiveConfig(contrastive="none", contrastive_weight=0.0, aam_weight=1.0),
            encoder,
            8,
            n_classes=0,
        )


def test_objective_margin_schedule_and_state():
    cfg = ObjectiveConfig(
        contrastive="moco",
        aam_weight=1.0,
        margin_warmup_start=0,
        margin_warmup_steps=10,
        moco_queue=8,
        head_dim=4,
    )
    encoder = MeanLinear()
    objective = build_objective(cfg, encoder, 8, n_classes=3)
    assert objective.needs_feats and objective.needs_labels
    assert objective.aam.margin == 0.0
    objective.on_step(5)
    assert objective.aam.margin == pytest.approx(0.1)
    feats = torch.randn(2, 4, 10, 6)
    objective.train()
    objective(torch.stack([encoder(f) for f in feats]), torch.tensor([0, 1, 2, -1]), feats)
    state = objective.state_dict()
    other = build_objective(cfg, MeanLinear(), 8, n_classes=3)
    other.load_state_dict(state)
    assert other.aam.margin == pytest.approx(0.1)
    assert torch.equal(other.contrastive.queue, objective.contrastive.queue)
    assert int(other.contrastive.queue_ptr) == 4
    with pytest.raises(ValueError):
        objective(torch.stack([encoder(f) for f in feats]), torch.tensor([0, 1, 2, -1]))


def test_nt_xent_drops_same_speaker_negatives():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 4, 8, generator=g)
    unlabelled = torch.full((4,), -1)
    # no labels, or all unknown: the plain loss
    torch.testing.assert_close(nt_xent(z, 0.5, unlabelled), nt_xent(z, 0.5))
    # utterances 0 and 1 share a speaker: removing that pair from the denominators equals
    # the loss computed by hand with those logits masked out
    labels = torch.tensor([3, 3, -1, 7])
    zn = torch.nn.functional.normalize(z.reshape(8, 8), dim=1)
    logits = zn @ zn.t() / 0.5
    mask = torch.eye(8, dtype=torch.bool)
    for a, b in [(0, 1), (0, 5), (4, 1), (4, 5)]:
        mask[a, b] = mask[b, a] = True
    logits = logits.masked_fill(mask, float("-inf"))
    logp = logits.log_softmax(dim=1)
    expected = -torch.stack([logp[i, (i + 4) % 8] for i in range(8)]).mean()
    torch.testing.assert_close(nt_xent(z, 0.5, labels), expected)
    assert nt_xent(z, 0.5, labels) != nt_xent(z, 0.5)
