"""Reduced-precision bundles (fp16, int8) and separate weight files, through the real CLI: each
precision passes its own golden gate against eager fp32 (and is really reduced: it does not
replay at fp32's parity), the manifest and the artifacts say how it was made, and a weights data
file that is missing, truncated or swapped is refused by hash before anything runs."""

import json
import shutil

import numpy as np
import pytest
from conftest import run_cli

from lazydit.runtime.backends import create_backend
from lazydit.runtime.bundle import Bundle, BundleError
from lazydit.runtime.loop import PARITY_DB, run_bundle, verify


def _export(model_path, plan_path, out, *extra):
    run_cli("export", "--model", str(model_path), "--plan", str(plan_path), "--label", "3", "--out", str(out), *extra)
    return out


@pytest.fixture(scope="module", params=["fp16", "int8"])
def reduced_bundle(request, tmp_path_factory, tiny_model_path, tiny_plan_path):
    out = tmp_path_factory.mktemp(request.param) / "bundle"
    _export(tiny_model_path, tiny_plan_path, out, "--formats", "onnx,executorch", "--precision", request.param)
    return request.param, out


def test_each_precision_passes_its_gate_and_is_really_reduced(reduced_bundle, tiny_bundle):
    name, root = reduced_bundle
    bundle = Bundle.load(root)
    m = bundle.manifest
    assert m["precision"]["name"] == name and m["golden"]["floor_db"] == m["precision"]["floor_db"] < PARITY_DB
    assert set(m["precision"]["formats"]) == {"onnx", "executorch"}
    caches = [s for k, s in m["slots"].items() if k.startswith("cache:")]
    assert caches and {s["dtype"] for s in caches} == {"float16" if name == "fp16" else "float32"}
    assert m["slots"]["x"]["dtype"] == "float32"  # the sample stays fp32
    for backend in ("onnxruntime", "executorch"):
        result = verify(create_backend(backend, bundle))
        assert result["passed"] and result["floor_db"] == m["golden"]["floor_db"]
        # negative control: the fp32 bundle of the same model replays far closer to the same
        # golden run, so the reduced bundle really computes with reduced weights
        fp32 = verify(create_backend(backend, Bundle.load(tiny_bundle)))
        assert result["min_psnr_db"] < fp32["min_psnr_db"] - 10, (backend, result["min_psnr_db"], fp32["min_psnr_db"])


def test_executorch_loads_methods_on_demand_when_they_cannot_share_packed_weights(reduced_bundle):
    """fp16 programs run with XNNPACK's weights cache off, so each loaded method holds its own
    packed weights; held one at a time, the methods replay exactly what all of them loaded do."""
    from lazydit.runtime.backends import ExecuTorchBackend, resident_methods

    _, root = reduced_bundle
    bundle = Bundle.load(root)
    everything = create_backend("executorch", bundle)
    assert everything.resident == len(bundle.methods) == len(everything._loaded)  # the tiny bundle fits
    one = ExecuTorchBackend(bundle, resident=1)
    assert len(one._loaded) == 0  # nothing loaded before it runs
    seen = []
    image = run_bundle(one, bundle.initial_state(), on_step=lambda *_: seen.append(len(one._loaded))).image
    assert set(seen) == {1} and len(one._loaded) == 1
    assert np.array_equal(image, run_bundle(everything, bundle.initial_state()).image)
    # the rule: all methods with the cache on; without it all when their copies fit in a third of
    # the memory available, else one at a time
    assert resident_methods(21, 1, cache_on=True) == 21
    assert resident_methods(21, 1, cache_on=False) == 21
    assert resident_methods(21, 2**50, cache_on=False) == 1
    assert resident_methods(21, 10, cache_on=False, asked=4) == 4
    with pytest.raises(BundleError, match="1 or more"):
        ExecuTorchBackend(bundle, resident=0)


def test_reduced_weights_are_smaller_and_stamped(reduced_bundle, tiny_bundle):
    import onnx

    name, root = reduced_bundle
    size = {p: (root / p).stat().st_size for p in ("onnx/weights.bin", "model.pte")}
    fp32 = {p: (tiny_bundle / p).stat().st_size for p in size}
    assert size["onnx/weights.bin"] < 0.6 * fp32["onnx/weights.bin"], (size, fp32)
    assert size["model.pte"] < 0.8 * fp32["model.pte"], (size, fp32)
    meta = {p.key: p.value for p in onnx.load(str(root / "onnx" / "decode.onnx")).metadata_props}
    assert meta["precision"] == name


def test_the_gate_refuses_a_reduced_bundle_held_to_the_fp32_floor(reduced_bundle, tmp_path):
    _, root = reduced_bundle
    b = tmp_path / "b"
    shutil.copytree(root, b)
    m = json.loads((b / "manifest.json").read_text())
    m["golden"]["floor_db"] = 200.0
    (b / "manifest.json").write_text(json.dumps(m))
    result = verify(create_backend("onnxruntime", Bundle.load(b)))
    assert not result["passed"]


def test_unknown_precision_is_refused(tiny_model_path, tiny_plan_path, tmp_path):
    proc = run_cli(
        "export", "--model", str(tiny_model_path), "--plan", str(tiny_plan_path), "--precision", "int4",
        "--out", str(tmp_path / "b"), check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "int4" in proc.stderr and not (tmp_path / "b").exists()


@pytest.fixture(scope="module")
def data_file_bundles(tmp_path_factory, tiny_model_path, tiny_plan_path):
    """The tiny lazy bundle again, its ExecuTorch weights in model.ptd beside the program."""
    out = tmp_path_factory.mktemp("ptd") / "bundle"
    return _export(tiny_model_path, tiny_plan_path, out, "--formats", "executorch", "--weights-file", "always")


def test_separate_weights_file_replays_and_is_listed(data_file_bundles, tiny_bundle):
    root = data_file_bundles
    art = Bundle.load(root).artifact("executorch")
    paths = [f["path"] for f in art["files"]]
    assert paths == ["model.pte", "model.ptd"]
    assert (root / "model.pte").stat().st_size < 0.25 * (tiny_bundle / "model.pte").stat().st_size
    backend = create_backend("executorch", Bundle.load(root))
    inline = create_backend("executorch", Bundle.load(tiny_bundle))
    assert verify(backend)["per_step_psnr_db"] == verify(inline)["per_step_psnr_db"]  # the same program
    image = run_bundle(backend, Bundle.load(root).initial_state()).image
    assert np.array_equal(
        image,
        run_bundle(
            create_backend("executorch", Bundle.load(tiny_bundle)), Bundle.load(tiny_bundle).initial_state()
        ).image,
    )


@pytest.mark.parametrize("damage", ["missing", "truncated", "swapped"])
def test_a_damaged_weights_file_is_refused_before_anything_runs(data_file_bundles, tiny_model_path, tmp_path, damage):
    b = tmp_path / "b"
    shutil.copytree(data_file_bundles, b)
    ptd = b / "model.ptd"
    if damage == "missing":
        ptd.unlink()
    elif damage == "truncated":
        ptd.write_bytes(ptd.read_bytes()[: ptd.stat().st_size // 2])
    else:  # another model's weights, same layout
        from conftest import make_tiny_model

        from lazydit.checkpoints import save_model

        other = save_model(make_tiny_model(seed=1), tmp_path / "other")
        plan = json.loads((b / "manifest.json").read_text())["plan"]
        plan["model"] = {k: v for k, v in plan.get("model", {}).items() if k != "weights_hash"}
        (tmp_path / "plan.json").write_text(json.dumps(plan))
        o = _export(
            other,
            tmp_path / "plan.json",
            tmp_path / "o",
            "--formats",
            "executorch",
            "--weights-file",
            "always",
            "--no-check",
        )
        shutil.copy(o / "model.ptd", ptd)
    with pytest.raises(BundleError, match="model.ptd"):
        Bundle.load(b)
    proc = run_cli("verify", "--bundle", str(b), "--backend", "executorch", check=False)
    assert proc.returncode == 2 and "model.ptd" in proc.stderr


def test_fp16_onnx_sessions_share_one_copy_of_the_weights(tmp_path):
    """The default model (9.8 MB of fp32 weights), a random plan whose methods each compute about half the model:
    folded at load or widened into per-session arenas, every computing session would hold its
    own fp32 copy; shared, the fp16 bundle needs no more memory than the fp32 one."""
    from lazydit.runtime.memory import peak_memory

    plan = tmp_path / "plan.json"
    run_cli("plan", "--policy", "random", "--steps", "6", "--ratio", "0.5", "--out", str(plan))
    used = {}
    for name in ("fp32", "fp16"):
        out = tmp_path / name
        run_cli(
            "export", "--plan", str(plan), "--formats", "onnx", "--precision", name, "--no-check", "--out", str(out)
        )
        assert len(Bundle.load(out).manifest["methods"]) >= 4  # several sessions, each computing
        used[name] = peak_memory(str(out), "onnxruntime", 2)["bundle_rss_mb"]
    assert used["fp16"] < used["fp32"] + 3, used  # one private fp32 copy per session would add about 20 MB
