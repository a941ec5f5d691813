import pytest

from audiocl.config import Config, save_config
from audiocl.errors import ConfigError
from audiocl.training.recipe import load_config


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
    with pytest.raises(ConfigError, match="must not all be 0"):
        load_config(None, ["objective.contrastive_weight=0"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "model.encoder=foo",
            "model.encoder: 'foo' is not one of ecapa_tdnn, ecapa_speechbrain, resnet34",
        ),
        ("features.frontend=kaldi", "features.frontend: 'kaldi' is not one of fbank, speechbrain"),
        ("features.n_fft=-1", "features.n_fft must be >= 0"),
        ("data.sources=[{path: a, format: wav}]", r"data.sources\[0\].format: 'wav'"),
        ("data.sources=[{format: csv}]", r"data.sources\[0\]: give one of path"),
        ("optim.lr=-1", "optim.lr must be > 0"),
        ("optim.lr=.nan", "optim.lr must be > 0"),
        ("data.num_workers=-3", "data.num_workers must be >= 0"),
        ("train.keep_last=0", "train.keep_last must be >= 1"),
        ("augment.noise_p=1.5", r"augment.noise_p must be \[0, 1\]"),
        ("augment.speeds=[1.1, 0.9]", "augment.speeds must be .low, high."),
        ("augment.snr_db=[5]", "augment.snr_db must be .low, high."),
        ("train.device=gpu", "train.device: 'gpu' is not one of auto, cpu, cuda"),
        ("features.hop_ms=0", "features.hop_ms must be > 0"),
        ("objective.aam_margin=-0.1", "objective.aam_margin must be >= 0"),
    ],
)
def test_every_value_is_checked_and_named(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_speechbrain_layer_lists_are_checked():
    sb = ["model.encoder=ecapa_speechbrain"]
    with pytest.raises(ConfigError, match="one entry per layer"):
        load_config(None, [*sb, "model.kernel_sizes=[5, 3, 1]"])
    with pytest.raises(ConfigError, match="kernel_sizes must be odd"):
        load_config(None, [*sb, "model.kernel_sizes=[5, 3, 4, 3, 1]"])
    with pytest.raises(ConfigError, match="divide by res2net_scale"):
        load_config(None, [*sb, "model.layer_channels=[64, 60, 64, 64, 192]"])
    assert load_config(None, sb).model.layer_channels == [512, 512, 512, 512, 1536]


def test_every_numeric_field_has_a_range():
    """A new numeric field must get a rule in RANGES (seeds are the only unbounded ones)."""
    import dataclasses

    from audiocl.config import PAIRS, RANGES, Config

    for section in dataclasses.fields(Config):
        cls = (
            section.type
            if isinstance(section.type, type)
            else type(getattr(Config(), section.name))
        )
        for f in dataclasses.fields(cls):
            value = getattr(getattr(Config(), section.name), f.name)
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            listed = isinstance(value, list) and value and isinstance(value[0], (int, float))
            if (numeric or listed) and f.name != "seed":
                known = f.name in RANGES.get(section.name, {}) or f.name in PAIRS.get(
                    section.name, ()
                )
                assert known, f"{section.name}.{f.name} has no range rule"


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(None, ["model.channels=256", "train.seed=7"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg


@pytest.mark.parametrize(
    "name",
    [
        "quickstart",
        "real_cpu",
        "ssl_cpu",
        "vox2_ecapa_aam",
        "vox2_ecapa_simclr",
        "vox2_ecapa_moco",
        "vox2_ecapa_aam_simclr",
        "distill_cpu",
        "ge2e_finetune_cpu",
    ],
)
def test_shipped_configs_load(name):
    cfg = load_config(name)
    assert cfg.model.encoder in ("ecapa_tdnn", "resnet34", "ge2e")


def test_speed_as_new_speaker_needs_speed_perturbation():
    ok = load_config(None, ["augment.speed_as_new_speaker=true"])
    assert ok.augment.speed_as_new_speaker and ok.augment.speed_p > 0
    for off in ("augment.speed_p=0", "augment.enabled=false"):
        with pytest.raises(ConfigError, match="speed_as_new_speaker needs"):
            load_config(None, ["augment.speed_as_new_speaker=true", off])
    with pytest.raises(ConfigError, match="1.0 is the unchanged copy"):
        load_config(None, ["augment.speed_as_new_speaker=true", "augment.speeds=[0.9, 1.0]"])
