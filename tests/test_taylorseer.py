"""TaylorSeer side by side with diffusers' own cache hook, the taylor forecast basis in every
place a forecast goes, and the policies that reach 4x (taylorseer, search).

The peer: the default model converted to diffusers' layout (a ``DiTTransformer2DModel`` folder)
runs in a DDIM loop as diffusers' DiTPipeline does, with ``diffusers.hooks.apply_taylorseer_cache``
on every block's ``attn1`` and ``ff`` (the hook's default patterns hook nothing in a DiT, and its
state lives in a cache context set by hand). lazydit loads the same folder and runs a taylorseer
plan with the hook's schedule through the reference executor; the exported step graphs run the
same plan. The negative control: the Newton basis at the same schedule must not match at orders
2 and 3 (it agrees at order 1, where the two bases coincide)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TINY, make_tiny_model, run_cli, step_graph_sample
from test_checkpoints import to_diffusers

from lazydit.executor import sample
from lazydit.pipelines import ModelSource, load
from lazydit.plans import Plan, PlanError
from lazydit.policies import PlanRequest, make_plan, taylorseer_schedule

STEPS, WARMUP, INTERVAL, CFG = 20, 3, 4, 1.5


@pytest.fixture(scope="module")
def diffusers_folder(tmp_path_factory):
    """The default model in diffusers' layout, saved as diffusers saves a transformer."""
    from diffusers import DiTTransformer2DModel

    dit = load().dit
    c = dit.config
    model = DiTTransformer2DModel(
        num_attention_heads=c.num_heads,
        attention_head_dim=c.hidden_size // c.num_heads,
        in_channels=c.in_channels,
        out_channels=c.in_channels,
        num_layers=c.depth,
        sample_size=c.input_size,
        patch_size=c.patch_size,
        num_embeds_ada_norm=c.num_classes,
        norm_type="ada_norm_zero",
    )
    state = {k: v for k, v in dit.state_dict().items() if k != "pos_embed"}
    missing, unexpected = model.load_state_dict(to_diffusers(state, c.depth), strict=False)
    assert not unexpected and all("pos_embed" in k for k in missing), (missing, unexpected)
    folder = tmp_path_factory.mktemp("diffusers") / "transformer"
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def diffusers_ddim(folder, noise, labels, order: int | None) -> torch.Tensor:
    """diffusers' DiT (hooked when ``order`` is given) in DiTPipeline's loop: batch = the classes
    and the null class, guidance on epsilon, ``DDIMScheduler.step`` on the pair."""
    from diffusers import DDIMScheduler, DiTTransformer2DModel
    from diffusers.hooks import HookRegistry, TaylorSeerCacheConfig, apply_taylorseer_cache
    from diffusers.models.cache_utils import CacheMixin

    model = DiTTransformer2DModel.from_pretrained(folder).eval()
    if order is not None:
        config = TaylorSeerCacheConfig(
            cache_interval=INTERVAL,
            disable_cache_before_step=WARMUP,
            max_order=order,
            taylor_factors_dtype=torch.float32,
            cache_identifiers=[r"transformer_blocks\.\d+\.attn1", r"transformer_blocks\.\d+\.ff"],
        )
        apply_taylorseer_cache(model, config)
        HookRegistry.check_if_exists_or_initialize(model).reset_stateful_hooks()
    scheduler = DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=1e-4,
        beta_end=0.02,
        beta_schedule="linear",
        clip_sample=False,
        set_alpha_to_one=True,
        steps_offset=0,
        timestep_spacing="leading",
    )
    scheduler.set_timesteps(STEPS)
    n = noise.shape[0]
    class_labels = torch.cat([labels, torch.full_like(labels, 10)])
    x = noise.clone()
    context = CacheMixin.cache_context(model, "cond") if order is not None else torch.no_grad()
    with torch.no_grad(), context:
        for t in scheduler.timesteps:
            out = model(torch.cat([x, x]), timestep=t[None].expand(2 * n), class_labels=class_labels).sample
            eps = out[n:] + CFG * (out[:n] - out[n:])
            x = scheduler.step(eps, t, x).prev_sample
    return x


@pytest.fixture(scope="module")
def peer(diffusers_folder):
    loaded = load(ModelSource(model=str(diffusers_folder)))
    noise = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    labels = torch.tensor([1, 4, 7, 9])
    return loaded.dit, noise, labels


def taylorseer_plan(model, order: int, basis: str | None = None) -> Plan:
    request = PlanRequest(steps=STEPS, interval=INTERVAL, warmup=WARMUP, forecast_order=order, forecast_basis=basis)
    return make_plan("taylorseer", model, request)


def test_the_converted_model_without_hooks_matches_full_compute(diffusers_folder, peer):
    model, noise, labels = peer
    ours = sample(model, noise, labels, Plan.full(STEPS, model.config.depth, sampler=model.sampler), CFG)
    torch.testing.assert_close(ours, diffusers_ddim(diffusers_folder, noise, labels, None), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_a_taylorseer_plan_reproduces_diffusers_taylorseer_hook(diffusers_folder, peer, order):
    model, noise, labels = peer
    plan = taylorseer_plan(model, order)
    theirs = diffusers_ddim(diffusers_folder, noise, labels, order)
    ours = sample(model, noise, labels, plan, CFG)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    # the forecasts matter: reuse at the same schedule, and full compute, are both far from the hook
    reuse = Plan.from_skips(plan.steps, plan.depth, set(plan.skipped_cells()), sampler=model.sampler)
    full = Plan.full(STEPS, model.config.depth, sampler=model.sampler)
    for other in (reuse, full):
        assert (sample(model, noise, labels, other, CFG) - theirs).abs().max() > 1e-2
    if order > 1:  # negative control: the exact Newton polynomial is not the hook's expansion
        newton = sample(model, noise, labels, taylorseer_plan(model, order, "newton"), CFG)
        assert (newton - theirs).abs().max() > 1e-3


def test_the_hook_schedule_is_taylorseer_policy_schedule():
    assert taylorseer_schedule(20, 4, 3) == [0, 1, 2, 4, 8, 12, 16]
    assert taylorseer_schedule(10, 2, 1) == [0, 2, 4, 6, 8]  # warm-up 1, interval 2: FORA-2


@pytest.mark.parametrize("order", [2, 3])
def test_exported_step_graphs_run_the_taylor_basis(order):
    model = make_tiny_model()
    noise = torch.randn(
        1, TINY.in_channels, TINY.input_size, TINY.input_size, generator=torch.Generator().manual_seed(0)
    )
    labels = torch.tensor([2])  # a bundle's step graphs make one image
    request = PlanRequest(steps=12, interval=3, warmup=2, forecast_order=order)
    plan = make_plan("taylorseer", model, request)
    assert plan.basis == "taylor" and plan.max_order == order
    expected = sample(model, noise, labels, plan, 1.5)
    torch.testing.assert_close(step_graph_sample(model, noise, labels, plan, 1.5), expected, rtol=1e-5, atol=1e-5)
    newton = make_plan("taylorseer", model, PlanRequest(**{**request.__dict__, "forecast_basis": "newton"}))
    assert (step_graph_sample(model, noise, labels, newton, 1.5) - expected).abs().max() > 1e-4


def test_a_taylor_plan_is_version_3_and_a_newton_plan_stays_version_2(tmp_path):
    model = make_tiny_model()
    plan = make_plan("taylorseer", model, PlanRequest(steps=10, interval=2, forecast_order=2))
    data = plan.to_dict()
    assert data["version"] == 3 and data["forecast_basis"] == "taylor"
    assert Plan.from_dict(data).basis == "taylor"
    newton = make_plan("fora", model, PlanRequest(steps=10, interval=2, forecast=True, forecast_order=2)).to_dict()
    assert newton["version"] == 2 and "forecast_basis" not in newton
    with pytest.raises(PlanError, match="taylor basis is written as version 3"):
        Plan.from_dict({**data, "version": 2})
    with pytest.raises(PlanError, match="unknown"):
        Plan.from_dict({**data, "forecast_basis": "chebyshev"})


def test_taylorseer_policy_through_the_cli(tmp_path, tiny_model_path):
    out = tmp_path / "ts.json"
    run_cli("plan", "--model", str(tiny_model_path), "--policy", "taylorseer", "--steps", "20", "--ratio", "0.75",
            "--forecast-order", "3", "--out", str(out))  # fmt: skip
    data = json.loads(out.read_text())
    assert data["policy"] == "taylorseer" and data["forecast_basis"] == "taylor"
    assert (data["params"]["warmup"], data["params"]["interval"]) == (1, 5)  # the most even schedule at 75%
    assert abs(data["lazy_ratio"]["modules"] - 0.75) < 0.03
    both = run_cli("plan", "--model", str(tiny_model_path), "--policy", "taylorseer", "--steps", "20",
                   "--ratio", "0.5", "--interval", "2", "--out", str(tmp_path / "x.json"), check=False)  # fmt: skip
    assert both.returncode != 0 and "--interval or --ratio" in both.stderr
    warm = run_cli("plan", "--model", str(tiny_model_path), "--policy", "taylorseer", "--steps", "5",
                   "--warmup", "5", "--out", str(tmp_path / "y.json"), check=False)  # fmt: skip
    assert warm.returncode != 0 and "--warmup 5" in warm.stderr
    assert not (tmp_path / "x.json").exists() and not (tmp_path / "y.json").exists()


def _final_errors(model, plan, request) -> tuple[float, float, float]:
    """The plan's final samples from the search's calibration noises, scored three ways: the
    search objective's own (mean squared error, objective value) and lazydit.metrics.psnr's."""
    from lazydit.executor import sample
    from lazydit.metrics import psnr
    from lazydit.policies import _FinalError

    objective = _FinalError(model, request)
    computes = {
        (b, m): {k for k in range(plan.steps) if plan.action(k, b, m) == "C"}
        for b in range(plan.depth)
        for m in ("attn", "mlp")
    }
    value = objective(computes)
    with torch.no_grad():
        final = sample(model, objective.noise, objective.labels, plan)
    return objective.mse, value, psnr(final, objective.reference)


def test_search_keeps_the_budget_and_lowers_the_calibration_error(tmp_path, tiny_model_path):
    """The default objective is the final samples' mean per-image PSNR, as the frontier scores a
    row; --search-objective mse lowers their mean squared error instead."""
    model = make_tiny_model()
    start = make_plan("fora", model, PlanRequest(steps=10, interval=3))
    start_path = tmp_path / "start.json"
    start.save(start_path)

    def search(name, *extra):
        run_cli("plan", "--model", str(tiny_model_path), "--policy", "search", "--steps", "10", "--start",
                str(start_path), "--forecast", "--calib-samples", "4", "--search-rounds", "1", *extra,
                "--out", str(tmp_path / name))  # fmt: skip
        return json.loads((tmp_path / name).read_text())

    request = PlanRequest(steps=10, forecast=True, calib_samples=4)
    start_mse, start_value, start_psnr = _final_errors(model, start.with_forecast(1, "newton"), request)
    assert start_value == pytest.approx(-start_psnr, rel=1e-6)  # the objective is metrics.psnr's, negated
    data = search("search.json")
    found = Plan.from_dict(data)
    assert data["skipped"] == len(start.skipped_cells())
    mse, _, found_psnr = _final_errors(model, found, request)
    assert data["params"]["search_objective"] == "psnr"
    assert data["params"]["calib_psnr_db"] == pytest.approx(found_psnr, rel=1e-5)
    assert data["params"]["calib_mse"] == pytest.approx(mse, rel=1e-5)
    assert found_psnr > start_psnr  # and the start plan does not score what the found one does
    by_mse = search("mse.json", "--search-objective", "mse")
    assert by_mse["params"]["search_objective"] == "mse" and "calib_psnr_db" not in by_mse["params"]
    assert by_mse["params"]["calib_mse"] == pytest.approx(
        _final_errors(model, Plan.from_dict(by_mse), request)[0], rel=1e-5
    )
    assert by_mse["params"]["calib_mse"] < start_mse
    # from scratch at a ratio: exactly that many skips
    out2 = tmp_path / "scratch.json"
    run_cli("plan", "--model", str(tiny_model_path), "--policy", "search", "--steps", "10", "--ratio", "0.6",
            "--calib-samples", "2", "--search-rounds", "1", "--out", str(out2))  # fmt: skip
    assert json.loads(out2.read_text())["skipped"] == round(0.6 * 10 * TINY.depth * 2)


def test_search_refuses_a_budget_the_steps_cannot_reach_and_a_start_plan_of_another_budget(tmp_path, tiny_model_path):
    model = make_tiny_model()
    start_path = tmp_path / "start.json"
    make_plan("fora", model, PlanRequest(steps=10, interval=2)).save(start_path)
    far = run_cli("plan", "--model", str(tiny_model_path), "--policy", "search", "--steps", "10", "--ratio", "0.95",
                  "--out", str(tmp_path / "a.json"), check=False)  # fmt: skip
    assert far.returncode != 0 and "out of range for 10 steps" in far.stderr
    other = run_cli("plan", "--model", str(tiny_model_path), "--policy", "search", "--steps", "10", "--ratio", "0.3",
                    "--start", str(start_path), "--out", str(tmp_path / "b.json"), check=False)  # fmt: skip
    assert other.returncode != 0 and "drop --ratio" in other.stderr
    assert not (tmp_path / "a.json").exists() and not (tmp_path / "b.json").exists()


def test_a_taylorseer_plan_of_order_3_exports_and_replays_its_golden_vectors(tmp_path, tiny_model_path):
    plan = tmp_path / "ts.json"
    run_cli("plan", "--model", str(tiny_model_path), "--policy", "taylorseer", "--steps", "12", "--interval", "3",
            "--warmup", "2", "--forecast-order", "3", "--out", str(plan))  # fmt: skip
    result = run_cli("export", "--model", str(tiny_model_path), "--plan", str(plan), "--formats", "onnx",
                     "--out", str(tmp_path / "bundle"))  # fmt: skip
    assert "onnx: golden replay min PSNR" in result.stdout
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert json.dumps(manifest).count("taylor") >= 1


def test_gates_refuse_a_training_budget_the_steps_cannot_reach(tmp_path, tiny_model_path):
    result = run_cli("train-gates", "--model", str(tiny_model_path), "--steps", "4", "--target-ratio", "0.8",
                     "--out", str(tmp_path / "g.safetensors"), check=False)  # fmt: skip
    assert result.returncode != 0 and "out of range for 4 steps" in result.stderr
    assert not (tmp_path / "g.safetensors").exists()


def test_a_sampler_resumed_from_a_snapshot_finishes_as_the_whole_run():
    model = make_tiny_model()
    noise = torch.randn(
        3, TINY.in_channels, TINY.input_size, TINY.input_size, generator=torch.Generator().manual_seed(1)
    )
    labels = torch.tensor([0, 1, 2])
    plan = make_plan("fora", model, PlanRequest(steps=9, interval=3, forecast=True, forecast_order=2))
    snapshots: list = []
    whole = sample(model, noise, labels, plan, snapshots=snapshots, history=3)
    assert [s.step for s in snapshots] == list(range(9))
    for k in (1, 4, 8):
        resumed = sample(model, noise, labels, plan, resume=snapshots[k], history=3)
        torch.testing.assert_close(resumed, whole, rtol=0, atol=0)
    other = make_plan("fora", model, PlanRequest(steps=9, interval=2, forecast=True, forecast_order=2))
    # a snapshot is the state of the plan that made it: another plan resumed there ends elsewhere
    assert not torch.equal(sample(model, noise, labels, other, resume=snapshots[4], history=3), whole)
