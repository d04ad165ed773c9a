import pytest
import torch
from conftest import TINY, make_tiny_model

from lazydit.checkpoints import default_model
from lazydit.diffusion import initial_noise
from lazydit.executor import sample
from lazydit.gates import GateError, GateTrainConfig, LazyGates, save_gates, soft_trajectory, train_gates
from lazydit.model import MODULES
from lazydit.plans import Plan
from lazydit.policies import PlanRequest, make_plan


@pytest.fixture(scope="module")
def model():
    return make_tiny_model()


def _router(steps: int, logit: float) -> LazyGates:
    gates = LazyGates(steps, TINY.depth, TINY.hidden_size, kind="router")
    with torch.no_grad():
        gates.logits.fill_(logit)
    return gates


def test_soft_trajectory_with_hard_scores_is_the_plan_executor(model):
    noise, labels = initial_noise(3, (1, 8, 8), 2), torch.tensor([1, 5, 8])
    with torch.no_grad():
        computing, _ = soft_trajectory(model, _router(5, 60.0), noise, labels, 1.5)  # sigmoid(60) == 1.0
        reusing, scores = soft_trajectory(model, _router(5, -120.0), noise, labels, 1.5)  # == 0.0
    full = sample(model, noise, labels, Plan.full(5, TINY.depth), 1.5)
    torch.testing.assert_close(computing, full, rtol=1e-6, atol=1e-6)
    skip_all = Plan.from_skips(
        5, TINY.depth, {(k, b, m) for k in range(1, 5) for b in range(TINY.depth) for m in MODULES}
    )
    torch.testing.assert_close(reusing, sample(model, noise, labels, skip_all, 1.5), rtol=1e-6, atol=1e-6)
    assert len(scores) == 4 * TINY.depth * len(MODULES)  # every step but the first


def test_soft_forecast_with_hard_scores_is_the_forecasting_plan_executor(model):
    """Compute/skip patterns with gaps of one and several steps, so the slope's span varies."""
    plan = Plan.from_skips(
        7,
        TINY.depth,
        {
            (2, 0, "attn"),
            (3, 0, "attn"),
            (4, 0, "attn"),
            (1, 1, "mlp"),
            (3, 1, "mlp"),
            (5, 2, "attn"),
            (6, 2, "attn"),
            (6, 0, "mlp"),
        },
    )
    gates = LazyGates(7, TINY.depth, TINY.hidden_size, kind="router")
    with torch.no_grad():
        for k in range(1, 7):
            for b in range(TINY.depth):
                for m in MODULES:
                    gates.logits[gates._index(k, b, m)] = 60.0 if plan.action(k, b, m) == "C" else -120.0
    noise, labels = initial_noise(2, (1, 8, 8), 4), torch.tensor([0, 6])
    with torch.no_grad():
        soft, _ = soft_trajectory(model, gates, noise, labels, 1.5, forecast=True)
    torch.testing.assert_close(soft, sample(model, noise, labels, plan.with_forecast(), 1.5), rtol=1e-5, atol=1e-5)


def test_trajectory_training_steers_the_mean_score_to_the_target_ratio():
    model = default_model()  # a trained model: computing a module really lowers the loss

    def mean_score(gates):
        with torch.no_grad():
            _, scores = soft_trajectory(model, gates, initial_noise(8, (1, 8, 8), 11), torch.arange(8), 1.5)
        return float(torch.stack([s.mean() for _, s in scores]).mean())

    # ratio 0.6 of all cells = 0.8 of the trainable ones skipped (mean score 0.2); 0.1 -> 0.867
    common = {"kind": "router", "objective": "trajectory", "iterations": 50, "batch": 4, "lr": 5e-2, "pool": 16}
    lazy, losses = train_gates(model, GateTrainConfig(steps=4, target_ratio=0.6, **common), progress=False)
    busy, _ = train_gates(model, GateTrainConfig(steps=4, target_ratio=0.1, **common), progress=False)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert mean_score(lazy) < 0.4
    assert mean_score(busy) > 0.6
    gates, losses = train_gates(
        model, GateTrainConfig(steps=4, objective="trajectory", iterations=5, batch=4, lr=1e-3, pool=8), progress=False
    )
    assert len(losses) == 5 and mean_score(gates) != 0.5


def test_bad_training_requests_are_refused(model):
    with pytest.raises(GateError, match="unknown objective"):
        GateTrainConfig(steps=4, objective="global")
    with pytest.raises(GateError, match="out of range"):
        GateTrainConfig(steps=4, objective="trajectory", target_ratio=0.9)


def test_saturated_gates_are_ranked_by_their_logits(model, tmp_path):
    """Scores of exactly 0.0 in float32 tie; the plan must still skip the cells the gates need least."""
    gates = _router(4, -120.0)  # sigmoid(-120) == 0.0
    least = {(2, 1, "attn"), (3, 0, "mlp")}
    with torch.no_grad():
        for cell in least:
            gates.logits[gates._index(*cell)] = -300.0
    assert float(torch.sigmoid(gates.logits.detach()).max()) == 0.0
    path = save_gates(gates, tmp_path / "router", model)
    plan = make_plan("l2c", model, PlanRequest(steps=4, ratio=2 / 24, gates=str(path)))
    assert set(plan.skipped_cells()) == least


def test_every_shipped_gate_file_is_tied_to_the_default_model():
    from lazydit.gates import default_gates_path, load_gates

    model = default_model()
    shipped = [(n, "lazydit", o) for n in (10, 20, 50) for o in ("trajectory", "local")] + [(20, "router", "local")]
    for steps, kind, objective in shipped:
        gates = load_gates(default_gates_path(steps, kind, objective), model, steps)
        assert (gates.steps, gates.kind) == (steps, kind)


def test_objective_defaults_live_in_the_config_not_the_command_line():
    trajectory = GateTrainConfig(steps=20)
    assert (trajectory.objective, trajectory.lr, trajectory.iterations, trajectory.batch) == (
        "trajectory",
        3e-4,
        400,
        16,
    )
    assert trajectory.target_ratio == 0.5
    local = GateTrainConfig(steps=20, objective="local")
    assert (local.lr, local.iterations, local.batch, local.target_ratio) == (5e-3, 1500, 32, None)
    assert GateTrainConfig(steps=20, lr=1e-2).lr == 1e-2


def test_the_command_and_the_python_call_with_the_same_arguments_write_identical_gates(tiny_model_path, tmp_path):
    from conftest import run_cli

    from lazydit import api
    from lazydit.pipelines import ModelSource

    args = {"steps": 3, "iterations": 3, "batch": 4, "pool": 8, "seed": 5}
    flags = [f"--{k}={v}" for k, v in args.items()]
    run_cli("train-gates", "--model", str(tiny_model_path), *flags, "--out", str(tmp_path / "cli.safetensors"))
    source = ModelSource(model=str(tiny_model_path))
    path, _ = api.train_gates(GateTrainConfig(**args), source, out=tmp_path / "api.safetensors")
    assert path.read_bytes() == (tmp_path / "cli.safetensors").read_bytes()
    # a different seed is a different training run: the files must differ
    other, _ = api.train_gates(GateTrainConfig(**{**args, "seed": 6}), source, out=tmp_path / "other.safetensors")
    assert other.read_bytes() != path.read_bytes()


@pytest.mark.parametrize("order", [0, 1, 2])
def test_checkpointing_every_sampler_step_leaves_the_gradients_as_they_are(model, order):
    gates = LazyGates(5, TINY.depth, TINY.hidden_size)
    with torch.no_grad():
        for linear in gates.linears:
            linear.weight.normal_(0, 0.05)
    noise, labels = initial_noise(2, (1, 8, 8), 3), torch.tensor([2, 7])

    def gradients(checkpoint: bool, cfg_scale: float = 1.5) -> torch.Tensor:
        gates.zero_grad(set_to_none=True)
        final, scores = soft_trajectory(model, gates, noise, labels, cfg_scale, order, checkpoint=checkpoint)
        (final.square().mean() + 1e-3 * sum(s.mean() for _, s in scores)).backward()
        return torch.cat([p.grad.flatten() for p in gates.parameters() if p.grad is not None])

    plain = gradients(checkpoint=False)
    assert plain.abs().max() > 0
    torch.testing.assert_close(gradients(checkpoint=True), plain, rtol=1e-6, atol=1e-9)
    # segments of about sqrt(steps) steps (here 3 + 2): the scores come back in step order
    with torch.no_grad():
        _, flat = soft_trajectory(model, gates, noise, labels, 1.5, order, checkpoint=False)
    _, segmented = soft_trajectory(model, gates, noise, labels, 1.5, order, checkpoint=True)
    assert [n for n, _ in segmented] == [n for n, _ in flat] and len(flat) == 4 * 2 * TINY.depth
    torch.testing.assert_close(torch.stack([s for _, s in segmented]).detach(), torch.stack([s for _, s in flat]))
    # negative control: another guidance scale is another trajectory, with other gradients
    assert not torch.allclose(gradients(checkpoint=True, cfg_scale=3.0), plain, rtol=1e-3, atol=1e-6)


def test_gates_trained_with_and_without_checkpointing_are_the_same(tiny_model_path, tmp_path):
    from conftest import run_cli
    from safetensors.torch import load_file

    flags = ["--model", str(tiny_model_path), "--steps=3", "--iterations=3", "--batch=4", "--pool=8", "--forecast"]
    run_cli("train-gates", *flags, "--out", str(tmp_path / "on.safetensors"))
    run_cli("train-gates", *flags, "--no-checkpoint", "--out", str(tmp_path / "off.safetensors"))
    on, off = load_file(str(tmp_path / "on.safetensors")), load_file(str(tmp_path / "off.safetensors"))
    assert on.keys() == off.keys() and all(torch.allclose(on[k], off[k], rtol=1e-6, atol=1e-9) for k in on)
