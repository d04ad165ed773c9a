"""Several processes started by torchrun (gloo on the CPU) give what one process gives."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]


def torchrun(*args: str, processes: int = 2, script: str | None = None, check: bool = True):
    """``torchrun --nproc_per_node N -m lazydit.cli ARGS`` (or a script), one thread per process."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    target = [script] if script else ["-m", "lazydit.cli"]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    proc = subprocess.run(
        [*command, *target, *args], check=False, capture_output=True, text=True, env=env, timeout=1200
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"torchrun {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def _gates(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def _close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-8) for k in a)


@pytest.mark.parametrize(
    "flags",
    [
        ["--steps=3", "--iterations=4", "--batch=4", "--pool=8", "--forecast", "--lr=1e-2"],
        ["--steps=3", "--objective=local", "--iterations=4", "--batch=4", "--lr=1e-2"],
    ],
    ids=["trajectory", "local"],
)
def test_two_processes_train_the_gates_one_process_trains_at_the_same_global_batch(tiny_model_path, tmp_path, flags):
    model = ["--model", str(tiny_model_path), "--seed=3"]
    torchrun("train-gates", *model, *flags, "--out", str(tmp_path / "two.safetensors"))
    run_cli("train-gates", *model, *flags, "--out", str(tmp_path / "one.safetensors"))
    two, one = _gates(tmp_path / "two.safetensors"), _gates(tmp_path / "one.safetensors")
    assert max(float(v.abs().max()) for v in one.values()) > 1e-4  # the gates did move
    assert _close(two, one)
    # negative control: another seed draws other noise and labels, and other gates come out
    run_cli("train-gates", *model[:2], "--seed=4", *flags, "--out", str(tmp_path / "other.safetensors"))
    assert not _close(_gates(tmp_path / "other.safetensors"), one)


def test_a_failure_on_one_rank_ends_the_run_with_its_message_and_writes_no_gates(tiny_model_path, tmp_path):
    script = tmp_path / "failing_rank.py"
    script.write_text(
        textwrap.dedent(
            """
            import os
            import sys

            import lazydit.gates
            from lazydit.cli import main

            trajectory = lazydit.gates.soft_trajectory
            calls = []

            def failing(*args, **kwargs):
                calls.append(1)
                if os.environ["RANK"] == "1" and len(calls) == 2:
                    raise ValueError("the accelerator of this rank ran out of memory")
                return trajectory(*args, **kwargs)

            lazydit.gates.soft_trajectory = failing
            sys.exit(main())
            """
        )
    )
    out = tmp_path / "gates.safetensors"
    flags = ["--steps=3", "--iterations=4", "--batch=4", "--pool=8"]
    proc = torchrun(
        "train-gates", "--model", str(tiny_model_path), *flags, "--out", str(out), script=str(script), check=False
    )
    assert proc.returncode != 0
    assert "rank 1 of 2: the accelerator of this rank ran out of memory" in proc.stderr
    assert not out.exists() and not list(tmp_path.glob(".gates*"))
    # without the failure the same run writes its gates
    torchrun("train-gates", "--model", str(tiny_model_path), *flags, "--out", str(out))
    assert out.is_file()


def test_a_global_batch_that_does_not_split_over_the_processes_is_refused(tiny_model_path, tmp_path):
    out = tmp_path / "gates.safetensors"
    proc = torchrun(
        "train-gates", "--model", str(tiny_model_path), "--steps=3", "--batch=3", "--out", str(out), check=False
    )
    assert proc.returncode != 0
    assert "batch 3 does not split evenly over 2 processes" in proc.stderr
    assert not out.exists()


def test_sharded_sampling_writes_the_samples_one_process_writes(tiny_model_path, tiny_plan_path, tmp_path):
    args = ["--model", str(tiny_model_path), "--plan", str(tiny_plan_path), "--num-samples=11", "--batch-size=3"]
    torchrun("sample", *args, "--out", str(tmp_path / "two"))
    run_cli("sample", *args, "--out", str(tmp_path / "one"))
    run_cli("sample", *args, "--seed=1", "--out", str(tmp_path / "other"))

    def read(folder: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with np.load(tmp_path / folder / "samples.npz") as s, np.load(tmp_path / folder / "samples_11x8x8x3.npz") as a:
            return s["images"], s["labels"], a["arr_0"]

    two, one, other = read("two"), read("one"), read("other")
    for a, b in zip(two, one):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    images, labels, adm = one
    assert adm.shape == (11, 8, 8, 3) and adm.dtype == np.uint8
    assert np.array_equal(adm[..., 1], images) and labels.tolist() == [i % 10 for i in range(11)]
    assert not np.array_equal(other[0], images)  # negative control: other noise, other samples
    assert not (tmp_path / "two" / ".shards").exists()


def test_dry_run_prints_the_memory_of_one_process(tiny_model_path):
    flags = ["train-gates", "--model", str(tiny_model_path), "--steps=20", "--batch=8", "--dry-run"]
    with_checkpoints = json.loads(run_cli(*flags).stdout)
    without = json.loads(run_cli(*flags, "--no-checkpoint").stdout)
    assert with_checkpoints["batch_per_process"] == 8 and with_checkpoints["checkpoint"]
    assert without["activations_mb"] > 3 * with_checkpoints["activations_mb"] > 0
    two = json.loads(torchrun(*flags).stdout)  # one report, from rank 0, for a process's share
    assert (two["processes"], two["batch_per_process"]) == (2, 4)
    assert two["activations_mb"] < with_checkpoints["activations_mb"]


def test_a_device_the_machine_lacks_is_refused(tiny_model_path, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    proc = run_cli(
        "train-gates",
        "--model",
        str(tiny_model_path),
        "--steps=3",
        "--device=cuda",
        "--out",
        str(tmp_path / "g"),
        check=False,
    )
    assert proc.returncode == 2 and "has no CUDA GPU" in proc.stderr


def test_two_processes_train_the_dit_one_process_trains(tmp_path):
    flags = ["--size=DiT-Digits", "--iterations=3", "--batch=8", "--warmup=1", "--lr=1e-3"]
    torchrun("train", *flags, "--seed=2", "--out", str(tmp_path / "two"))
    run_cli("train", *flags, "--seed=2", "--out", str(tmp_path / "one"))
    run_cli("train", *flags, "--seed=5", "--out", str(tmp_path / "other"))
    two, one, other = (load_file(str(tmp_path / d / "model.safetensors")) for d in ("two", "one", "other"))
    assert _close(two, one)
    assert not _close(other, one)  # negative control: another seed, other weights
