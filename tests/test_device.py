"""The emulated ARM64 device: fast checks of errors and profiles, and a slow end-to-end run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from lazydit import device
from lazydit.device import DeviceError, apt, count, userland, wheels


def test_unsupported_arch_is_refused(tmp_path):
    with pytest.raises(DeviceError, match="only arm64"):
        device.prepare(arch="riscv64", cache_dir=tmp_path, progress=False)
    assert not any(tmp_path.iterdir())


def test_missing_qemu_names_the_fix(tmp_path):
    with pytest.raises(DeviceError, match="apt-get install qemu-user-static"):
        device.prepare(cache_dir=tmp_path, progress=False, qemu=tmp_path / "no-such-qemu")
    with pytest.raises(DeviceError, match="apt-get install qemu-user-static"):
        device.find_qemu(tmp_path / "no-such-qemu")


def test_missing_qemu_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("LAZYDIT_QEMU", str(tmp_path / "absent"))
    with pytest.raises(DeviceError, match="not found"):
        device.find_qemu()


@pytest.mark.skipif(
    not shutil.which("apt-get") or not apt.Apt.KEYRING.is_file(), reason="needs apt-get and Debian's keyring"
)
def test_failed_download_says_what_and_how_to_retry(tmp_path, monkeypatch):
    # An archive on a closed loopback port: apt fails at once, nothing leaves the machine.
    monkeypatch.setenv("LAZYDIT_DEBIAN_MIRROR", "http://127.0.0.1:9/debian")
    monkeypatch.setenv("LAZYDIT_DEBIAN_SECURITY_MIRROR", "http://127.0.0.1:9/debian-security")
    monkeypatch.setattr(apt.Apt, "EXTRA_OPTIONS", ("-oAcquire::Retries=0",))
    with pytest.raises(DeviceError, match=r"(?s)package lists failed.*run prepare again"):
        device.prepare(cache_dir=tmp_path, progress=False, qemu=shutil.which("true"))
    assert not device.is_prepared(tmp_path / "root")


def test_run_needs_a_prepared_root(tmp_path):
    with pytest.raises(DeviceError, match="device prepare"):
        device.run_python(tmp_path, ["-c", "pass"])


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert device.default_cache_dir() == tmp_path / "lazydit" / "device" / "arm64"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert device.default_cache_dir().parts[-4:] == (".cache", "lazydit", "device", "arm64")


def test_shim_links_the_runtime_package(tmp_path):
    from lazydit.runtime import backends

    shim = device.guest.refresh_shim(tmp_path)
    assert str((shim / "lazydit" / "runtime" / "backends.py").resolve()) == os.path.realpath(backends.__file__)
    assert "import" not in (shim / "lazydit" / "__init__.py").read_text()
    device.guest.refresh_shim(tmp_path)  # idempotent


def test_runtime_imports_no_device_code():
    # The guest has the runtime only: a runtime import of lazydit.device would fail there.
    code = (
        "import sys, lazydit.runtime.backends, lazydit.runtime.cli; "
        "print([m for m in sys.modules if m.startswith('lazydit.device')])"
    )
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert done.stdout.strip() == "[]"


def test_counting_plugin_source_ships():
    assert "qemu_plugin_install" in count.PLUGIN_SOURCE.read_text()


def test_cpu_files_look_like_arm(tmp_path):
    userland._write_cpu_files(tmp_path, 3)
    info = (tmp_path / "proc/cpuinfo").read_text()
    assert info.count("processor\t:") == 3 and "CPU implementer\t: 0x41" in info
    assert (tmp_path / "sys/devices/system/cpu/possible").read_text() == "0-2\n"
    userland._write_cpu_files(tmp_path, 1)
    assert (tmp_path / "sys/devices/system/cpu/present").read_text() == "0\n"


def test_wheel_pins_follow_the_host():
    reqs = wheels.wheel_requirements(with_executorch=True)
    import onnxruntime

    assert f"onnxruntime=={onnxruntime.__version__}" in reqs
    assert f"torch=={device.TORCH_AARCH64}" in reqs
    assert f"executorch=={device.EXECUTORCH_AARCH64}" in reqs
    assert not any(r.startswith("torch") for r in wheels.wheel_requirements(with_executorch=False))
    assert wheels.wanted_wheel("onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_aarch64.whl", ["onnxruntime==1.31.1"])
    assert not wheels.wanted_wheel("onnxruntime-1.30.0-cp311-cp311-manylinux_2_28_aarch64.whl", ["onnxruntime==1.31.1"])
    assert wheels.wanted_wheel("typing_extensions-4.15.0-py3-none-any.whl", ["typing_extensions"])
    assert wheels.wanted_wheel("ruamel_yaml-0.19.1-py3-none-any.whl", ["ruamel.yaml"])
    assert wheels.wanted_wheel("PyYAML-6.0.3-cp311-cp311-manylinux_2_28_aarch64.whl", ["pyyaml"])
    reqs = wheels.wheel_requirements(with_executorch=False, extra=("tabulate", "numpy"))
    assert reqs[-1] == "tabulate" and sum(r.startswith("numpy") for r in reqs) == 1


def test_profile_registry():
    assert {"flagship-2024", "midrange", "budget"} <= set(device.PROFILES)
    assert device.PROFILES["flagship-2024"].threads == 4
    assert device.PROFILES["midrange"].threads == 2
    assert device.PROFILES["budget"].threads == 1
    with pytest.raises(DeviceError, match="unknown device profile 'pixel-99'.*flagship-2024"):
        device.apply_profile("pixel-99")


def test_apply_profile_pins_and_restores():
    before = os.sched_getaffinity(0)
    with device.profile("budget") as threads:
        assert threads == 1
        assert len(os.sched_getaffinity(0)) == 1
    assert os.sched_getaffinity(0) == before
    with device.profile("flagship-2024") as threads:
        if len(before) >= 4:
            assert threads == 4 and len(os.sched_getaffinity(0)) == 4
        else:  # too few host CPUs: affinity untouched, threads capped
            assert threads == len(before) and os.sched_getaffinity(0) == before
    assert os.sched_getaffinity(0) == before


def test_instruction_counting_status_reports_cleanly(tmp_path):
    ok, why = device.instruction_counting_status(tmp_path / "absent-qemu")
    assert not ok and "qemu-user" in why
    with pytest.raises(DeviceError):
        device.count_instructions(tmp_path, ["-c", "pass"])


# --------------------------------------------------------------------------- slow: the real userland


def _tiny_onnx(path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal((4,)).astype(np.float32), "b")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["h"]),
            helper.make_node("Add", ["h", "b"], ["z"]),
            helper.make_node("Tanh", ["z"], ["t"]),
            helper.make_node("Softmax", ["t"], ["y"], axis=-1),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
        initializer=[w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


GUEST_ORT = """
import sys, time, json
t0 = time.time()
import numpy as np
t1 = time.time()
import onnxruntime as ort
t2 = time.time()
from lazydit.runtime import tensorfile
x = tensorfile.read_tensors(sys.argv[2])["x"]
opts = ort.SessionOptions(); opts.intra_op_num_threads = 1
sess = ort.InferenceSession(sys.argv[1], opts, providers=["CPUExecutionProvider"])
t3 = time.time()
y = sess.run(None, {"x": x})[0]
t4 = time.time()
tensorfile.write_tensors(sys.argv[3], {"y": y})
print(json.dumps({"numpy_import": t1 - t0, "ort_import": t2 - t1, "session": t3 - t2, "run": t4 - t3}))
"""

GUEST_ET = """
import sys, time, json
t0 = time.time()
import numpy as np
import torch
t1 = time.time()
from lazydit.runtime.backends import executorch_bindings
et = executorch_bindings()
t2 = time.time()
from lazydit.runtime import tensorfile
x = torch.from_numpy(tensorfile.read_tensors(sys.argv[2])["x"].copy())
module = et._load_for_executorch(sys.argv[1])
t3 = time.time()
y = module.forward([x])[0]
t4 = time.time()
tensorfile.write_tensors(sys.argv[3], {"y": y.numpy()})
print(json.dumps({"torch_import": t1 - t0, "executorch_import": t2 - t1, "load": t3 - t2, "run": t4 - t3,
                  "backends": et._get_registered_backend_names()}))
"""


def _export_pte(path):
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = torch.nn.Linear(8, 16)
            self.fc2 = torch.nn.Linear(16, 4)

        def forward(self, x):
            return torch.softmax(self.fc2(torch.nn.functional.gelu(self.fc1(x))), dim=-1)

    torch.manual_seed(0)
    model = Tiny().eval()
    example = (torch.randn(2, 8),)
    exported = torch.export.export(model, example)
    program = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()]).to_executorch()
    path.write_bytes(program.buffer)
    return model


@pytest.mark.slow
def test_emulated_device_matches_host(tmp_path):
    from lazydit.runtime import tensorfile

    timings = {}
    t = time.monotonic()
    root = device.prepare(progress=True)
    timings["prepare_s"] = round(time.monotonic() - t, 1)
    info = device.userland_info(root)
    timings["download_mb"] = round(info["download_bytes"] / 1e6, 1)
    timings["root_mb"] = round(info["root_bytes"] / 1e6, 1)

    t = time.monotonic()
    done = device.run_python(root, ["-c", "import platform; print(platform.machine())"], timeout=120)
    timings["python_start_s"] = round(time.monotonic() - t, 2)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "aarch64"

    # ONNX Runtime: the same graph on the host and under emulation.
    import onnxruntime as ort

    model = tmp_path / "tiny.onnx"
    _tiny_onnx(model)
    x = np.random.default_rng(1).standard_normal((2, 8)).astype(np.float32)
    tensorfile.write_tensors(tmp_path / "x.lzt", {"x": x})
    (tmp_path / "ort_guest.py").write_text(GUEST_ORT)
    t = time.monotonic()
    done = device.run_python(
        root, [tmp_path / "ort_guest.py", model, tmp_path / "x.lzt", tmp_path / "y_ort.lzt"], timeout=600
    )
    timings["ort_total_s"] = round(time.monotonic() - t, 2)
    assert done.returncode == 0, done.stderr
    timings["ort_guest"] = {k: round(v, 2) for k, v in json.loads(done.stdout.strip().splitlines()[-1]).items()}
    host = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    guest = tensorfile.read_tensors(tmp_path / "y_ort.lzt")["y"]
    np.testing.assert_allclose(guest, host, rtol=1e-5, atol=1e-6)

    # ExecuTorch + XNNPACK: a .pte exported on the host, run by the aarch64 runtime.
    if info["recipe"]["executorch"]:
        import torch

        pte = tmp_path / "tiny.pte"
        eager = _export_pte(pte)
        (tmp_path / "et_guest.py").write_text(GUEST_ET)
        t = time.monotonic()
        done = device.run_python(
            root, [tmp_path / "et_guest.py", pte, tmp_path / "x.lzt", tmp_path / "y_et.lzt"], timeout=900
        )
        timings["et_total_s"] = round(time.monotonic() - t, 2)
        assert done.returncode == 0, done.stderr
        et = json.loads(done.stdout.strip().splitlines()[-1])
        assert "XnnpackBackend" in et.pop("backends")
        timings["et_guest"] = {k: round(v, 2) for k, v in et.items()}
        guest = tensorfile.read_tensors(tmp_path / "y_et.lzt")["y"]
        from lazydit.runtime.backends import executorch_bindings

        host = executorch_bindings()._load_for_executorch(str(pte)).forward([torch.from_numpy(x)])[0].numpy()
        np.testing.assert_allclose(guest, host, rtol=1e-4, atol=1e-5)
        with torch.no_grad():
            np.testing.assert_allclose(guest, eager(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-5)

    print("device timings:", json.dumps(timings))


@pytest.mark.slow
def test_instruction_counts_under_emulation():
    ok, why = device.instruction_counting_status()
    if not ok:
        pytest.skip(why)
    root = device.prepare(progress=False)
    idle = device.count_instructions(root, ["-c", "pass"], timeout=300)
    assert idle.process.returncode == 0, idle.process.stderr
    work = device.count_instructions(
        root, ["-c", "import numpy as np; a = np.ones((64, 64), np.float32); print((a @ a).sum())"], timeout=300
    )
    assert work.process.returncode == 0, work.process.stderr
    assert float(work.process.stdout) == 64.0**3
    assert 1e6 < idle.instructions < work.instructions
    print("instructions:", idle.instructions, work.instructions)


@pytest.mark.slow
def test_tiny_bundle_runs_under_emulation_with_parity(tiny_bundle, tmp_path):
    """`lazydit device run` on the exported tiny bundle: golden parity on both aarch64 backends."""
    from conftest import run_cli

    for backend in ("onnxruntime", "executorch"):
        out = tmp_path / f"{backend}.json"
        run_cli("device", "run", "--bundle", str(tiny_bundle), "--backend", backend, "--runs", "1", "--json", str(out))
        report = json.loads(out.read_text())
        assert report["parity"]["passed"] and report["parity"]["min_psnr_db"] >= 40, report["parity"]
        assert report["bench"]["benchmarks"][0]["avg_inference_latency(ms)"] > 0
