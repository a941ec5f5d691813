"""BYOL, DINO, SwAV and CLIP: each loss against a direct computation written out here, plus
the behaviour that makes each of them work (EMA schedule, centering, equal partition, learnable
scale, no gradient into teachers, collapse flagged)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from audiocl.config import ObjectiveConfig
from audiocl.nn.heads import ProjectionHead
from audiocl.objectives import BYOL, CLIP, CONTRASTIVE, DINO, SwAV, build_objective
from audiocl.objectives.collapse import collapse_reason, spread
from audiocl.objectives.common import cross_view_pairs
from audiocl.objectives.dino import DinoHead
from audiocl.objectives.ema import EmaTeacher
from audiocl.objectives.swav import sinkhorn


class MeanLinear(nn.Module):
    """Toy encoder ``(B, T, F) -> (B, D)``."""

    def __init__(self, n_mels: int = 6, dim: int = 8):
        super().__init__()
        self.linear = nn.Linear(n_mels, dim)

    def forward(self, feats):
        return self.linear(feats.mean(dim=1))


def _views(encoder, feats):
    """Online embeddings ``(V, B, D)`` of ``feats (V, B, T, F)``."""
    return torch.stack([encoder(f) for f in feats])


NO_LABELS = torch.full((4,), -1)


def test_registry_has_the_six_objectives():
    assert set(CONTRASTIVE) == {"simclr", "moco", "byol", "dino", "swav", "clip"}


def test_cross_view_pairs_skip_same_crop_and_cover_locals():
    assert cross_view_pairs(2, 2) == [(0, 1), (1, 0)]
    pairs = cross_view_pairs(2, 6)
    assert len(pairs) == 2 * 6 - 2 and all(t < 2 and t != s for t, s in pairs)


# ------------------------------------------------------------------------------ EMA teacher


def test_ema_momentum_cosine_schedule_and_update():
    online = nn.Linear(3, 2)
    ema = EmaTeacher([online], base=0.9, final=1.0, total_steps=10)
    assert ema.momentum(0) == pytest.approx(0.9)
    assert ema.momentum(5) == pytest.approx(0.95)
    assert ema.momentum(10) == pytest.approx(1.0) and ema.momentum(99) == pytest.approx(1.0)
    before = [p.detach().clone() for p in ema.copies.parameters()]
    with torch.no_grad():
        for p in online.parameters():
            p.add_(1.0)
    ema.update(5)
    for old, new, src in zip(before, ema.copies.parameters(), online.parameters(), strict=True):
        torch.testing.assert_close(new, 0.95 * old + 0.05 * src.detach())
    assert not any(p.requires_grad for p in ema.copies.parameters())
    assert not any(k.startswith("_online") for k in ema.state_dict())


# --------------------------------------------------------------------------------------- BYOL


def test_byol_loss_matches_direct_computation_and_spares_the_target():
    torch.manual_seed(0)
    encoder = MeanLinear()
    byol = BYOL(encoder, ProjectionHead(8, 16, 4), ProjectionHead(4, 16, 4), 0.99, 1.0, 100)
    byol.train()
    feats = torch.randn(2, 4, 10, 6)
    emb = _views(encoder, feats)
    loss, logs = byol(emb, NO_LABELS, feats)
    # BatchNorm statistics run over all crops at once, in the module and here
    with torch.no_grad():
        target = byol.teacher.copies[1](byol.teacher.copies[0](feats.reshape(8, 10, 6)))
    target = target.reshape(2, 4, -1)
    pred = byol.predictor(byol.projector(emb.reshape(8, 8))).reshape(2, 4, -1).detach()
    expected = 0.0
    for t, s in [(0, 1), (1, 0)]:
        for b in range(4):
            cos = F.cosine_similarity(pred[s][b], target[t][b], dim=0)
            expected += float(2 - 2 * cos) / 8
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert logs["ema_momentum"] == pytest.approx(0.99)
    loss.backward()
    assert all(p.grad is None for p in byol.teacher.parameters())
    assert encoder.linear.weight.grad.abs().sum() > 0
    assert byol.predictor.net[0].weight.grad.abs().sum() > 0


# --------------------------------------------------------------------------------------- DINO


def _dino(prototypes=16, **kw):
    torch.manual_seed(0)
    encoder = MeanLinear()
    head = DinoHead(8, 16, 5, prototypes, layers=3, batchnorm=True)
    return encoder, DINO(encoder, head, **kw)


def test_dino_head_outputs_cosines_with_unit_norm_prototypes():
    head = DinoHead(8, 16, 5, 12, layers=2, batchnorm=False)
    out = head(torch.randn(7, 8))
    assert out.shape == (7, 12) and out.abs().max() <= 1.0 + 1e-6
    with torch.no_grad():
        head.prototypes.mul_(10.0)  # the weight norm is fixed: scaling changes nothing
    torch.testing.assert_close(
        head(torch.randn(7, 8, generator=torch.Generator().manual_seed(1))),
        head(torch.randn(7, 8, generator=torch.Generator().manual_seed(1))),
    )


def test_dino_loss_matches_direct_computation_with_multicrop():
    encoder, dino = _dino(student_temp=0.1, teacher_temp=0.04, center_momentum=0.9)
    dino.train()
    g = torch.Generator().manual_seed(2)
    global_feats = torch.randn(2, 4, 10, 6, generator=g)
    local_feats = torch.randn(3, 4, 5, 6, generator=g)
    emb = torch.cat([_views(encoder, global_feats), _views(encoder, local_feats)])  # (5, 4, 8)
    with torch.no_grad():
        dino.center.copy_(torch.randn(1, 16, generator=g) * 0.1)
    center = dino.center.clone()
    loss, logs = dino(emb, NO_LABELS, global_feats)
    # direct: teacher on the 2 global crops only, student on all 5 crops, pairs t != s
    with torch.no_grad():  # BatchNorm statistics over all global crops at once, as in DINO
        flat = global_feats.reshape(8, 10, 6)
        teacher = dino.teacher.copies[1](dino.teacher.copies[0](flat)).double().reshape(2, 4, 16)
    student = dino.head(emb.reshape(20, 8)).reshape(5, 4, 16).detach().double()
    terms = []
    for t in range(2):
        p_t = torch.softmax((teacher[t] - center.double()) / 0.04, dim=-1)
        for s in range(5):
            if s == t:
                continue
            for b in range(4):
                terms.append(float(-(p_t[b] * torch.log_softmax(student[s][b] / 0.1, -1)).sum()))
    assert loss.item() == pytest.approx(sum(terms) / len(terms), rel=1e-5)
    assert len(terms) == (2 * 5 - 2) * 4
    # the centre moved towards the batch mean of the teacher outputs (before centering)
    batch_mean = teacher.reshape(8, 16).mean(dim=0, keepdim=True).float()
    torch.testing.assert_close(dino.center, 0.9 * center + 0.1 * batch_mean)
    assert 0.0 < logs["teacher_entropy"] <= 1.0 and 0.0 < logs["teacher_marginal_entropy"] <= 1.0
    loss.backward()
    assert all(p.grad is None for p in dino.teacher.parameters())


def test_dino_centering_spreads_a_teacher_that_favours_one_prototype():
    encoder, dino = _dino(teacher_temp=0.04, center_momentum=0.0)
    dino.train()
    with torch.no_grad():  # every teacher output prefers prototype 0
        dino.teacher.copies[1].prototypes[0] = dino.teacher.copies[1].prototypes[1:].mean(0) * 0
    feats = torch.randn(2, 4, 10, 6)
    emb = _views(encoder, feats)
    dino(emb, NO_LABELS, feats)  # centre := batch mean (momentum 0)
    _, centred = dino(emb, NO_LABELS, feats)
    dino.center.zero_()
    _, raw = _dino(teacher_temp=0.04, center_momentum=1.0)[1](emb, NO_LABELS, feats)
    assert centred["teacher_marginal_entropy"] >= raw["teacher_marginal_entropy"] - 1e-6


def test_dino_teacher_temperature_warms_up_and_prototypes_freeze():
    encoder, dino = _dino(
        teacher_temp=0.07, teacher_temp_warmup=0.04, warmup_steps=10, freeze_last_steps=3
    )
    assert dino.temperature_at(0) == pytest.approx(0.04)
    assert dino.temperature_at(5) == pytest.approx(0.055)
    assert dino.temperature_at(10) == pytest.approx(0.07) == dino.temperature_at(50)
    dino.train()
    feats = torch.randn(2, 4, 10, 6)
    for step, frozen in ((0, True), (3, False)):
        dino.set_step(step)
        dino.head.prototypes.grad = None
        loss, logs = dino(_views(encoder, feats), NO_LABELS, feats)
        loss.backward()
        assert (dino.head.prototypes.grad.abs().sum() == 0) == frozen
        assert logs["teacher_temp"] == pytest.approx(dino.temperature_at(step))


# --------------------------------------------------------------------------------------- SwAV


def _sinkhorn_numpy(scores, eps, iters):
    q = np.exp(scores / eps).T
    q /= q.sum()
    k, n = q.shape
    for _ in range(iters):
        q /= q.sum(axis=1, keepdims=True)
        q /= k
        q /= q.sum(axis=0, keepdims=True)
        q /= n
    return (q * n).T


def test_sinkhorn_matches_direct_computation_and_partitions_equally():
    scores = torch.randn(12, 4, generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
    q = sinkhorn(scores, eps=0.05, iters=3)
    np.testing.assert_allclose(
        q.numpy(), _sinkhorn_numpy(scores.double().numpy(), 0.05, 3), rtol=1e-4, atol=1e-6
    )
    torch.testing.assert_close(q.sum(dim=1), torch.ones(12))
    # many iterations: every prototype gets an equal share of the batch
    q = sinkhorn(scores, eps=0.5, iters=200)
    torch.testing.assert_close(q.sum(dim=0), torch.full((4,), 3.0), rtol=1e-3, atol=1e-3)
    # cosines at the extremes do not overflow (stabilised by the maximum)
    extremes = torch.sign(scores) + (scores == 0).float()
    assert torch.isfinite(sinkhorn(extremes, eps=0.05, iters=3)).all()


def test_swav_swapped_prediction_matches_direct_computation():
    torch.manual_seed(0)
    encoder = MeanLinear()
    swav = SwAV(ProjectionHead(8, 16, 4), 4, prototypes=6, temperature=0.1, eps=0.05, iters=3)
    swav.train()
    feats = torch.randn(3, 4, 10, 6)  # 2 global crops + 1 local crop
    emb = _views(encoder, feats)
    loss, logs = swav(emb, NO_LABELS)
    z = F.normalize(swav.projector(emb.reshape(12, 8)), dim=1).reshape(3, 4, 4)
    scores = (z @ F.normalize(swav.prototypes, dim=1).t()).detach()
    expected, n = 0.0, 0
    for t in range(2):
        q = torch.from_numpy(_sinkhorn_numpy(scores[t].double().numpy(), 0.05, 3))
        for s in range(3):
            if s != t:
                logp = torch.log_softmax(scores[s].double() / 0.1, dim=-1)
                expected += float(-(q * logp).sum(dim=1).mean())
                n += 1
    assert loss.item() == pytest.approx(expected / n, rel=1e-5)
    assert 0 < logs["code_entropy"] <= 1
    loss.backward()
    assert swav.prototypes.grad.abs().sum() > 0


def test_swav_queue_joins_sinkhorn_once_full_and_resumes():
    torch.manual_seed(0)
    encoder = MeanLinear()
    swav = SwAV(ProjectionHead(8, 16, 4), 4, prototypes=6, queue_size=8, freeze_steps=2)
    swav.train()
    feats = torch.randn(2, 4, 10, 6)
    emb = _views(encoder, feats)
    swav(emb, NO_LABELS)
    assert int(swav.queue_filled) == 4
    swav(emb, NO_LABELS)
    assert int(swav.queue_filled) == 8
    # with a full queue the codes come from Sinkhorn over batch + queue, batch rows first
    scores = torch.randn(4, 6).clamp(-1, 1)
    protos = F.normalize(swav.prototypes, dim=1)
    joint = sinkhorn(torch.cat([scores, swav.queue[0] @ protos.t()]), swav.eps, swav.iters)
    torch.testing.assert_close(swav.codes(0, scores, protos), joint[:4])
    other = SwAV(ProjectionHead(8, 16, 4), 4, prototypes=6, queue_size=8)
    other.load_state_dict(swav.state_dict())
    assert torch.equal(other.queue, swav.queue) and int(other.queue_filled) == 8
    # frozen prototypes get a zero gradient before freeze_steps (still used, for DDP)
    swav.set_step(0)
    loss, _ = swav(emb, NO_LABELS)
    loss.backward()
    assert swav.prototypes.grad is not None and swav.prototypes.grad.abs().sum() == 0


# --------------------------------------------------------------------------------------- CLIP


def test_clip_loss_matches_direct_computation_in_both_directions():
    torch.manual_seed(0)
    clip = CLIP(ProjectionHead(8, 16, 4), init_temperature=0.07, mask_same_speaker=False)
    emb = torch.randn(2, 5, 8)
    loss, logs = clip(emb, torch.full((5,), -1))
    assert logs["logit_scale"] == pytest.approx(1 / 0.07, rel=1e-5)
    z = F.normalize(clip.head(emb.reshape(10, 8)), dim=1).reshape(2, 5, 4).detach().double()
    sim = (z[0] @ z[1].t()) / 0.07
    rows = -sum(float(torch.log_softmax(sim[i], 0)[i]) for i in range(5)) / 5
    cols = -sum(float(torch.log_softmax(sim[:, j], 0)[j]) for j in range(5)) / 5
    assert loss.item() == pytest.approx((rows + cols) / 2, rel=1e-5)
    loss.backward()
    assert clip.logit_scale.grad is not None and clip.logit_scale.grad != 0


def test_clip_scale_is_clamped_and_same_speakers_are_no_negatives():
    torch.manual_seed(0)
    emb = torch.randn(2, 4, 8)
    _, logs = CLIP(ProjectionHead(8, 16, 4), init_temperature=0.001)(emb, torch.full((4,), -1))
    assert logs["logit_scale"] == pytest.approx(100.0)
    clip = CLIP(ProjectionHead(8, 16, 4), init_temperature=1.0)
    plain, _ = clip(emb, torch.full((4,), -1))
    masked, _ = clip(emb, torch.tensor([3, 3, -1, 5]))
    assert masked.item() < plain.item()  # fewer negatives: a lower cross-entropy


# ----------------------------------------------------------------------- the family, jointly


@pytest.mark.parametrize("name", sorted(CONTRASTIVE))
@pytest.mark.parametrize("aam_weight", [0.0, 1.0])
def test_every_objective_alone_and_with_aam_and_multicrop(name, aam_weight):
    torch.manual_seed(0)
    encoder = MeanLinear()
    cfg = ObjectiveConfig(
        contrastive=name,
        aam_weight=aam_weight,
        head_hidden=16,
        head_dim=4,
        prototypes=8,
        moco_queue=8,
        swav_queue=8,
    )
    objective = build_objective(cfg, encoder, 8, n_classes=3, global_views=2, total_steps=10)
    objective.train()
    params = [
        p for p in list(encoder.parameters()) + list(objective.parameters()) if p.requires_grad
    ]
    opt = torch.optim.SGD(params, lr=0.1)
    feats = torch.randn(2, 4, 10, 6)
    local = torch.randn(2, 4, 5, 6)
    labels = torch.tensor([0, 1, -1, 2])
    for step in range(3):
        emb = torch.cat([_views(encoder, feats), _views(encoder, local)])
        loss, parts = objective(emb, labels, feats if objective.needs_feats else None)
        assert torch.isfinite(loss) and loss.dtype == torch.float32
        assert ("aam" in parts) == (aam_weight > 0) and "contrastive" in parts
        opt.zero_grad()
        loss.backward()
        opt.step()
        objective.on_step(step + 1)
    assert encoder.linear.weight.grad.abs().sum() > 0
    # the state round-trips into a fresh objective
    other = build_objective(cfg, MeanLinear(), 8, n_classes=3, global_views=2, total_steps=10)
    other.load_state_dict(objective.state_dict())
    for (k, a), b in zip(objective.state_dict().items(), other.state_dict().values(), strict=True):
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b), k


# ------------------------------------------------------------------------------ collapse


def test_collapsed_embeddings_are_flagged_and_healthy_ones_are_not():
    g = torch.Generator().manual_seed(0)
    healthy = torch.randn(32, 16, generator=g)
    collapsed = torch.ones(32, 16) + 1e-4 * torch.randn(32, 16, generator=g)
    assert spread(healthy) == pytest.approx(1.0, abs=0.15)
    assert spread(collapsed) < 0.01
    assert collapse_reason({"emb_spread": spread(healthy)}) is None
    assert "spread" in collapse_reason({"emb_spread": spread(collapsed)})
    assert "uniform" in collapse_reason({"emb_spread": 0.8, "teacher_entropy": 0.999})
    assert collapse_reason({"emb_spread": 0.8, "teacher_entropy": 0.5}) is None


def test_entropy_logs_are_fractions_of_log_k():
    encoder, dino = _dino(prototypes=16)
    dino.train()
    with torch.no_grad():  # a teacher with constant outputs: uniform after centering
        for p in dino.teacher.copies[1].parameters():
            p.zero_()
    feats = torch.randn(2, 4, 10, 6)
    _, logs = dino(_views(encoder, feats), NO_LABELS, feats)
    assert logs["teacher_entropy"] == pytest.approx(1.0, abs=1e-4)
    assert collapse_reason({"emb_spread": 0.8, **logs}) is not None
    assert math.isfinite(logs["teacher_marginal_entropy"])


# --------------------------------------------------------------------------- under DDP (gloo)


def _global_batch_worker(rank, world, port, out):
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        scores = torch.randn(8, 5, generator=torch.Generator().manual_seed(3)).clamp(-1, 1)
        mine = scores[rank * 4 : (rank + 1) * 4]
        codes = sinkhorn(mine, eps=0.05, iters=3)
        encoder, dino = _dino(prototypes=16, center_momentum=0.0)
        teacher = torch.randn(2, 8, 16, generator=torch.Generator().manual_seed(4))
        dino.update_center(teacher[:, rank * 4 : (rank + 1) * 4])
        torch.save({"codes": codes, "center": dino.center}, out / f"rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def test_sinkhorn_and_dino_centre_run_over_the_global_batch(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_global_batch_worker, args=(2, port, tmp_path), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    scores = torch.randn(8, 5, generator=torch.Generator().manual_seed(3)).clamp(-1, 1)
    torch.testing.assert_close(torch.cat([r0["codes"], r1["codes"]]), sinkhorn(scores, 0.05, 3))
    teacher = torch.randn(2, 8, 16, generator=torch.Generator().manual_seed(4))
    expected = teacher.reshape(-1, 16).mean(dim=0, keepdim=True)
    torch.testing.assert_close(r0["center"], expected)
    torch.testing.assert_close(r1["center"], expected)
