"""The training loop: a run produces a usable model, resumes exactly after a kill, and stays
in sync across 2 gloo processes."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
import torch.multiprocessing as mp

from audiocl.data.synth import synthesize_corpus
from audiocl.modelfile import checkpoint
from audiocl.training.recipe import load_config
from audiocl.training.stages import fit
from audiocl.training.trainer import Trainer, find_checkpoints

TINY = [
    "model.channels=64",
    "model.res2net_scale=2",  # of scale 8's seven convs a block, one: a faster step
    "model.embed_dim=32",
    "objective.head_hidden=32",
    "objective.head_dim=16",
    "data.crop_seconds=0.5",
    "data.batch_size=4",
    "data.num_workers=0",
    "augment.speed_p=0.5",
    "optim.warmup_steps=2",
    "train.log_every=2",
    "train.deterministic=true",
    "train.threads=1",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    synthesize_corpus(
        root / "train", speakers=6, utterances=3, seed=3, duration=(0.8, 1.5), trials=False
    )
    synthesize_corpus(
        root / "dev", speakers=3, utterances=2, seed=4, duration=(0.8, 1.2), speaker_offset=6
    )
    return root


def tiny_config(corpus, *extra):
    return load_config(
        None,
        [
            f"data.root={corpus}",
            "data.sources=[{path: train, labelled: true}]",
            *TINY,
            *extra,
        ],
    )


def params(run_dir):
    data = checkpoint.load(run_dir / "model.pt")
    return data["encoder"], data["step"]


def test_fit_writes_model_metrics_and_config(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIOCL_HOME", str(tmp_path / "home"))
    cfg = tiny_config(
        corpus,
        "train.steps=4",
        "train.ckpt_every=2",
        "objective.aam_weight=1.0",
        "objective.margin_warmup_steps=2",
        "train.dev_trials=dev/trials.txt",
        "train.dev_every=4",
    )
    run = fit(cfg, tmp_path / "run", quiet=True)
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert [r["step"] for r in steps] == [2, 4]
    assert all(r["loss"] > 0 and r["utt_per_s"] > 0 for r in steps)
    dev = [r for r in records if "dev_eer" in r]
    assert len(dev) == 1 and 0.0 <= dev[0]["dev_eer"] <= 1.0
    assert (run / "config.yaml").is_file()
    assert [p.name for p in find_checkpoints(run)] == ["ckpt-0000002.pt", "ckpt-0000004.pt"]
    assert (run / "checkpoints" / "best.pt").is_file()
    model = checkpoint.load(run / "model.pt")
    assert model["format"] == checkpoint.MODEL_FORMAT and model["step"] == 4
    assert (tmp_path / "home" / "last_model").read_text().strip() == str(
        (run / "model.pt").resolve()
    )


def test_existing_run_needs_resume(corpus, tmp_path):
    cfg = tiny_config(corpus, "train.steps=2", "train.ckpt_every=2")
    fit(cfg, tmp_path / "run", quiet=True)
    from audiocl.errors import ConfigError

    with pytest.raises(ConfigError, match="--resume"):
        fit(cfg, tmp_path / "run", quiet=True)


# moco: the one objective with a queue and a key encoder beside the weights; the others
# resume from a checkpoint in test_crashed_run_resumes_exactly
@pytest.mark.parametrize("contrastive", ["moco"])
def test_killed_run_resumes_exactly(corpus, tmp_path, contrastive):
    steps = 24
    extra = [
        f"train.steps={steps}",
        "train.ckpt_every=2",
        f"objective.contrastive={contrastive}",
        "objective.moco_queue=16",
        "objective.aam_weight=0.5",
        "objective.margin_warmup_steps=10",
    ]
    fit(tiny_config(corpus, *extra), tmp_path / "straight", quiet=True)

    run = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "audiocl",
        "train",
        "--config",
        "none",
        "--out",
        str(run),
        "--quiet",
    ]
    cfg_path = tmp_path / "c.yaml"
    from audiocl.config import save_config

    save_config(tiny_config(corpus, *extra), cfg_path)
    cmd[cmd.index("none")] = str(cfg_path)
    env = {**os.environ, "AUDIOCL_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(cmd, env=env)
    deadline = time.monotonic() + 120
    while not find_checkpoints(run) and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = checkpoint.load(find_checkpoints(run)[-1])["step"]
    assert killed_at < steps, "the run finished before it could be killed"

    fit(load_config(cfg_path), run, resume=True, quiet=True)
    a, step_a = params(tmp_path / "straight")
    b, step_b = params(run)
    assert step_a == step_b == steps
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)


def _ddp_worker(rank, world, port, cfgs, out):
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    for k, cfg in enumerate(cfgs):  # one process group for them all: a spawn costs seconds
        trainer = Trainer(cfg, out / f"run{k}", quiet=True)
        trainer.run()
        params = {k: v.detach() for k, v in trainer.module.named_parameters()}
        torch.save(params, out / f"run{k}-rank{rank}.pt")
    torch.distributed.destroy_process_group()


def _train_two_gloo_processes(cfgs, tmp_path):
    """Train each of ``cfgs`` in 2 gloo processes; both replicas' parameters must be
    identical."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, cfgs, tmp_path), nprocs=2, join=True)
    for k, cfg in enumerate(cfgs):
        s0 = torch.load(tmp_path / f"run{k}-rank0.pt")
        s1 = torch.load(tmp_path / f"run{k}-rank1.pt")
        assert s0.keys() == s1.keys()
        for name in s0:
            what = f"{cfg.objective.contrastive}: {name}"
            torch.testing.assert_close(s0[name], s1[name], rtol=0, atol=0, msg=what)


def straight_and_crashed(cfg, tmp_path, last: int):
    """Train ``cfg`` in ``tmp_path/straight``, and again in ``tmp_path/crashed`` losing its last
    checkpoint (step ``last``) as a crash would; returns the crashed run's folder."""
    fit(cfg, tmp_path / "straight", quiet=True)
    run = tmp_path / "crashed"
    fit(cfg, run, quiet=True)
    (run / "checkpoints" / f"ckpt-{last:07d}.pt").unlink()
    return run


MULTICROP = ["data.local_views=2", "data.local_crop_seconds=0.3", "objective.prototypes=32"]


@pytest.mark.parametrize("contrastive", ["byol", "dino", "swav", "clip"])
def test_crashed_run_resumes_exactly(corpus, tmp_path, contrastive):
    """A crash after checkpoint 4 (later checkpoints lost) resumes to the same weights as a
    straight run: teachers, centres, queues and schedules are all in the checkpoint."""
    extra = [
        "train.steps=8",
        "train.ckpt_every=4",
        "train.keep_last=5",
        f"objective.contrastive={contrastive}",
        "objective.aam_weight=0",
        "objective.swav_queue=8",
        "objective.freeze_prototypes_steps=3",
        "objective.ema_momentum=0.9",
        *MULTICROP,
    ]
    cfg = tiny_config(corpus, *extra)
    run = straight_and_crashed(cfg, tmp_path, 8)
    fit(cfg, run, resume=True, quiet=True)
    a, step_a = params(tmp_path / "straight")
    b, step_b = params(run)
    assert step_a == step_b == 8
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)
    state_a = checkpoint.load(find_checkpoints(tmp_path / "straight")[-1])["objective"]
    state_b = checkpoint.load(find_checkpoints(run)[-1])["objective"]
    for name in state_a:
        torch.testing.assert_close(state_a[name], state_b[name], rtol=0, atol=0, msg=name)


def test_gloo_replicas_stay_identical_for_every_objective(corpus, tmp_path):
    """Two gloo processes keep their replicas identical, whichever objective they train."""
    cfgs = [
        tiny_config(
            corpus,
            "train.steps=3",
            "train.ckpt_every=3",
            "objective.aam_weight=1.0",
            f"objective.contrastive={contrastive}",
            "objective.swav_queue=4",
            "objective.freeze_prototypes_steps=2",
            *MULTICROP,
        )
        for contrastive in ("byol", "dino", "swav", "clip")
    ]
    moco = ["objective.contrastive=moco", "objective.moco_queue=16", "objective.aam_weight=1.0"]
    cfgs.append(tiny_config(corpus, "train.steps=3", "train.ckpt_every=3", *moco))
    _train_two_gloo_processes(cfgs, tmp_path)
    assert checkpoint.load(tmp_path / "run4" / "model.pt")["step"] == 3


class _ConstantEncoder(torch.nn.Module):
    """Every input maps to the same embedding: a collapsed model."""

    def __init__(self, dim):
        super().__init__()
        self.point = torch.nn.Parameter(torch.ones(dim))

    def forward(self, feats):
        return self.point.expand(feats.shape[0], -1) + 0.0 * feats.mean()


def test_collapsed_run_is_flagged(corpus, tmp_path, monkeypatch, caplog):
    import audiocl.training.trainer as train_mod

    monkeypatch.setattr(train_mod, "build_encoder", lambda cfg, n_mels: _ConstantEncoder(32))
    cfg = tiny_config(corpus, "train.steps=4", "optim.warmup_steps=0", "objective.contrastive=byol")
    run = fit(cfg, tmp_path / "run", quiet=True)
    records = [r for r in train_mod.read_metrics(run) if "loss" in r]
    assert records and all("spread" in r["collapse"] for r in records)
    warned = [r for r in caplog.records if "looks collapsed" in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelname == "WARNING"


def test_healthy_run_is_not_flagged(corpus, tmp_path):
    cfg = tiny_config(corpus, "train.steps=4", "optim.warmup_steps=0")
    run = fit(cfg, tmp_path / "run", quiet=True)
    from audiocl.training.trainer import read_metrics

    records = [r for r in read_metrics(run) if "loss" in r]
    assert records and not any("collapse" in r for r in records)
    assert all(r["emb_spread"] > 0.1 for r in records)


def test_init_starts_student_and_teacher_from_another_run(corpus, tmp_path):
    ssl = fit(
        tiny_config(corpus, "train.steps=2", "objective.contrastive=dino", *MULTICROP),
        tmp_path / "ssl",
        quiet=True,
    )
    pretrained = checkpoint.load(ssl / "model.pt")["encoder"]
    cfg = tiny_config(
        corpus,
        "train.steps=2",
        f"train.init={ssl / 'model.pt'}",
        "objective.contrastive=byol",
        "objective.aam_weight=1.0",
    )
    trainer = Trainer(cfg, tmp_path / "fine", quiet=True)
    teacher = trainer.module.objective.contrastive.teacher.copies[0].state_dict()
    for name, value in pretrained.items():
        torch.testing.assert_close(trainer.module.encoder.state_dict()[name], value, msg=name)
        torch.testing.assert_close(teacher[name], value, msg=name)
    # a different architecture is refused with a message that names the key
    from audiocl.errors import ConfigError

    with pytest.raises(ConfigError, match="model.channels"):
        Trainer(
            tiny_config(corpus, f"train.init={ssl / 'model.pt'}", "model.channels=32"),
            tmp_path / "bad",
            quiet=True,
        )


def test_init_from_a_checkpoint_on_the_same_speakers_keeps_the_classifier(corpus, tmp_path):
    three = "data.sources=[{path: train, labelled: true, hold_out: 3}]"
    aam = ["objective.aam_weight=1.0", "train.ckpt_every=2"]
    src = fit(tiny_config(corpus, "train.steps=2", three, *aam), tmp_path / "src", quiet=True)
    ckpt = find_checkpoints(src)[-1]
    trained = checkpoint.load(ckpt)["objective"]["aam.weight"]

    def classifier(init, *extra):
        cfg = tiny_config(corpus, "train.steps=2", f"train.init={init}", three, *aam, *extra)
        return Trainer(cfg, tmp_path / f"fine{len(list(tmp_path.iterdir()))}", quiet=True)

    fine = classifier(ckpt, "data.crop_seconds=0.7", "objective.aam_margin=0.3")
    torch.testing.assert_close(fine.module.objective.aam.weight.detach(), trained)
    torch.testing.assert_close(fine.module.encoder.state_dict(), checkpoint.load(ckpt)["encoder"])
    # a model file has no classifier; 3 other speakers, or more classes, get a fresh one
    for init, extra in (
        (src / "model.pt", []),
        (ckpt, ["data.sources=[{path: dev, labelled: true}]"]),
        (ckpt, ["augment.speed_as_new_speaker=true"]),
    ):
        fresh = classifier(init, *extra).module.objective.aam.weight.detach()
        assert fresh.shape != trained.shape or not torch.allclose(fresh, trained), (init, extra)


def test_cli_init_flag(corpus, tmp_path):
    from audiocl.app.cli import main

    cfg_path = tmp_path / "c.yaml"
    from audiocl.config import save_config

    save_config(tiny_config(corpus, "train.steps=2"), cfg_path)
    env_home = tmp_path / "home"
    os.environ["AUDIOCL_HOME"] = str(env_home)
    try:
        assert (
            main(["train", "--config", str(cfg_path), "--out", str(tmp_path / "a"), "--quiet"]) == 0
        )
        init = tmp_path / "a" / "model.pt"
        code = main(
            [
                "train",
                "--config",
                str(cfg_path),
                "--out",
                str(tmp_path / "b"),
                "--quiet",
                "--init",
                str(init),
            ]
        )
        assert code == 0
        saved = load_config(tmp_path / "b" / "config.yaml")
        assert saved.train.init == str(init)
    finally:
        os.environ.pop("AUDIOCL_HOME", None)


def test_model_file_can_keep_the_ema_teacher(corpus, tmp_path):
    cfg = tiny_config(
        corpus,
        "train.steps=3",
        "objective.contrastive=dino",
        "objective.embed_from=teacher",
        "objective.ema_momentum=0.5",
        *MULTICROP,
    )
    run = fit(cfg, tmp_path / "run", quiet=True)
    model = checkpoint.load(run / "model.pt")["encoder"]
    ckpt = checkpoint.load(find_checkpoints(run)[-1])
    prefix = "contrastive.teacher.copies.0."
    teacher = {k[len(prefix) :]: v for k, v in ckpt["objective"].items() if k.startswith(prefix)}
    assert teacher.keys() == model.keys()
    for name in model:
        torch.testing.assert_close(model[name], teacher[name], rtol=0, atol=0, msg=name)
    assert any(not torch.equal(model[k], ckpt["encoder"][k]) for k in model)  # not the student
    from audiocl.errors import ConfigError

    with pytest.raises(ConfigError, match="embed_from"):
        tiny_config(corpus, "objective.embed_from=teacher")  # simclr has no teacher


def test_metrics_survive_a_line_cut_by_a_kill(tmp_path):
    """A kill mid-line leaves a partial record: it is skipped, and the next record (after
    ``--resume``) starts a line of its own instead of joining it."""
    from types import SimpleNamespace

    from audiocl.training.trainer import Trainer, read_metrics

    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2, "lo')
    Trainer.log(SimpleNamespace(rank=0, run_dir=tmp_path), {"step": 3})
    assert read_metrics(tmp_path) == [{"step": 1}, {"step": 3}]
