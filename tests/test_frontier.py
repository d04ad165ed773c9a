"""The quality-vs-compute frontier: rows per family and budget, resumable parts, refusals."""

from __future__ import annotations

import json

from conftest import make_tiny_model, run_cli

from lazydit.checkpoints import save_model
from lazydit.compare import frontier_rows


def test_frontier_rows_cover_every_family_at_every_budget_it_can_make():
    rows = frontier_rows((20,), (0.25, 0.75))
    names = {r.name for r in rows}
    assert "DDIM-5 (20@75%)" in names and "DDIM-15 (20@25%)" in names  # equal compute
    assert "fora+forecast 20@75%" in names and "fora 20@25%" not in names  # FORA cannot skip a quarter
    assert {r.interval for r in rows if r.policy == "fora"} == {4}
    assert {r.forecast_order for r in rows if r.params["family"].startswith("taylorseer")} == {1, 2, 3}
    assert all(r.dynamic == ("dynamic" in r.params["family"]) for r in rows)


def test_the_frontier_resumes_and_refuses_another_model(tmp_path, tiny_model_path):
    out = tmp_path / "frontier"
    common = ["compare", "--frontier", "--model", str(tiny_model_path), "--per-class", "1",
              "--frontier-steps", "10", "--frontier-ratios", "0.5", "--out", str(out)]  # fmt: skip
    run_cli(*common, "--frontier-families", "fora+forecast,taylorseer-2")
    first = json.loads((out / "frontier.json").read_text())["rows"]
    assert set(first) == {"fora+forecast 10@50%", "taylorseer-2 10@50%"}
    run_cli(*common, "--frontier-families", "fora+forecast,random")
    second = json.loads((out / "frontier.json").read_text())["rows"]
    assert set(second) == set(first) | {"random 10@50%"}
    assert second["fora+forecast 10@50%"] == first["fora+forecast 10@50%"]  # kept, not run again
    text = (out / "frontier.md").read_text()
    assert "random" in text and "taylorseer-2" in text and (out / "frontier.png").stat().st_size > 1000
    # both parts of the sweep are listed as the commands that regenerate it
    assert "fora+forecast,taylorseer-2" in text and "fora+forecast,random" in text
    other = tmp_path / "other.safetensors"
    save_model(make_tiny_model(seed=5), other.with_suffix(""))
    refused = run_cli(*[a if a != str(tiny_model_path) else str(other) for a in common], check=False)
    assert refused.returncode != 0 and "another model" in refused.stderr
    bad = run_cli(*common, "--frontier-families", "fora,magic", check=False)
    assert bad.returncode != 0 and "magic" in bad.stderr


def test_the_search_from_fora_keeps_foras_budget_and_its_forecast(tiny_model):
    from dataclasses import replace

    from lazydit.compare import row_plan
    from lazydit.policies import PlanRequest, make_plan

    model = tiny_model
    (row,) = frontier_rows((6,), (0.5,), ("search-fora+forecast-2",))
    assert row.policy == "search" and row.interval == 2 and row.params["calib_samples"] == 60
    row = replace(row, params={**row.params, "calib_samples": 3})
    plan = row_plan(model, row)
    fora = make_plan("fora", model, PlanRequest(steps=6, interval=2, forecast=True, forecast_order=2))
    assert plan.policy == "search" and plan.params["calib_samples"] == 3 and plan.params["seed"] == 1
    assert len(plan.skipped_cells()) == len(fora.skipped_cells())  # the start plan's budget
    assert plan.params["forecast_order"] == 2


def test_the_search_from_taylorseer_starts_from_its_schedule_in_its_basis(tiny_model):
    """With no moves allowed the search returns TaylorSeer's own plan (schedule, order 3 forecasts,
    taylor basis); with moves it keeps that budget."""
    from dataclasses import replace

    from lazydit.compare import row_plan
    from lazydit.policies import PlanRequest, make_plan

    (row,) = frontier_rows((10,), (0.5,), ("search-taylorseer-transfer+forecast-3",))
    assert row.policy == "search" and row.ratio == 0.5 and row.params["start"] == "taylorseer"
    taylor = make_plan("taylorseer", tiny_model, PlanRequest(steps=10, ratio=0.5, forecast_order=3))
    fixed = replace(row, params={**row.params, "calib_samples": 2, "check_samples": 0, "search_rounds": 0,
                                 "search_transfers": 0})  # fmt: skip
    plan = row_plan(tiny_model, fixed)
    assert plan.basis == taylor.basis == "taylor"
    cells = [(k, b, m) for k in range(10) for b in range(plan.depth) for m in ("attn", "mlp")]
    assert [(plan.action(*c), plan.order(*c)) for c in cells] == [(taylor.action(*c), taylor.order(*c)) for c in cells]
    moved = row_plan(tiny_model, replace(fixed, params={**fixed.params, "search_transfers": 1}))
    assert len(moved.skipped_cells()) == len(taylor.skipped_cells())
    assert moved.params["calib_mse"] <= plan.params["calib_mse"] + 1e-12


def test_transfers_move_computes_between_modules_at_the_same_budget(tmp_path, tiny_model_path):
    """The search's transfer rounds keep the start plan's budget, never end worse than the start on
    the calibration error, and report the error of the plan they return (measured again)."""
    from lazydit.plans import Plan

    common = ["--model", str(tiny_model_path), "--steps", "10"]
    run_cli("plan", "--policy", "fora", *common, "--interval", "2", "--forecast", "--forecast-order", "2",
            "--out", str(tmp_path / "fora.json"))  # fmt: skip

    def search(name, start, *extra):
        run_cli("plan", "--policy", "search", *common, "--start", str(start), "--forecast", "--forecast-order", "2",
                "--calib-samples", "4", "--search-rounds", "0", *extra, "--out", str(tmp_path / name))  # fmt: skip
        return Plan.load(tmp_path / name)

    start = search("start.json", tmp_path / "fora.json")  # no moves: the start plan's own error
    moved = search("moved.json", tmp_path / "fora.json", "--search-transfers", "2")
    again = search("again.json", tmp_path / "moved.json")
    checked = search("checked.json", tmp_path / "fora.json", "--search-transfers", "2", "--check-samples", "4")
    # rounds the held-out noises reject are undone: the checked plan is never worse on them
    assert checked.params["check_psnr_db"] >= checked.params["check_psnr_db_start"]
    assert len(checked.skipped_cells()) == len(start.skipped_cells())
    assert abs(
        search("checked-again.json", tmp_path / "checked.json").params["calib_psnr_db"]
        - checked.params["calib_psnr_db"]
    ) <= 1e-6 * abs(checked.params["calib_psnr_db"])
    assert len(moved.skipped_cells()) == len(start.skipped_cells())
    assert moved.params["search_transfers"] == 2 and moved.params["evaluations"] > start.params["evaluations"] + 20
    assert moved.params["calib_psnr_db"] >= start.params["calib_psnr_db"]
    assert abs(again.params["calib_psnr_db"] - moved.params["calib_psnr_db"]) <= 1e-6 * abs(
        moved.params["calib_psnr_db"]
    )
    if moved.params["calib_psnr_db"] > start.params["calib_psnr_db"]:
        assert moved.cells != start.cells
    bad = run_cli("plan", "--policy", "search", *common, "--start", str(tmp_path / "fora.json"),
                  "--search-transfers", "-1", "--out", str(tmp_path / "bad.json"), check=False)  # fmt: skip
    assert bad.returncode != 0 and "--search-transfers" in bad.stderr and not (tmp_path / "bad.json").exists()
