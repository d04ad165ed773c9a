"""`lazydit train`: the evaluation curve written as training goes, resumable runs, refusals."""

from __future__ import annotations

import json

from conftest import run_cli


def test_train_writes_its_evaluation_curve_and_resumes_without_repeating_it(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--iterations", "20", "--batch", "16", "--warmup", "2", "--checkpoint-every", "10",
            "--eval-every", "10", "--eval-per-class", "2", "--eval-steps", "4", "--out", str(out)]  # fmt: skip
    run_cli(*args)
    curve = json.loads((out / "curve.json").read_text())
    assert [r["step"] for r in curve["rows"]] == [10, 20]
    for row in curve["rows"]:
        assert row["samples"] == 20 and row["fd_cnn_ratio"] > 0 and row["fd_mlp_ratio"] > 0
        assert row["train_loss"] > 0 and row["held_out_loss"] > 0
    assert (out / "curve.png").stat().st_size > 1000 and (out / "model.safetensors").is_file()
    # the same command again resumes at step 20: nothing more to train, the curve unchanged
    run_cli(*args)
    assert json.loads((out / "curve.json").read_text())["rows"] == curve["rows"]
    # without --eval-every there is no curve
    plain = tmp_path / "plain"
    run_cli("train", "--iterations", "2", "--batch", "4", "--warmup", "1", "--out", str(plain))
    assert (plain / "model.safetensors").is_file() and not (plain / "curve.json").exists()


def test_train_refuses_an_evaluation_interval_that_resuming_would_repeat(tmp_path):
    result = run_cli("train", "--iterations", "20", "--checkpoint-every", "10", "--eval-every", "15",
                     "--out", str(tmp_path / "run"), check=False)  # fmt: skip
    assert result.returncode != 0 and "multiple of --checkpoint-every" in result.stderr
    assert not (tmp_path / "run").exists()
