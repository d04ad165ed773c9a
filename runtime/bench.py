"""Timing bundles the way phone benchmarks do (ExecuTorch minibench's metric names), and
comparing a lazy bundle with its no-skip baseline in one process, runs interleaved."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .backends import Backend, create_backend
from .bundle import Bundle, BundleError
from .loop import run_bundle
from .memory import peak_memory
from .native_runner import BACKEND as NATIVE
from .native_runner import native_bench


def trimmed_mean(values: list[float]) -> float:
    """minibench's trimmed mean: sort, keep indexes [n/10, 9n/10); the mean if that keeps < 2."""
    s = sorted(values)
    lo, hi = len(s) // 10, len(s) * 9 // 10
    return float(np.mean(s[lo:hi])) if hi - lo >= 2 else float(np.mean(s))


@dataclass
class Timed:
    bundle: Bundle
    backend: Backend
    load_ms: float
    images_ms: list[float] = field(default_factory=list)
    steps_ms: list[list[float]] = field(default_factory=list)
    decode_ms: list[float] = field(default_factory=list)
    overhead_ms: list[float] = field(default_factory=list)  # time outside the backend's run calls

    def once(self, initial: dict) -> None:
        r = run_bundle(self.backend, initial)
        self.images_ms.append(r.total_seconds * 1000)
        self.steps_ms.append([s * 1000 for s in r.step_seconds])
        self.decode_ms.append(r.decode_seconds * 1000)
        self.overhead_ms.append((r.total_seconds - sum(r.step_seconds) - r.decode_seconds) * 1000)

    def record(self, label: str, warmup: int, device: str) -> dict:
        m = self.bundle.manifest
        per_step = np.mean(np.array(self.steps_ms), axis=0)
        return {
            "avg_inference_latency(ms)": float(np.mean(self.images_ms)),
            "trimmean_inference_latency(ms)": trimmed_mean(self.images_ms),
            "model_load_time(ms)": self.load_ms,
            "median_latency(ms)": float(np.median(self.images_ms)),
            "p90_latency(ms)": float(np.percentile(self.images_ms, 90)),
            "per_step_latency(ms)": [float(v) for v in per_step],
            "loop_latency(ms)": float(np.median([sum(steps) for steps in self.steps_ms])),
            "decode_latency(ms)": float(np.mean(self.decode_ms)),
            "inference_latencies(ms)": self.images_ms,
            "harness_overhead(ms)": float(np.mean(self.overhead_ms)),
            "harness_overhead_pct": float(100 * np.mean(self.overhead_ms) / np.mean(self.images_ms)),
            "lazy_steps": self.bundle.lazy_steps,
            "macs_per_image": m["plan"].get("macs_per_image"),
            "lazy_ratio": m["plan"]["lazy_ratio"],
            "methods": len(m["methods"]),
            "warmup": warmup,
            "runs": len(self.images_ms),
            "backend": self.backend.name,
            "bundle": str(self.bundle.root),
            "role": label,
            "device": device,
        }


def device_name() -> str:
    return f"{platform.system()}-{platform.machine()} ({platform.processor() or 'cpu'})"


def _load(root: str, backend: str, threads: int | None) -> Timed:
    bundle = Bundle.load(root)
    t0 = time.perf_counter()
    b = create_backend(backend, bundle, threads)
    return Timed(bundle, b, (time.perf_counter() - t0) * 1000)


@dataclass
class BenchConfig:
    """How a bundle is timed. The fields' help doubles as the command line's (``lazydit bench``)."""

    backend: str = field(
        default="onnxruntime", metadata={"help": "onnxruntime | executorch | executorch-native | torch | coreml"}
    )
    threads: int | None = field(default=None, metadata={"help": "intra-op threads (default: the backend's)"})
    warmup: int = field(default=2, metadata={"help": "untimed runs first"})
    runs: int = field(default=10, metadata={"help": "timed runs (of each bundle)"})
    memory: bool = field(
        default=True, metadata={"help": "measure each bundle's peak resident memory (one more run, in a child process)"}
    )


def bench(
    bundle: str,
    config: BenchConfig | None = None,
    baseline: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Time ``bundle`` (and ``baseline``, interleaved run by run, alternating which goes first)."""
    config = config or BenchConfig()
    threads, warmup, runs = config.threads, config.warmup, config.runs
    if runs < 1 or warmup < 0:
        raise BundleError("--runs must be >= 1 and --warmup >= 0")
    if config.backend == NATIVE:  # the whole loop runs in the native program, which times itself
        return native_bench(bundle, baseline, warmup, runs, threads)
    timed = [_load(bundle, config.backend, threads)]
    if baseline:
        timed.append(_load(baseline, config.backend, threads))
        _check_comparable(timed[0].bundle, timed[1].bundle)
    initial = [t.bundle.initial_state() for t in timed]
    for _ in range(warmup):
        for t, init in zip(timed, initial):
            run_bundle(t.backend, init)
    total = runs * len(timed)
    done = 0
    for r in range(runs):
        order = list(range(len(timed)))
        if r % 2:
            order.reverse()
        for i in order:
            timed[i].once(initial[i])
            done += 1
            if progress:
                progress(done, total)
    device = device_name()
    records = [timed[0].record("lazy" if baseline else "bundle", warmup, device)]
    report: dict = {"threads": threads, "benchmarks": records}
    if baseline:
        records.append(timed[1].record("baseline", warmup, device))
    if config.memory and config.backend != "torch":  # the eager reference is not a runtime
        for record, t in zip(records, timed):
            record["memory"] = peak_memory(str(t.bundle.root), config.backend, threads)
    for record, t in zip(records, timed):
        record["weights_cache"] = getattr(t.backend, "weights_cache", None)
        record["workspace"] = getattr(t.backend, "workspace", None)
    if baseline:
        base = records[1]
        lazy = records[0]
        measured = base["median_latency(ms)"] / lazy["median_latency(ms)"]
        ideal = base["macs_per_image"] / lazy["macs_per_image"]
        report["comparison"] = {
            **(
                {"peak_memory_ratio": lazy["memory"]["bundle_rss_mb"] / base["memory"]["bundle_rss_mb"]}
                if "memory" in lazy
                else {}
            ),
            "measured_speedup": measured,
            "measured_speedup_trimmean": base["trimmean_inference_latency(ms)"]
            / lazy["trimmean_inference_latency(ms)"],
            "ideal_speedup_macs": ideal,
            "efficiency": measured / ideal,
            # the denoising loop alone (the plan's MACs are DiT MACs; decode is never skipped)
            "loop_speedup": base["loop_latency(ms)"] / lazy["loop_latency(ms)"],
            "loop_efficiency": base["loop_latency(ms)"] / lazy["loop_latency(ms)"] / ideal,
        }
    return report


def _check_comparable(lazy: Bundle, base: Bundle) -> None:
    a, b = lazy.manifest, base.manifest
    if a["model"].get("weights_hash") != b["model"].get("weights_hash") or a["model"]["config"] != b["model"]["config"]:
        raise BundleError("the baseline bundle holds another model; export a no-skip bundle of the same model")
    if a["sampler"]["steps"] != b["sampler"]["steps"]:
        raise BundleError(f"the baseline has {b['sampler']['steps']} steps, the bundle {a['sampler']['steps']}")
    if b["plan"]["skipped"]:
        raise BundleError("the baseline bundle skips modules; export it without --plan")


def plot_steps(report: dict, path: str) -> None:
    """Per-step latency of each benchmarked bundle, lazy steps visible as dips."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    for rec in report["benchmarks"]:
        steps = rec["per_step_latency(ms)"]
        ax.plot(range(len(steps)), steps, marker="o", label=f"{rec['role']} ({rec['median_latency(ms)']:.1f} ms/image)")
    ax.set_xlabel("step")
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"per-step latency, {report['benchmarks'][0]['backend']}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
