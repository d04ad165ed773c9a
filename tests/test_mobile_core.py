"""The Android core's JUnit suite, compiled with plain javac by mobile/android/core/run-tests.sh.

With a `tiny_bundle` fixture in conftest (an exported bundle folder), the suite also replays that
bundle's golden vectors through the Java loop; without one it runs the Java-only tests.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from lazydit.runtime.tensorfile import write_tensors

RUN_TESTS = Path(__file__).resolve().parents[1] / "mobile" / "android" / "core" / "run-tests.sh"


def _why_java_is_unavailable() -> str | None:
    if shutil.which("javac"):
        return None
    if shutil.which("apt-get") and (os.geteuid() == 0 or shutil.which("sudo")):
        return None  # run-tests.sh installs openjdk-17-jdk-headless, junit4, hamcrest and gson
    return "no javac, and no apt-get with root or sudo to install openjdk-17-jdk-headless"


def _run_java_suite(bundle: Path | None) -> subprocess.CompletedProcess:
    reason = _why_java_is_unavailable()
    if reason:
        pytest.skip(reason)
    env = {k: v for k, v in os.environ.items() if k != "LAZYDIT_BUNDLE"}
    if bundle is not None:
        env["LAZYDIT_BUNDLE"] = str(bundle)
    result = subprocess.run(["bash", str(RUN_TESTS)], check=False, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{RUN_TESTS} failed:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture
def exported_bundle(request) -> Path | None:
    """The `tiny_bundle` folder when conftest defines that fixture, else None."""
    try:
        bundle = request.getfixturevalue("tiny_bundle")
    except pytest.FixtureLookupError:
        return None
    return Path(os.fspath(bundle))


def test_java_core_suite_passes(exported_bundle):
    result = _run_java_suite(exported_bundle)
    assert "OK (" in result.stdout
    if exported_bundle is not None:
        assert f"replaying bundle {exported_bundle}" in result.stdout


def test_java_core_replays_a_bundle_whose_golden_vectors_python_wrote(tmp_path):
    bundle = _write_python_bundle(tmp_path / "py-toy")
    result = _run_java_suite(bundle)
    assert f"replaying bundle {bundle}" in result.stdout


def _write_python_bundle(folder: Path) -> Path:
    """A two-step bundle: step 0 writes cache:0.mlp, step 1 skips the MLP and reads it back."""
    f32 = np.float32
    x0 = np.array([[0.5, -0.25, 1.0]], dtype=f32)
    y = np.array([7], dtype=np.int64)
    cfg = np.array([2.0], dtype=f32)
    t = [np.array([800.0], dtype=f32), np.array([300.0], dtype=f32)]
    mlp = (x0 * f32(0.5)).astype(f32)
    x1 = (x0 + mlp * cfg).astype(f32)
    x2 = (x1 - mlp + t[1] * f32(1e-3)).astype(f32)
    image = np.clip(np.rint((x2 + 1) * 127.5), 0, 255).astype(np.uint8).reshape(1, 3, 1)
    folder.mkdir(parents=True)
    write_tensors(
        folder / "golden.lzt",
        {
            "init/x": x0,
            "init/y": y,
            "init/cfg_scale": cfg,
            "step/0/in/x": x0,
            "step/0/in/y": y,
            "step/0/in/cfg_scale": cfg,
            "step/0/in/t": t[0],
            "step/0/out/x_out": x1,
            "step/0/out/mlp_0": mlp,
            "step/1/in/x": x1,
            "step/1/in/t": t[1],
            "step/1/in/mlp_cache": mlp,
            "step/1/out/x_out": x2,
            "decode/out/image": image,
        },
    )
    manifest = {
        "format": "lazydit-bundle",
        "version": 1,
        "model": {"name": "py-toy", "image": {"height": 1, "width": 3, "channels": 1}, "num_classes": 10},
        "slots": {
            "x": {"shape": [1, 3], "dtype": "float32"},
            "y": {"shape": [1], "dtype": "int64"},
            "cfg_scale": {"shape": [1], "dtype": "float32"},
            "cache:0.mlp": {"shape": [1, 3], "dtype": "float32"},
            "image": {"shape": [1, 3, 1], "dtype": "uint8"},
        },
        "methods": {
            "full": {
                "inputs": [
                    {"name": "x", "source": "x"},
                    {"name": "y", "source": "y"},
                    {"name": "cfg_scale", "source": "cfg_scale"},
                    {"name": "t", "source": "t"},
                ],
                "outputs": [{"name": "x_out", "target": "x"}, {"name": "mlp_0", "target": "cache:0.mlp"}],
            },
            "lazy": {
                "inputs": [
                    {"name": "x", "source": "x"},
                    {"name": "t", "source": "t"},
                    {"name": "mlp_cache", "source": "cache:0.mlp"},
                ],
                "outputs": [{"name": "x_out", "target": "x"}],
            },
            "decode": {"inputs": [{"name": "x", "source": "x"}], "outputs": [{"name": "image", "target": "image"}]},
        },
        "steps": [
            {
                "index": i,
                "method": m,
                "scalars": {"t": float(t[i][0]), "alpha": 0.5, "alpha_prev": 0.75},
                "computed": ["0.attn", "0.mlp"] if i == 0 else ["0.attn"],
                "skipped": [] if i == 0 else ["0.mlp"],
            }
            for i, m in enumerate(["full", "lazy"])
        ],
        "decode": "decode",
        "artifacts": {},
        "golden": {
            "path": "golden.lzt",
            "sha256": _sha256(folder / "golden.lzt"),
            "label": 7,
            "cfg_scale": 2.0,
            "seed": 0,
        },
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return folder


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
