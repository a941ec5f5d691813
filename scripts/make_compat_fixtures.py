"""Write ``tests/fixtures/compat/``: a small ``model.pt`` and a ``speakers.db`` enrolled with it,
and what loading them must give (``expected.json``), so that ``tests/test_compat.py`` can show
that files users saved with an earlier audiocl still load and score the same.

The committed files were made before the package moved into subpackages (issue 24); run this
again only for a deliberate change of the model-file or store format.

    python scripts/make_compat_fixtures.py [--out tests/fixtures/compat]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import audiocl
from audiocl.config import Config, to_dict
from audiocl.modelfile import checkpoint
from audiocl.nn.encoders import build_encoder

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_audio"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "compat")
    out = ap.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    cfg = Config()
    cfg.model.encoder, cfg.model.base_channels, cfg.model.embed_dim = "resnet34", 4, 16
    torch.manual_seed(24)
    encoder = build_encoder(cfg.model, cfg.features.n_mels)
    payload = checkpoint.make_model_file(encoder.state_dict(), to_dict(cfg), step=1)
    payload["calibration"] = {"eer_threshold": 0.5, "score_scale": "cosine", "trials": "fixture"}
    checkpoint.save(out / "model.pt", payload)
    db = out / "speakers.db"
    db.unlink(missing_ok=True)
    model = audiocl.load_model(out / "model.pt")
    store = model.store(db)
    store.enroll("alice", [str(SAMPLES / "alice_1.flac")], files=["alice_1.flac"])
    store.enroll("bob", [str(SAMPLES / "bob_1.flac")], files=["bob_1.flac"])
    expected = {
        "model_id": model.model_id,
        "embedding_alice_2": [round(float(x), 6) for x in model.embed(SAMPLES / "alice_2.flac")],
        "verify_alice_2": store.verify("alice", SAMPLES / "alice_2.flac").to_dict(),
        "identify_bob_2": [[n, round(s, 6)] for n, s in store.identify(SAMPLES / "bob_2.flac")],
    }
    (out / "expected.json").write_text(json.dumps(expected, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}: model {model.model_id}, {(out / 'model.pt').stat().st_size} bytes")


if __name__ == "__main__":
    main()
