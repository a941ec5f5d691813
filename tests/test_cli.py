"""End-to-end CLI: embed, enroll, speakers, verify, identify, eval (over a tiny random model)."""

import json
import shutil

import numpy as np
import pytest

from audiocl.app.cli import COMMANDS, main
from audiocl.data.synth import synthesize_corpus
from audiocl.modelfile import checkpoint


@pytest.fixture(scope="module")
def assets(tmp_path_factory, make_tiny_model):
    root = tmp_path_factory.mktemp("cli")
    data = synthesize_corpus(root / "data", speakers=4, utterances=3, duration=(1.0, 1.5))
    return {
        "root": root,
        "data": data,
        "model": make_tiny_model(root / "model.pt", seed=0),
        "other_model": make_tiny_model(root / "other.pt", seed=1),
    }


@pytest.fixture
def env(assets, tmp_path, monkeypatch):
    """A fresh AUDIOCL_HOME and a private copy of the model (eval --calibrate rewrites it)."""
    monkeypatch.setenv("AUDIOCL_HOME", str(tmp_path / "home"))
    model = tmp_path / "model.pt"
    shutil.copy(assets["model"], model)
    monkeypatch.setenv("AUDIOCL_MODEL", str(model))
    monkeypatch.chdir(tmp_path)
    return {**assets, "model": model, "tmp": tmp_path}


def wav(env, spk, k):
    """Utterance ``k`` of speaker ``spk`` (sorted order of the synthetic corpus)."""
    files = sorted((env["data"] / f"spk{spk:04d}").rglob("*.flac"))
    return str(files[k])


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv):
    code, out, err = run(capsys, *argv, "--json")
    return code, json.loads(out)


def test_help_for_every_command(capsys):
    for argv in (["--help"], *([name, "--help"] for name in COMMANDS), ["speakers", "list", "-h"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0, argv
    assert "exit codes" in capsys.readouterr().out


def test_every_option_is_described():
    import argparse

    from audiocl.app.cli import build_parser

    missing = []

    def walk(parser, name):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, child in action.choices.items():
                    walk(child, f"{name} {sub}")
            elif not action.help:
                missing.append(f"{name} {action.option_strings or action.dest}")

    walk(build_parser(), "audiocl")
    assert not missing


def test_embed_files_and_list(env, capsys):
    files = [wav(env, 0, 0), wav(env, 1, 0)]
    (env["tmp"] / "list.txt").write_text("# files\n" + files[1] + "\n\n")
    code, out, _ = run(capsys, "embed", files[0], "--list", "list.txt", "--out", "e.npz")
    assert code == 0 and "model:" in out and "from AUDIOCL_MODEL" in out
    with np.load(env["tmp"] / "e.npz", allow_pickle=False) as z:
        assert z["ids"].tolist() == files
        assert z["embeddings"].shape == (2, 16) and z["embeddings"].dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(z["embeddings"], axis=1), 1, atol=1e-5)
        assert str(z["model_id"]) == checkpoint.load(env["model"])["model_id"]
    code, info = run_json(capsys, "embed", files[0], "--out", "one.npz")
    assert code == 0 and info["count"] == 1 and info["dim"] == 16


def test_enroll_add_replace_and_manage_speakers(env, capsys):
    a = [wav(env, 0, k) for k in range(3)]
    code, info = run_json(capsys, "enroll", a[0], a[1], "--name", "alice")
    assert code == 0 and info["action"] == "enrolled" and info["speaker"]["count"] == 2
    code, info = run_json(capsys, "enroll", a[2], "--name", "alice")
    assert info["action"] == "added to" and info["speaker"]["count"] == 3
    code, info = run_json(capsys, "enroll", a[2], "--name", "alice", "--replace")
    assert info["action"] == "replaced" and info["speaker"]["count"] == 1
    code, out, _ = run(capsys, "enroll", wav(env, 1, 0), "--name", "bob")
    assert code == 0 and "enrolled 'bob'" in out

    code, info = run_json(capsys, "speakers", "list")
    assert [s["name"] for s in info["speakers"]] == ["alice", "bob"]
    code, out, _ = run(capsys, "speakers", "rename", "bob", "carol")
    assert code == 0 and "carol" in out
    code, out, _ = run(capsys, "speakers", "remove", "alice")
    assert code == 0
    code, out, _ = run(capsys, "speakers", "list")
    assert "carol" in out and "alice" not in out
    code, _, err = run(capsys, "speakers", "remove", "nobody")
    assert code == 5 and len(err.strip().splitlines()) == 1 and "nobody" in err


def test_verify_threshold_sources_and_exit_codes(env, capsys):
    a, b = wav(env, 0, 0), wav(env, 0, 1)
    code, out, _ = run(capsys, "verify", a, b)
    assert code == 4  # never calibrated: no decision, but the score is shown
    assert "score:" in out and "no calibrated threshold" in out and "unknown" in out
    code, r = run_json(capsys, "verify", a, b)
    assert code == 4 and r["same"] is None and r["threshold_source"] == "none"
    assert -1 <= r["score"] <= 1 and r["model"]["source"] == "AUDIOCL_MODEL"
    code, r = run_json(capsys, "verify", a, b, "--threshold", "-1")
    assert code == 0 and r["same"] is True and r["threshold_source"] == "--threshold"
    code, out, _ = run(capsys, "verify", a, b, "--threshold", "1.01")
    assert code == 1 and "different" in out and "decided by --threshold" in out

    run(capsys, "enroll", a, "--name", "alice")
    code, r = run_json(capsys, "verify", "--speaker", "alice", b, "--threshold", "-1")
    assert code == 0 and r["speaker"] == "alice" and r["decision"] == "same"
    code, _, err = run(capsys, "verify", a)
    assert code == 2 and "two recordings" in err


def test_identify_ranks_top(env, capsys):
    for spk, name in ((0, "alice"), (1, "bob"), (2, "carol")):
        run(capsys, "enroll", wav(env, spk, 0), "--name", name)
    code, r = run_json(capsys, "identify", wav(env, 1, 0), "--top", "2")
    assert code == 0 and len(r["candidates"]) == 2
    assert r["candidates"][0]["speaker"] == "bob"  # its own enrolment file
    assert r["candidates"][0]["score"] >= r["candidates"][1]["score"]
    assert r["match"] is None and r["threshold"] is None
    code, out, _ = run(capsys, "identify", wav(env, 1, 0), "--threshold", "0.5")
    assert code == 0 and "match: bob" in out


def test_eval_cache_cohort_calibrate_then_verify(env, capsys):
    trials = env["data"] / "trials.txt"
    code, out, _ = run(
        capsys, "eval", "--trials", trials, "--audio-root", env["data"], "--out", "ev1"
    )
    assert code == 0 and "EER" in out and "minDCF(0.01)" in out and "12 embedded" in out
    assert "minCllr" in out and "actDCF(0.01)" in out
    for name in ("scores.txt", "metrics.json", "det.png", "scores.png", "calibration.png"):
        assert (env["tmp"] / "ev1" / name).stat().st_size > 0
    m = json.loads((env["tmp"] / "ev1" / "metrics.json").read_text())
    assert m["raw"]["n_target"] + m["raw"]["n_nontarget"] == m["n_trials"]
    assert 0 <= m["raw"]["min_cllr"] <= 1 and "cllr" not in m["raw"]  # not calibrated yet
    assert 0 <= m["raw"]["eer"] <= 1 and m["as_norm"] is None
    assert len((env["tmp"] / "ev1" / "scores.txt").read_text().splitlines()) == m["n_trials"] + 1

    # second run: every embedding from the cache; AS-Norm beside raw; calibration stored
    code, r = run_json(
        capsys,
        "eval",
        "--trials",
        trials,
        "--audio-root",
        env["data"],
        "--out",
        "ev2",
        "--cohort",
        env["data"],
        "--top-k",
        "5",
        "--calibrate",
    )
    assert code == 0 and r["files"]["embedded"] == 0 and r["files"]["cached"] == 12
    assert r["as_norm"]["n_target"] == r["raw"]["n_target"] and r["cohort"]["size"] == 12
    assert r["cohort"]["top_k"] == 5
    cal = checkpoint.load(env["model"])["calibration"]
    assert cal["threshold"] == pytest.approx(r["raw"]["eer_threshold"])
    assert len((env["tmp"] / "ev2" / "scores.txt").read_text().splitlines()[1].split()) == 5
    # the LLR mapping is stored and measured; 54 non-targets are too few for a false-accept table
    a, b = cal["llr"]["a"], cal["llr"]["b"]
    assert a > 0 and cal["far"] is None and r["raw"]["cllr"] >= r["raw"]["min_cllr"] - 1e-9
    assert r["calibration_used"]["note"] == "calibrated on these trials"
    # the AS-Norm scores, on their own scale, got their own mapping
    assert set(cal["as_norm_llr"]) >= {"a", "b"} and cal["as_norm_llr"]["a"] != a
    assert (
        r["as_norm"]["cllr"] >= r["as_norm"]["min_cllr"] - 1e-9 and "act_dcf_0.01" in r["as_norm"]
    )

    # the default decision: the Bayes threshold of the LLR at prior 0.5, with LLR and P(same)
    code, out, _ = run(capsys, "verify", wav(env, 0, 0), wav(env, 0, 1))
    assert code in (0, 1) and "decided by calibration, Bayes threshold at prior 0.5" in out
    assert "llr:" in out and "P(same speaker) = " in out
    code, r = run_json(capsys, "verify", wav(env, 0, 0), wav(env, 0, 1), "--prior", "0.01")
    assert r["llr"] == pytest.approx(a * r["score"] + b, abs=1e-6)
    assert r["p_same"] == pytest.approx(1 / (1 + np.exp(-(r["llr"] + np.log(0.01 / 0.99)))))
    assert r["threshold"] == pytest.approx((np.log(99.0) - b) / a) and r["prior"] == 0.01
    assert r["same"] == (r["p_same"] >= 0.5)
    code, r = run_json(
        capsys, "verify", wav(env, 0, 0), wav(env, 0, 1), "--operating-point", "min_dcf_0.01"
    )
    assert r["threshold"] == pytest.approx(cal["min_dcf_0.01_threshold"])
    assert r["same"] == (r["score"] >= r["threshold"]) and code == (0 if r["same"] else 1)
    # a rule the calibration cannot answer is refused in one line; a bad prior is a usage error
    code, _, err = run(capsys, "verify", wav(env, 0, 0), wav(env, 0, 1), "--far", "0.01")
    assert code == 4 and "false-accept rate" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as exc:
        run(capsys, "verify", wav(env, 0, 0), wav(env, 0, 1), "--prior", "1.5")
    assert exc.value.code == 2 and "between 0 and 1" in capsys.readouterr().err
    run(capsys, "enroll", wav(env, 0, 0), "--name", "alice")
    code, r = run_json(capsys, "identify", wav(env, 0, 1), "--prior", "0.2")
    top = r["candidates"][0]
    assert code == 0 and r["prior"] == 0.2 and top["speaker"] == "alice"
    assert top["llr"] == pytest.approx(a * top["score"] + b, abs=1e-6)
    assert top["match"] == (top["p_same"] >= 0.5)
    code, out, _ = run(capsys, "identify", wav(env, 0, 1))
    assert "P(same)" in out and "at prior 0.5" in out


def test_eval_bad_file_stops_or_is_skipped(env, capsys):
    data = env["tmp"] / "data"
    shutil.copytree(env["data"], data)
    bad = sorted((data / "spk0001").rglob("*.flac"))[0]
    bad.write_bytes(b"garbage")
    args = ["eval", "--trials", data / "trials.txt", "--audio-root", data, "--out", "ev"]
    code, _, err = run(capsys, *args)
    assert code == 3 and len(err.strip().splitlines()) == 1
    rel = bad.relative_to(data).as_posix()
    assert str(bad) in err and "trials.txt:line" in err and rel in err
    code, r = run_json(capsys, *args, "--skip-bad")
    n_bad = sum(rel in line.split() for line in (data / "trials.txt").read_text().splitlines())
    assert code == 0 and r["skipped_trials"] == n_bad > 0
    assert r["n_trials"] == r["n_trials_listed"] - n_bad
    assert r["bad_files"][0]["file"] == rel


def test_bad_audio_is_one_line_exit_3(env, capsys):
    missing = env["tmp"] / "nope.wav"
    code, out, err = run(capsys, "verify", wav(env, 0, 0), missing, "--threshold", "0")
    assert code == 3 and str(missing) in err and len(err.strip().splitlines()) == 1
    (env["tmp"] / "empty.wav").write_bytes(b"")
    code, _, err = run(capsys, "embed", env["tmp"] / "empty.wav", "--out", "x.npz")
    assert code == 3 and "empty.wav" in err


def test_a_refused_write_is_exit_6_not_a_verify_decision(env, capsys):
    # exit 1 is verify's "different speakers": a system error must not read as a decision
    (env["tmp"] / "afile").write_text("x")
    code, _, err = run(capsys, "embed", wav(env, 0, 0), "--out", env["tmp"] / "afile" / "e.npz")
    assert code == 6 and "afile" in err and len(err.strip().splitlines()) == 1


def test_store_of_another_model_is_refused(env, capsys):
    run(capsys, "enroll", wav(env, 0, 0), "--name", "alice")
    other = env["other_model"]
    code, _, err = run(capsys, "identify", wav(env, 0, 1), "--model", other)
    assert code == 5 and "another store" in err
    code, _, err = run(capsys, "verify", "--speaker", "alice", wav(env, 0, 1), "--model", other)
    assert code == 5
    code, _, err = run(capsys, "enroll", wav(env, 1, 0), "--name", "bob", "--model", other)
    assert code == 5 and len(err.strip().splitlines()) == 1


def test_usage_errors_and_json_errors(env, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["identify", wav(env, 0, 0), "--top", "0"])
    assert exc.value.code == 2 and "at least 1" in capsys.readouterr().err
    (env["tmp"] / "README.md").write_text("# not a model\n")
    code, out, err = run(capsys, "verify", wav(env, 0, 0), wav(env, 0, 1), "--model", "README.md")
    assert code == 4 and "not a PyTorch file" in err and "weights_only" not in err and not out
    # with --json the error is a JSON object on stdout, nothing on stderr
    code, out, err = run(capsys, "verify", wav(env, 0, 0), "nope.wav", "--threshold", "0", "--json")
    assert code == 3 and not err
    assert json.loads(out) == {"error": json.loads(out)["error"], "exit_code": 3}
    assert "nope.wav" in json.loads(out)["error"]


def test_quickstart_rejects_a_bad_override_before_any_work(env, capsys):
    code, _, err = run(capsys, "quickstart", "--out", "qs", "--set", "foo.bar=1")
    assert code == 2 and "foo" in err
    assert not (env["tmp"] / "qs").exists()


def test_quickstart_trains_a_fixed_number_of_steps(env, capsys, monkeypatch):
    monkeypatch.delenv("AUDIOCL_MODEL")
    code, out, _ = run(
        capsys,
        "quickstart",
        "--out",
        "qs",
        "--steps",
        "3",
        "--train-speakers",
        "3",
        "--test-speakers",
        "2",
        "--quiet",
        "--set",
        "model.channels=32",
        "--set",
        "data.batch_size=4",
    )
    assert code == 0 and "training for 3 steps" in out
    figures = json.loads((env["tmp"] / "qs" / "quickstart.json").read_text())
    assert figures["steps"] == 3
    for which in ("untrained", "trained"):
        assert 0.0 <= figures[which]["eer"] <= 1.0
        assert figures[which]["n_target"] == 2 * 15 and figures[which]["n_nontarget"] > 0
    # the trained model is the default model of the other commands now
    code, result = run_json(capsys, "verify", wav(env, 0, 0), wav(env, 0, 1), "--threshold", "0")
    assert code in (0, 1) and result["model"]["path"] == str(env["tmp"] / "qs" / "run" / "model.pt")


def test_no_model_anywhere_is_exit_4(env, capsys, monkeypatch):
    monkeypatch.delenv("AUDIOCL_MODEL")
    code, _, err = run(capsys, "verify", wav(env, 0, 0), wav(env, 0, 1))
    assert code == 4 and "audiocl quickstart" in err


def test_calibrate_refuses_a_training_checkpoint(env, capsys):
    data = checkpoint.load(env["model"])
    data["format"] = checkpoint.CHECKPOINT_FORMAT
    ckpt = env["tmp"] / "ckpt.pt"
    checkpoint.save(ckpt, data)
    trials = env["data"] / "trials.txt"
    code, _, err = run(
        capsys,
        "eval",
        "--trials",
        trials,
        "--audio-root",
        env["data"],
        "--model",
        ckpt,
        "--calibrate",
        "--out",
        "ev",
    )
    assert code == 4 and "model file" in err and not (env["tmp"] / "ev").exists()
