"""``audiocl train``: train an encoder from a YAML config."""

from . import _common

HELP = "train a speaker encoder from a YAML config"
DESCRIPTION = """Train a speaker encoder (contrastive and/or AAM objectives) from a YAML config.

Configs shipped with audiocl (pass the name or a path): quickstart, real_cpu, ssl_cpu (no
labels: DINO, then AAM on k-means pseudo-speakers of its embeddings, see pseudo_labels), and
the VoxCeleb2 recipes vox2_ecapa_simclr, vox2_ecapa_moco, vox2_ecapa_aam,
vox2_ecapa_aam_simclr. Objectives: objective.contrastive = simclr, moco, byol, dino, swav, clip
or none, with or without AAM (objective.aam_weight).
Multi-process data-parallel training: torchrun --nproc_per_node N -m audiocl train ...
(data.batch_size is per process). The run directory gets config.yaml, metrics.jsonl,
checkpoints/ and model.pt; model.pt becomes the default model of enroll/verify/eval.
"""


def add_arguments(p):
    p.add_argument("--config", required=True, help="YAML config path or shipped config name")
    _common.add_overrides(p)
    p.add_argument("--out", default=None, help="run directory (default runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    p.add_argument(
        "--init",
        default=None,
        metavar="PATH",
        help="start the encoder from another run's model.pt or checkpoint (e.g. self-supervised "
        "pre-training before AAM fine-tuning; a checkpoint on the same speakers also gives its "
        "AAM classifier); same as --set train.init=PATH",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    import os
    from pathlib import Path

    from ...config import resolve_config_path
    from ...training.recipe import load_config
    from ...training.stages import fit

    overrides = list(args.overrides) + ([f"train.init={args.init}"] if args.init else [])
    cfg = load_config(args.config, overrides)
    out = Path(args.out) if args.out else Path("runs") / resolve_config_path(args.config).stem
    run_dir = fit(cfg, out, resume=args.resume, quiet=args.quiet)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"model: {run_dir / 'model.pt'}")
    return 0
