"""DiT-XL/2 at 256x256, 20 DDIM steps, end to end: lazy (a random 50% plan) and no-skip bundles
in each precision and format, their export time and peak memory, sizes, golden replay, and
lazy vs no-skip benches on ExecuTorch and onnxruntime (2 threads).

Random weights at the real shapes (``--timing-size DiT-XL/2``, with the sd-vae-ft-ema decoder
configuration as the decode method), so the figures are latency and memory, not quality.

Every export runs as its own ``lazydit export`` process under ``/usr/bin/time -v`` (its peak
resident set is its own); every bench is ``lazydit bench``. Each finished item leaves its bundle,
log or JSON in ``--work``, and a rerun skips it, so the sweep can be resumed; the results JSON and
its Markdown table are rewritten after every item, keeping the records of items ``--work`` does
not hold.

    python benchmarks/dit_xl2.py --json results/dit-xl2.json                  # everything
    python benchmarks/dit_xl2.py --only lazy-et-fp32,full-et-fp32,bench-et-fp32
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from lazydit.files import atomic_write, write_json

SIZE = "DiT-XL/2"
LAZY = ["--timing-size", SIZE, "--policy", "random", "--ratio", "0.5", "--steps", "20"]
FULL = ["--timing-size", SIZE, "--steps", "20", "--no-check"]  # the lazy export's gate covers the pipeline
FORMATS = {"et": "executorch", "onnx": "onnx", "coreml": "coreml"}
PRECISIONS = ("fp32", "int8", "fp16")
# Core ML has no fp32 bundle here: at this size the package is meant to be fp16 or 8-bit
EXPORTS = {
    f"{plan}-{fmt}-{p}": [*(LAZY if plan == "lazy" else FULL), "--formats", FORMATS[fmt], "--precision", p]
    for p in PRECISIONS
    for fmt in FORMATS
    if not (fmt == "coreml" and p == "fp32")
    for plan in ("lazy", "full")
}
BACKENDS = {"et": "executorch", "onnx": "onnxruntime"}
BENCHES = {
    **{
        f"bench-{fmt}-{p}": (f"lazy-{fmt}-{p}", f"full-{fmt}-{p}", backend, True)
        for p in ("fp32", "int8")
        for fmt, backend in BACKENDS.items()
    },
    # the compound speedup: the lazy int8 bundle against the no-skip fp32 one
    **{f"bench-{fmt}-int8-vs-fp32": (f"lazy-{fmt}-int8", f"full-{fmt}-fp32", b, False) for fmt, b in BACKENDS.items()},
}
ORDER = [
    *(f"{plan}-{fmt}-fp32" for fmt in BACKENDS for plan in ("lazy", "full")),
    "bench-et-fp32",
    "bench-onnx-fp32",
    *(f"{plan}-{fmt}-int8" for fmt in BACKENDS for plan in ("lazy", "full")),
    "bench-et-int8",
    "bench-onnx-int8",
    "bench-et-int8-vs-fp32",
    "bench-onnx-int8-vs-fp32",
    *(f"{plan}-{fmt}-fp16" for fmt in FORMATS for plan in ("lazy", "full")),
    *(f"{plan}-coreml-int8" for plan in ("lazy", "full")),
]


def lazydit() -> str:
    exe = Path(sys.executable).with_name("lazydit")
    return str(exe) if exe.exists() else "lazydit"


def run_export(name: str, work: Path) -> None:
    out, log = work / name, work / "logs" / f"{name}.log"
    if out.is_dir() and log.is_file():
        return
    shutil.rmtree(out, ignore_errors=True)
    cmd = ["/usr/bin/time", "-v", lazydit(), "export", *EXPORTS[name], "--out", str(out)]
    print(f"[{time.strftime('%H:%M:%S')}] {' '.join(cmd[2:])}", flush=True)
    tmp = log.with_suffix(".log.tmp")
    with open(tmp, "w") as f:
        done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{name}: lazydit export failed (exit {done.returncode}); see {tmp}")
    tmp.replace(log)


def run_bench(name: str, work: Path) -> None:
    lazy, base, backend, memory = BENCHES[name]
    path = work / f"{name}.json"
    if path.is_file():
        return
    for bundle in (lazy, base):
        if not (work / bundle).is_dir():
            raise SystemExit(f"{name} needs the bundle {bundle}: run it first (--only {bundle})")
    cmd = [lazydit(), "bench", "--bundle", str(work / lazy), "--baseline", str(work / base), "--backend", backend]
    cmd += ["--threads", "2", "--warmup", "1", "--runs", "3", *([] if memory else ["--no-memory"])]
    print(f"[{time.strftime('%H:%M:%S')}] {' '.join(cmd[1:])}", flush=True)
    tmp = path.with_suffix(".json.tmp")
    done = subprocess.run([*cmd, "--json", str(tmp)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{name}: lazydit bench failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    tmp.replace(path)


def export_record(name: str, work: Path) -> dict | None:
    log = work / "logs" / f"{name}.log"
    if not log.is_file():
        return None
    text = log.read_text()
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text)
    stages = re.search(r"wrote \S+ in ([\d.]+) s: (.*)", text)
    record = {
        "command": f"lazydit export {' '.join(EXPORTS[name])} --out {name}",
        "max_rss_gb": int(rss.group(1)) * 1024 / 1e9 if rss else None,  # decimal GB
        "wall_s": _seconds(wall.group(1)) if wall else None,
        "export_s": float(stages.group(1)) if stages else None,
        "stages_s": {k: float(v) for k, v in re.findall(r"(\w+_s) ([\d.]+) s", stages.group(2))} if stages else {},
        "golden_replay_min_psnr_db": {
            k: float(v) for k, v in re.findall(r"(\w+): golden replay min PSNR ([\d.]+)", text)
        },
    }
    manifest = work / name / "manifest.json"
    if manifest.is_file():
        m = json.loads(manifest.read_text())
        files = [f for art in m["artifacts"].values() for f in art["files"]]
        record["artifact_bytes"] = sum(f["bytes"] for f in files)
        record["files"] = {f["path"]: f["bytes"] for f in files if f["bytes"] > 1 << 20}
        record["methods"] = len(m["methods"])
        record["lazy_ratio"] = m["plan"]["lazy_ratio"]
    return record


def _seconds(clock: str) -> float:
    parts = [float(p) for p in clock.split(":")]
    return sum(p * 60**i for i, p in enumerate(reversed(parts)))


def bench_record(name: str, work: Path) -> dict | None:
    path = work / f"{name}.json"
    if not path.is_file():
        return None
    report = json.loads(path.read_text())
    lazy, base = report["benchmarks"]
    keep = ("median_latency(ms)", "p90_latency(ms)", "loop_latency(ms)", "decode_latency(ms)", "model_load_time(ms)")
    return {
        "command": f"lazydit bench --bundle {BENCHES[name][0]} --baseline {BENCHES[name][1]} "
        f"--backend {BENCHES[name][2]} --threads 2 --warmup 1 --runs 3" + ("" if BENCHES[name][3] else " --no-memory"),
        "lazy": {k: lazy.get(k) for k in keep} | {"memory": lazy.get("memory")},
        "no_skip": {k: base.get(k) for k in keep} | {"memory": base.get("memory")},
        "comparison": report["comparison"],
    }


def collect(work: Path, previous: dict | None = None) -> dict:
    """The results of every item ``work`` holds; items it does not hold keep their record in
    ``previous`` (the results file as it was), so a sweep resumed on another machine or in a new
    work folder adds to the results instead of dropping them."""
    previous = previous or {}
    found = {n: r for n in EXPORTS if (r := export_record(n, work))}
    exports = {n: r for n in EXPORTS if (r := found.get(n) or previous.get("exports", {}).get(n))}
    for name, record in exports.items():
        other = exports.get(name.replace("lazy-", "full-", 1)) if name.startswith("lazy-") else None
        if other and record.get("artifact_bytes") and other.get("artifact_bytes"):
            record["bytes_over_no_skip"] = record["artifact_bytes"] / other["artifact_bytes"]
    return {
        "what": f"{SIZE} timing bundles (random weights, sd-vae-ft-ema decoder configuration), 256x256, "
        "20 DDIM steps, a random 50% plan vs no-skip; 2 threads",
        "command": "python benchmarks/dit_xl2.py --json results/dit-xl2.json",
        "machine": "2 cores, 24 GB",
        "exports": exports,
        "benches": {n: r for n in BENCHES if (r := bench_record(n, work) or previous.get("benches", {}).get(n))},
    }


def markdown(results: dict) -> str:
    lines = [
        f"# {SIZE}, 256x256, 20 steps: lazy (random 50%) vs no-skip",
        "",
        f"`{results['command']}`",
        "",
        "| bundle | export (s) | wall, with start-up (min) | peak RSS (GB) | artifacts (GB) "
        + "| lazy / no-skip bytes | golden replay (dB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results["exports"].items():
        replay = ", ".join(f"{k} {v:.1f}" for k, v in r["golden_replay_min_psnr_db"].items()) or (
            "spec checked (Core ML predicts on macOS only)" if "-coreml-" in name and name.startswith("lazy-") else "-"
        )
        ratio = f"{r['bytes_over_no_skip']:.3f}" if "bytes_over_no_skip" in r else "-"
        size = r.get("artifact_bytes", 0) / 1e9
        lines.append(
            f"| {name} | {r['export_s'] or 0:.0f} | {(r['wall_s'] or 0) / 60:.1f} | {r['max_rss_gb'] or 0:.1f} "
            f"| {size:.2f} | {ratio} | {replay} |"
        )
    lines += [
        "",
        (
            "| bench | lazy / no-skip per image (s) | speedup | ideal | efficiency | loop speedup | loop efficiency "
            "| peak memory lazy / no-skip (GiB) |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["benches"].items():
        c, lazy, base = r["comparison"], r["lazy"], r["no_skip"]
        memory = (
            f"{lazy['memory']['peak_rss_mb'] / 1024:.1f} / {base['memory']['peak_rss_mb'] / 1024:.1f} "
            f"({c['peak_memory_ratio']:.2f}x above the libraries)"
            if lazy.get("memory")
            else "-"
        )
        lines.append(
            f"| {name} | {lazy['median_latency(ms)'] / 1000:.1f} / {base['median_latency(ms)'] / 1000:.1f} "
            f"| {c['measured_speedup']:.2f} | {c['ideal_speedup_macs']:.2f} | {c['efficiency']:.3f} "
            f"| {c.get('loop_speedup', 0):.2f} | {c.get('loop_efficiency', 0):.3f} | {memory} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="out/dit-xl2", help="bundles, logs and bench JSON (kept for resuming)")
    parser.add_argument("--json", default="results/dit-xl2.json", help="results (a Markdown table beside it)")
    parser.add_argument("--only", help=f"comma-separated items, in this order: {', '.join(ORDER)}")
    parser.add_argument("--collect", action="store_true", help="only rewrite the results from what --work holds")
    args = parser.parse_args()
    work = Path(args.work)
    (work / "logs").mkdir(parents=True, exist_ok=True)
    items = args.only.split(",") if args.only else ORDER
    unknown = [i for i in items if i not in EXPORTS and i not in BENCHES]
    if unknown:
        parser.error(f"unknown items {unknown}; choose from {', '.join(ORDER)}")
    out = Path(args.json)
    previous = json.loads(out.read_text()) if out.is_file() else None
    for item in [] if args.collect else items:
        (run_export if item in EXPORTS else run_bench)(item, work)
        save(collect(work, previous), out)
    print(save(collect(work, previous), out))


def save(results: dict, path: Path) -> str:
    table = markdown(results)
    write_json(path, results)
    atomic_write(path.with_suffix(".md"), lambda tmp: tmp.write_text(table))
    return table


if __name__ == "__main__":
    main()
