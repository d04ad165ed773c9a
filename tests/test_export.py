"""Export through the real CLI, then prove the bundle against its golden vectors on every
runnable backend, and refuse every kind of broken bundle."""

import json
import shutil
import sys

import numpy as np
import pytest
from conftest import TINY_PLAN_CELLS, run_cli

import lazydit.export  # noqa: F401  (registers the eager reference backend, torch)
from lazydit.runtime.backends import create_backend
from lazydit.runtime.bundle import Bundle, BundleError
from lazydit.runtime.loop import run_bundle, verify
from lazydit.runtime.tensorfile import read_tensors


def test_bundle_layout_and_shared_methods(tiny_bundle):
    m = json.loads((tiny_bundle / "manifest.json").read_text())
    # steps 0 and 4 compute everything and feed the same later reads, so they share a method;
    # steps 1 and 5 skip the same cells, but step 5 is last and writes nothing: not shared
    assert m["steps"][0]["method"] == m["steps"][4]["method"]
    assert m["steps"][1]["method"] != m["steps"][5]["method"]
    assert len(m["methods"]) == 6 and "decode" in m["methods"]
    assert (tiny_bundle / "model.pte").is_file() and (tiny_bundle / "onnx" / "weights.bin").is_file()
    golden = read_tensors(tiny_bundle / "golden.lzt")
    assert golden["decode/out/image"].dtype == np.uint8 and golden["init/y"].tolist() == [3]
    for i, step in enumerate(m["steps"]):
        for inp in m["methods"][step["method"]]["inputs"]:
            assert f"step/{i}/in/{inp['name']}" in golden


def test_cache_liveness_reads_only_what_is_skipped(tiny_bundle):
    m = json.loads((tiny_bundle / "manifest.json").read_text())
    for step in m["steps"]:
        k = step["index"]
        method = m["methods"][step["method"]]
        reads = {i["source"] for i in method["inputs"] if i["source"].startswith("cache:")}
        for src in reads:
            block, module = src.removeprefix("cache:").split(".")[:2]
            column = ["attn", "mlp"].index(module)
            cell = TINY_PLAN_CELLS[k][int(block)][column]
            if src.endswith(".slope"):
                assert cell == "F"
            elif cell == "C":  # computing: reads the old output only to form a slope for a later forecast
                later = [row[int(block)][column] for row in TINY_PLAN_CELLS[k + 1 :]]
                upto = later.index("C") if "C" in later else len(later)
                assert "F" in later[:upto]
            else:
                assert cell in "RF"
    first = m["methods"][m["steps"][0]["method"]]
    assert not any(i["source"].startswith("cache:") for i in first["inputs"])
    last = m["methods"][m["steps"][-1]["method"]]
    assert [o["target"] for o in last["outputs"]] == ["x"]  # nothing is read after the last step


@pytest.mark.parametrize("backend", ["onnxruntime", "executorch", "torch"])
def test_golden_vectors_replay_on_every_backend(tiny_bundle, backend):
    result = verify(create_backend(backend, Bundle.load(tiny_bundle)))
    assert result["min_psnr_db"] >= 40, result


def test_verify_cli_reports_per_step_psnr(tiny_bundle):
    proc = run_cli("verify", "--bundle", str(tiny_bundle), "--backend", "onnxruntime")
    report = json.loads(proc.stdout)
    assert report["passed"] and len(report["per_step_psnr_db"]) == len(TINY_PLAN_CELLS)


def _copy(bundle, tmp_path):
    dst = tmp_path / "b"
    shutil.copytree(bundle, dst)
    return dst


def test_tampered_artifact_is_refused(tiny_bundle, tmp_path):
    b = _copy(tiny_bundle, tmp_path)
    with open(b / "onnx" / "weights.bin", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(BundleError, match="does not match its sha256"):
        Bundle.load(b)
    proc = run_cli("verify", "--bundle", str(b), check=False)
    assert proc.returncode == 2 and "sha256" in proc.stderr


def test_missing_artifact_is_refused(tiny_bundle, tmp_path):
    b = _copy(tiny_bundle, tmp_path)
    (b / "model.pte").unlink()
    with pytest.raises(BundleError, match="model.pte is missing"):
        Bundle.load(b)


def test_manifest_io_names_that_do_not_match_the_graph_are_refused(tiny_bundle, tmp_path):
    b = _copy(tiny_bundle, tmp_path)
    m = json.loads((b / "manifest.json").read_text())
    method = m["steps"][0]["method"]
    m["methods"][method]["outputs"][0]["name"] = "x_renamed"
    (b / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="do not match the manifest"):
        create_backend("onnxruntime", Bundle.load(b))


def test_truncated_pte_is_refused(tiny_bundle, tmp_path):
    b = _copy(tiny_bundle, tmp_path)
    pte = b / "model.pte"
    pte.write_bytes(pte.read_bytes()[: pte.stat().st_size // 3])
    m = json.loads((b / "manifest.json").read_text())
    from lazydit.runtime.bundle import sha256

    for f in m["artifacts"]["executorch"]["files"]:  # re-hash so the loader itself must notice
        f["sha256"], f["bytes"] = sha256(pte), pte.stat().st_size
    (b / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="ExecuTorch cannot load"):
        create_backend("executorch", Bundle.load(b))


def test_unknown_backend_is_refused(tiny_bundle):
    with pytest.raises(BundleError, match="unknown backend"):
        create_backend("tflite", Bundle.load(tiny_bundle))


def test_coreml_backend_needs_macos(tiny_bundle):
    import sys

    if sys.platform == "darwin":
        pytest.skip("on macOS the Core ML backend runs")
    with pytest.raises(BundleError, match="needs macOS"):
        create_backend("coreml", Bundle.load(tiny_bundle))


def test_existing_bundle_is_not_overwritten_without_force(tiny_bundle, tiny_model_path):
    proc = run_cli(
        "export",
        "--model",
        str(tiny_model_path),
        "--steps",
        "3",
        "--formats",
        "onnx",
        "--out",
        str(tiny_bundle),
        check=False,
    )
    assert proc.returncode == 2 and "--force" in proc.stderr


def test_plan_for_another_model_is_refused_and_nothing_is_left(tiny_model_path, tmp_path):
    plan = {
        "format": "lazydit-plan",
        "version": 1,
        "policy": "ddim",
        "params": {},
        "sampler": {"name": "ddim", "steps": 2, "eta": 0.0},
        "model": {"depth": 8},
        "cells": ["CC " * 8] * 2,
    }
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    out = tmp_path / "bundle"
    proc = run_cli(
        "export",
        "--model",
        str(tiny_model_path),
        "--plan",
        str(tmp_path / "plan.json"),
        "--formats",
        "onnx",
        "--out",
        str(out),
        check=False,
    )
    assert proc.returncode == 2 and "8-block model" in proc.stderr
    assert list(tmp_path.iterdir()) == [tmp_path / "plan.json"]


def test_bundle_sampling_matches_eager_sampling(tiny_bundle, tiny_model_path, tiny_plan_path, tmp_path):
    run_cli(
        "sample",
        "--bundle",
        str(tiny_bundle),
        "--backend",
        "onnxruntime",
        "--per-class",
        "1",
        "--out",
        str(tmp_path / "bundle"),
    )
    run_cli(
        "sample",
        "--model",
        str(tiny_model_path),
        "--plan",
        str(tiny_plan_path),
        "--per-class",
        "1",
        "--out",
        str(tmp_path / "eager"),
    )
    a, b = np.load(tmp_path / "bundle" / "samples.npz"), np.load(tmp_path / "eager" / "samples.npz")
    assert np.array_equal(a["labels"], b["labels"])
    assert np.abs(a["images"].astype(int) - b["images"].astype(int)).max() <= 1


def test_run_loop_hands_backend_outputs_through_unchanged(tiny_bundle):
    backend = create_backend("onnxruntime", Bundle.load(tiny_bundle))
    seen = {}

    class Spy:
        def __init__(self, inner):
            self.inner, self.bundle, self.name = inner, inner.bundle, "spy"

        def run(self, method, inputs):
            outs = self.inner.run(method, inputs)
            seen.setdefault("ids", []).append((method, [id(o) for o in outs], [id(i) for i in inputs]))
            return outs

    run_bundle(Spy(backend), backend.bundle.initial_state())
    produced = {i for _, outs, _ in seen["ids"] for i in outs}
    consumed = {i for _, _, ins in seen["ids"] for i in ins}
    assert produced & consumed  # caches and x travel as the very objects the backend returned


def test_weights_are_stored_once_per_format(tiny_bundle, tiny_model):
    weight_bytes = sum(p.numel() * 4 for p in tiny_model.state_dict().values())
    m = json.loads((tiny_bundle / "manifest.json").read_text())
    methods = len(m["methods"]) - 1
    assert methods >= 4  # duplicated weights would make the files several times the weights
    pte = (tiny_bundle / "model.pte").stat().st_size
    onnx_weights = (tiny_bundle / "onnx" / "weights.bin").stat().st_size
    # per-method graph overhead is large next to this tiny model's weights, so the bound is loose;
    # one copy of the weights per method would be at least 5x
    assert pte < 2.5 * weight_bytes, (pte, weight_bytes)
    assert onnx_weights < 1.3 * weight_bytes, (onnx_weights, weight_bytes)


def test_bench_json_has_the_minibench_fields_and_a_comparison(tiny_bundle, tiny_model_path, tmp_path):
    full = tmp_path / "full"
    run_cli(
        "export",
        "--model",
        str(tiny_model_path),
        "--steps",
        str(len(TINY_PLAN_CELLS)),
        "--formats",
        "onnx",
        "--label",
        "3",
        "--out",
        str(full),
    )
    run_cli(
        "bench",
        "--bundle",
        str(tiny_bundle),
        "--baseline",
        str(full),
        "--backend",
        "onnxruntime",
        "--warmup",
        "1",
        "--runs",
        "3",
        "--json",
        str(tmp_path / "b.json"),
        "--plot",
        str(tmp_path / "b.png"),
    )
    report = json.loads((tmp_path / "b.json").read_text())
    for record in report["benchmarks"]:
        for field in (
            "avg_inference_latency(ms)",
            "trimmean_inference_latency(ms)",
            "model_load_time(ms)",
            "median_latency(ms)",
            "p90_latency(ms)",
            "per_step_latency(ms)",
            "harness_overhead_pct",
        ):
            assert field in record
        assert len(record["per_step_latency(ms)"]) == len(TINY_PLAN_CELLS) and record["runs"] == 3
        memory = record["memory"]  # measured in a child process per bundle
        assert 0 < memory["bundle_rss_mb"] < memory["peak_rss_mb"] and memory["libraries_rss_mb"] > 0
        assert record["weights_cache"] == "on"  # every session reads one copy of the weights
    comp = report["comparison"]
    assert comp["peak_memory_ratio"] == pytest.approx(
        report["benchmarks"][0]["memory"]["bundle_rss_mb"] / report["benchmarks"][1]["memory"]["bundle_rss_mb"]
    )
    assert comp["ideal_speedup_macs"] > 1  # the lazy plan skips work
    assert comp["efficiency"] == pytest.approx(comp["measured_speedup"] / comp["ideal_speedup_macs"])
    lazy, base = (r["loop_latency(ms)"] for r in report["benchmarks"])
    assert lazy < report["benchmarks"][0]["median_latency(ms)"]  # the loop alone: no decode
    assert comp["loop_efficiency"] == pytest.approx(base / lazy / comp["ideal_speedup_macs"])
    assert (tmp_path / "b.png").stat().st_size > 0
    proc = run_cli(
        "bench",
        "--bundle",
        str(tiny_bundle),
        "--baseline",
        str(tiny_bundle),
        "--backend",
        "onnxruntime",
        "--runs",
        "1",
        check=False,
    )
    assert proc.returncode == 2 and "baseline bundle skips modules" in proc.stderr


def test_a_format_the_other_process_cannot_write_fails_the_export_and_leaves_nothing(tiny_model, tmp_path):
    from lazydit.export.bundle import ExportOptions, export_bundle
    from lazydit.export.formats import FORMATS, ExportError
    from lazydit.export.writers import format_groups
    from lazydit.plans import Plan

    # executorch is written here; the other groups go to one spawned process, where this format,
    # registered only in this process, does not exist
    FORMATS.register("unwritable")(lambda job, out: {})
    try:
        assert format_groups(("onnx", "unwritable", "executorch")) == [("executorch",), ("onnx",), ("unwritable",)]
        options = ExportOptions(formats=("onnx", "unwritable"), progress=False)
        with pytest.raises(ExportError, match="writing unwritable failed: ExportError: unknown format 'unwritable'"):
            export_bundle(tiny_model, Plan.full(2, tiny_model.config.depth), tmp_path / "bundle", options)
    finally:
        del FORMATS["unwritable"]
    assert list(tmp_path.iterdir()) == []


def test_a_latent_model_with_learned_sigma_exports_and_replays(tmp_path):
    """Four channels, learned sigma (the noise prediction is half the output) and a forecast:
    the shapes of the DiT-S/B/XL family. Every step piece must lower to XNNPACK whole."""
    from conftest import make_tiny_model

    from lazydit.checkpoints import save_model
    from lazydit.model import DiTConfig
    from lazydit.plans import Plan

    config = DiTConfig(
        input_size=8,
        patch_size=4,
        in_channels=4,
        hidden_size=48,
        depth=2,
        num_heads=3,
        num_classes=5,
        learn_sigma=True,
        name="latent-tiny",
    )
    path = save_model(make_tiny_model(1, config), tmp_path / "latent")
    plan = Plan(4, 2, [["CC", "CC"], ["RC", "CR"], ["CC", "CC"], ["FR", "CF"]], policy="random")
    plan.save(tmp_path / "plan.json")
    out = tmp_path / "bundle"
    run_cli(
        "export",
        "--model",
        str(path),
        "--plan",
        str(tmp_path / "plan.json"),
        "--formats",
        "executorch,onnx",
        "--out",
        str(out),
    )
    bundle = Bundle.load(out)
    assert bundle.manifest["slots"]["image"]["shape"] == [1, 8, 8, 3]
    for backend in ("executorch", "onnxruntime"):
        assert verify(create_backend(backend, bundle))["min_psnr_db"] >= 40


@pytest.mark.slow
def test_default_lazy_pte_stores_weights_and_shared_pieces_once(tmp_path):
    """The default model's 20-step @50% LazyDiT .pte is at most 1.1x the .pte of one full step."""
    plan = tmp_path / "plan.json"
    run_cli("plan", "--policy", "lazydit", "--steps", "20", "--ratio", "0.5", "--out", str(plan))
    run_cli("export", "--plan", str(plan), "--formats", "executorch", "--out", str(tmp_path / "lazy"))
    run_cli("export", "--steps", "20", "--formats", "executorch", "--out", str(tmp_path / "full"))
    full = json.loads((tmp_path / "full" / "manifest.json").read_text())
    assert len(full["methods"]) == 2  # one full step + decode
    lazy = (tmp_path / "lazy" / "model.pte").stat().st_size
    one_step = (tmp_path / "full" / "model.pte").stat().st_size
    assert len(json.loads((tmp_path / "lazy" / "manifest.json").read_text())["methods"]) > 10
    assert lazy <= 1.1 * one_step, (lazy, one_step)


@pytest.fixture(scope="module")
def coreml_bundle(tmp_path_factory, tiny_model_path, tiny_plan_path):
    out = tmp_path_factory.mktemp("coreml") / "bundle"
    proc = run_cli(
        "export",
        "--model",
        str(tiny_model_path),
        "--plan",
        str(tiny_plan_path),
        "--formats",
        "coreml",
        "--label",
        "3",
        "--out",
        str(out),
    )
    assert "coreml: spec checked (6 functions)" in proc.stdout, proc.stdout  # 5 steps + decode
    assert "Running MIL" not in proc.stderr  # the exporter's progress only
    return out


def test_coreml_package_matches_the_manifest_and_is_stamped(coreml_bundle, tiny_model):
    import coremltools as ct

    m = json.loads((coreml_bundle / "manifest.json").read_text())
    spec = ct.utils.load_spec(str(coreml_bundle / "model.mlpackage"))
    functions = {f.name: f for f in spec.description.functions}
    assert set(functions) == set(m["methods"])
    for name, method in m["methods"].items():
        assert [i.name for i in functions[name].input] == [i["name"] for i in method["inputs"]]
        assert [o.name for o in functions[name].output] == [o["name"] for o in method["outputs"]]
    meta = spec.description.metadata
    assert meta.author == "lazydit" and meta.license == "MIT" and meta.versionString
    assert json.loads(meta.userDefined["plan"])["cells"] == m["plan"]["cells"]
    # an fp32 bundle's weights (the default precision), stored once across the functions
    assert m["precision"]["formats"]["coreml"] == "fp32 weights and compute"
    weights = sum(p.stat().st_size for p in (coreml_bundle / "model.mlpackage").rglob("weight.bin"))
    fp32_bytes = sum(p.numel() * 4 for p in tiny_model.state_dict().values())
    assert weights < 1.5 * fp32_bytes + 64 * 256, (weights, fp32_bytes)


@pytest.mark.skipif(__import__("sys").platform != "darwin", reason="Core ML prediction needs macOS")
def test_coreml_replays_the_golden_vectors_on_macos(coreml_bundle):
    assert verify(create_backend("coreml", Bundle.load(coreml_bundle)))["min_psnr_db"] >= 40


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda v: v.astype(np.float64), "is float64"),
        (lambda v: v[..., :1], "holds"),
    ],
)
def test_the_python_loop_refuses_an_output_that_does_not_fit_its_slot(tiny_bundle, corrupt, message):
    """As the Java and Swift loops do: dtype and shape of every output against its slot."""
    backend = create_backend("onnxruntime", Bundle.load(tiny_bundle))
    assert verify(backend)["passed"]  # the honest backend replays
    honest = backend.run

    def bad_run(method, inputs):
        outs = honest(method, inputs)
        return [corrupt(outs[0]), *outs[1:]]

    backend.run = bad_run
    with pytest.raises(BundleError, match=message):
        run_bundle(backend, backend.bundle.initial_state())


def test_the_torch_free_bench_measures_memory_unless_told_not_to(tiny_bundle):
    """The emulated device runs this entry point with --no-memory: a child process cannot be
    started inside the emulated userland, so the peak-memory run must be skippable there."""
    import subprocess

    def bench(*extra: str) -> dict:
        cmd = [sys.executable, "-m", "lazydit.runtime.cli", "bench", "--bundle", str(tiny_bundle)]
        proc = subprocess.run(
            [*cmd, "--warmup", "0", "--runs", "1", *extra], check=False, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads(proc.stdout)["benchmarks"][0]

    assert bench()["memory"]["peak_rss_mb"] > 0
    assert "memory" not in bench("--no-memory")
