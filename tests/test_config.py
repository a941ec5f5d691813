import pytest

from audiocl.config import Config, load_config, save_config
from audiocl.errors import ConfigError


def test_defaults_validate():
    cfg = load_config(None)
    assert isinstance(cfg, Config)
    assert cfg.data.views == 2


def test_unknown_key_is_an_error_naming_it(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("optim:\n  lr: 0.1\n  lrr: 0.2\n")
    with pytest.raises(ConfigError, match=r"optim\.lrr"):
        load_config(p)
    p.write_text("optimiser: {}\n")
    with pytest.raises(ConfigError, match="optimiser"):
        load_config(p)


def test_overrides_are_typed_and_nested(tmp_path):
    cfg = load_config(None, ["optim.lr=0.01", "data.sources=[{path: a, labelled: false}]"])
    assert cfg.optim.lr == 0.01
    assert cfg.data.sources[0].path == "a" and cfg.data.sources[0].labelled is False
    with pytest.raises(ConfigError, match="expected float"):
        load_config(None, ["optim.lr=fast"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(None, ["optim.lr"])
    with pytest.raises(ConfigError, match="unknown config key model.chanels"):
        load_config(None, ["model.chanels=3"])


def test_off_is_a_string_and_only_true_false_are_booleans(tmp_path):
    # YAML 1.1 would turn these into booleans and fail the str check
    assert load_config(None, ["train.amp=off"]).train.amp == "off"
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  amp: off\ndata:\n  sources: [{path: a, labelled: false}]\n")
    cfg = load_config(p)
    assert cfg.train.amp == "off" and cfg.data.sources[0].labelled is False
    with pytest.raises(ConfigError, match="expected bool"):
        load_config(None, ["augment.enabled=no"])


def test_range_checks():
    with pytest.raises(ConfigError, match="contrastive.*simclr, moco, byol, dino, swav, clip"):
        load_config(None, ["objective.contrastive=barlow"])
    for name in ("simclr", "moco", "byol", "dino", "swav", "clip"):
        assert load_config(None, [f"objective.contrastive={name}"]).objective.contrastive == name
    with pytest.raises(ConfigError, match="ema_momentum"):
        load_config(None, ["objective.ema_momentum=1.5"])
    with pytest.raises(ConfigError, match="local_views"):
        load_config(None, ["data.local_views=-1"])
    with pytest.raises(ConfigError, match="at least 2 views"):
        load_config(None, ["data.views=1"])
    with pytest.raises(ConfigError, match="not both 0"):
        load_config(None, ["objective.contrastive_weight=0"])


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(None, ["model.channels=256", "train.seed=7"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg


@pytest.mark.parametrize(
    "name",
    [
        "quickstart",
        "real_cpu",
        "vox2_ecapa_aam",
        "vox2_ecapa_simclr",
        "vox2_ecapa_moco",
        "vox2_ecapa_aam_simclr",
    ],
)
def test_shipped_configs_load(name):
    cfg = load_config(name)
    assert cfg.model.encoder in ("ecapa_tdnn", "resnet34")
