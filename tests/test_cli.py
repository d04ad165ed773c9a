import json

import numpy as np
import pytest
from conftest import run_cli

from lazydit.cli import COMMANDS


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_subcommand_has_help(name):
    proc = run_cli(name, "--help")
    assert proc.stdout.startswith("usage: lazydit " + name)


def test_sample_writes_npz_and_a_grid_with_one_row_per_class(tiny_model_path, tmp_path):
    proc = run_cli(
        "sample",
        "--model",
        str(tiny_model_path),
        "--steps",
        "4",
        "--per-class",
        "2",
        "--seed",
        "1",
        "--out",
        str(tmp_path),
    )
    assert "20 samples" in proc.stdout
    data = np.load(tmp_path / "samples.npz")
    assert data["images"].shape == (20, 8, 8) and data["images"].dtype == np.uint8
    assert data["labels"].tolist() == [c for c in range(10) for _ in range(2)]
    from PIL import Image

    grid = Image.open(tmp_path / "grid.png")
    assert grid.size[1] == (10 * 9 + 1) * 4  # ten rows of 8 pixels + 1 padding, scaled 4x


def test_eval_reports_accuracy_fd_and_psnr_against_a_reference(tiny_model_path, tmp_path):
    run_cli("sample", "--model", str(tiny_model_path), "--steps", "3", "--per-class", "3", "--out", str(tmp_path))
    proc = run_cli(
        "eval",
        "--samples",
        str(tmp_path),
        "--reference",
        str(tmp_path / "samples.npz"),
        "--json",
        str(tmp_path / "q.json"),
    )
    result = json.loads((tmp_path / "q.json").read_text())
    assert json.loads(proc.stdout) == result
    assert result["psnr_db"] > 150  # identical images
    for kind in ("cnn", "mlp"):
        assert result[f"fd_{kind}"] > 0 and result[f"fd_{kind}_floor"] > 0
    assert 0 <= result["class_accuracy"] <= 1


def test_bad_input_exits_2_with_one_line(tmp_path):
    proc = run_cli("sample", "--model", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "o"), check=False)
    assert proc.returncode == 2 and "no such file" in proc.stderr.lower()
    assert not (tmp_path / "o").exists()
    proc = run_cli("plan", "--policy", "magic", "--steps", "4", "--out", str(tmp_path / "p.json"), check=False)
    assert proc.returncode == 2 and "unknown policy" in proc.stderr


def test_lazydit_plan_works_out_of_the_box_with_the_shipped_gates(tmp_path):
    out = tmp_path / "plan.json"
    proc = run_cli(
        "plan", "--policy", "lazydit", "--steps", "20", "--ratio", "0.5", "--calib-per-class", "1", "--out", str(out)
    )
    assert "160 modules skipped" in proc.stdout
    plan = json.loads(out.read_text())
    assert plan["policy"] == "lazydit" and plan["cells"][0] == " ".join(["CC"] * 8)
    assert plan["lazy_ratio"]["modules"] == 0.5 and 0 < plan["lazy_ratio"]["macs"] < 1


def test_compare_drift_reports_per_step_psnr_against_the_no_skip_sampler(tmp_path):
    run_cli(
        "compare",
        "--drift",
        "--per-class",
        "1",
        "--rows",
        "DDIM-20,FORA-20 n=2,LazyDiT-20 @50%",
        "--out",
        str(tmp_path),
    )
    report = json.loads((tmp_path / "drift.json").read_text())
    rows = {r["name"]: r for r in report["rows"]}
    assert rows["DDIM-20"]["psnr_per_step_db"] == [99.0] * 20  # identical to the reference: capped
    fora = rows["FORA-20 n=2"]
    assert fora["skipped_per_step"] == [0, 16] * 10
    assert fora["psnr_per_step_db"][0] == 99.0 and fora["psnr_per_step_db"][-1] < 60
    assert (tmp_path / "drift.png").stat().st_size > 0 and "| LazyDiT-20 @50% |" in (tmp_path / "drift.md").read_text()
    bad = run_cli("compare", "--drift", "--rows", "DDIM-20,DDIM-10", "--out", str(tmp_path / "x"), check=False)
    assert bad.returncode == 2 and "one step count" in bad.stderr
