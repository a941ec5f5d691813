import pytest
import torch
import torch.nn.functional as F

from audiocl.config import ModelConfig
from audiocl.nn.ecapa import _Moments, _ScaleAdd, _WeightedMoments
from audiocl.nn.encoders import ENCODERS, EcapaTdnn, ProjectionHead, ResNet34, build_encoder


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(("channels", "published"), [(512, 6.19e6), (1024, 14.65e6)])
def test_ecapa_parameter_count_matches_wespeaker(channels, published):
    model = EcapaTdnn(n_mels=80, channels=channels, embed_dim=192)
    assert abs(_params(model) - published) / published < 0.005


def test_resnet34_parameter_count():
    # WeSpeaker's ResNet34 (32 base channels, 80 mels, 256-dim embedding): 6.63M
    assert abs(_params(ResNet34(80, 32, 256)) - 6.63e6) / 6.63e6 < 0.005
    assert abs(_params(ResNet34(80, 32, 192)) - 6.31e6) / 6.31e6 < 0.005


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_encoder_shapes_for_variable_lengths(name):
    torch.manual_seed(0)
    cfg = ModelConfig(encoder=name, channels=64, embed_dim=24, base_channels=8)
    model = build_encoder(cfg, n_mels=40)
    assert isinstance(model, ENCODERS[name]) and model.embed_dim == 24
    model.train()
    for frames in (9, 50, 123):
        out = model(torch.randn(3, frames, 40))
        assert out.shape == (3, 24) and torch.isfinite(out).all()
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 40)).shape == (1, 24)
        assert torch.isfinite(model(torch.randn(2, 4, 40))).all()


def test_ecapa_takes_its_res2net_scale_from_the_config():
    from audiocl.config import Config, ConfigError, check

    def convs(scale):
        model = build_encoder(ModelConfig(channels=64, embed_dim=8, res2net_scale=scale), 40)
        return len(model.layer2.res2.blocks), model(torch.randn(2, 30, 40)).shape

    assert convs(8) == (7, (2, 8)) and convs(2) == (1, (2, 8))
    cfg = Config()
    cfg.model.channels, cfg.model.res2net_scale = 60, 8
    with pytest.raises(ConfigError, match=r"model.channels \(60\) must divide by"):
        check(cfg)


def test_registry_unknown_name_lists_choices():
    with pytest.raises(ValueError) as err:
        build_encoder(ModelConfig(encoder="transformer"), n_mels=80)
    for name in ENCODERS:
        assert name in str(err.value)


def test_projection_head():
    torch.manual_seed(0)
    head = ProjectionHead(24, 32, 16).train()
    x = torch.randn(5, 24)
    out = head(x)
    assert out.shape == (5, 16)
    # Linear -> BatchNorm (batch statistics in training) -> ReLU -> Linear, computed directly
    lin1, bn, _, lin2 = head.net
    h = x @ lin1.weight.T + lin1.bias
    h = (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + bn.eps) * bn.weight + bn.bias
    torch.testing.assert_close(out, h.clamp_min(0) @ lin2.weight.T + lin2.bias)


def test_fused_autograd_functions_are_correct():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, dtype=torch.double, generator=g, requires_grad=True)
    alpha = torch.rand(2, 3, 5, dtype=torch.double, generator=g, requires_grad=True)
    res = torch.randn(2, 3, 5, dtype=torch.double, generator=g, requires_grad=True)
    s = torch.rand(2, 3, dtype=torch.double, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(_Moments.apply, (x,))
    assert torch.autograd.gradcheck(_WeightedMoments.apply, (alpha, x))
    assert torch.autograd.gradcheck(_ScaleAdd.apply, (res, x, s))


def test_attentive_pooling_equals_the_textbook_formula():
    """The global context is folded into the first attention conv; check it against the
    concatenation form (WeSpeaker's / SpeechBrain's)."""
    torch.manual_seed(0)
    pool = EcapaTdnn(n_mels=20, channels=32, mfa_channels=48).pool.double()
    x = torch.randn(3, 48, 17, dtype=torch.double)
    mean = x.mean(dim=2, keepdim=True).expand_as(x)
    std = torch.sqrt(x.var(dim=2, keepdim=True) + pool.eps).expand_as(x)
    h = torch.tanh(pool.linear1(torch.cat([x, mean, std], dim=1)))
    alpha = torch.softmax(pool.linear2(h), dim=2)
    mu = (alpha * x).sum(dim=2)
    sd = torch.sqrt(((alpha * x * x).sum(dim=2) - mu**2).clamp(min=pool.eps))
    torch.testing.assert_close(pool(x), torch.cat([mu, sd], dim=1))


def test_ecapa_trains_under_bf16_autocast():
    torch.manual_seed(0)
    model = EcapaTdnn(n_mels=20, channels=32, embed_dim=8, mfa_channels=48)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(4, 30, 20))
    F.mse_loss(out.float(), torch.zeros_like(out, dtype=torch.float32)).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing  # every parameter takes part in the bf16 forward pass
    assert all(torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0 for p in model.parameters())
