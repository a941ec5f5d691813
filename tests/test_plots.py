import subprocess
import sys

import numpy as np

from audiocl.scoring.metrics import det_curve
from audiocl.scoring.plots import plot_det, plot_score_hist

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _data(seed=0, n=2000):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=n)
    scores = np.clip(0.1 + 0.5 * labels + 0.2 * rng.normal(size=n), -1, 1)
    return scores, labels


def _assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 5000
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp left


def test_plot_det_writes_png(tmp_path):
    scores, labels = _data()
    fpr, fnr, _ = det_curve(scores, labels)
    fpr2, fnr2, _ = det_curve(scores + 0.1 * labels, labels)
    out = tmp_path / "sub" / "det.png"
    plot_det(out, {"raw": (fpr, fnr), "as-norm": (fpr2, fnr2)})
    _assert_png(out)


def test_plot_score_hist_writes_png(tmp_path):
    scores, labels = _data(1)
    out = tmp_path / "hist.png"
    plot_score_hist(out, scores, labels, thresholds={"EER": 0.35, "minDCF 0.01": 0.5})
    _assert_png(out)
    plot_score_hist(out, np.full(10, 0.5), np.array([0, 1] * 5))  # degenerate range, overwrite
    _assert_png(out)


def test_plotting_never_imports_pyplot(tmp_path):
    # Run in a fresh interpreter: the module must draw without pyplot (no global backend change).
    code = (
        "import sys, numpy as np\n"
        "from audiocl.scoring.plots import plot_det, plot_score_hist\n"
        "plot_det(sys.argv[1] + '/d.png', {'a': (np.array([1.0, 0.2, 0.0]), np.array([0.0, 0.1, 1.0]))})\n"
        "plot_score_hist(sys.argv[1] + '/h.png', np.array([0.1, 0.9]), np.array([0, 1]))\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, timeout=120)
    _assert_png(tmp_path / "d.png")
