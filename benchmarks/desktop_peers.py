"""What a desktop user would run instead of a lazydit bundle, timed side by side in one process.

Configurations (every one: 1 image with classifier-free guidance, i.e. batch 2 = the class and
the null class, N DDIM steps, the same random weights' shapes, the same thread count):

  diffusers eager               diffusers' ``DiTTransformer2DModel`` (random weights, fixed seed)
                                called in a plain DDIM loop (diffusers ``DDIMScheduler``, DiT's
                                settings) that does per step what ``DiTPipeline`` does: one
                                transformer forward on batch 2, guidance, one scheduler step
  diffusers eager + TaylorSeer  the same with diffusers' TaylorSeer cache hooks
                                (``diffusers.hooks.apply_taylorseer_cache``) on every block's
                                attention (attn1) and feed-forward (ff) outputs, taken before the
                                adaLN gate as FORA and the bundles cache them, set to compute
                                every ``--interval``-th step and forecast (Taylor order
                                ``--taylor-order``) in between. The hook's default patterns
                                (``^transformer_blocks.*attn``, full match) hook nothing in this
                                model, whose attention is ``attn1``: the patterns are given here
  torch.compile                 ``torch.compile(transformer)`` (default mode); compilation
                                happens in the warmup runs, from a fresh TorchInductor cache, and
                                is reported apart
  torch.compile + TaylorSeer    hooks applied first, then compiled
  lazydit ExecuTorch bundles    ``lazydit export --timing-size SIZE --formats executorch`` bundles
                                (FORA-N fp32, FORA-N int8, no-skip fp32 by default) run by the
                                project runtime's ExecuTorch backend

Only the denoising loop is timed; no VAE decode anywhere. The peers never decode; a bundle's
figure is the project runtime's loop (``run_bundle`` through ``lazydit.runtime.bench.Timed``,
what ``lazydit bench`` times) minus its decode call, run by run: every step method plus the
runtime's routing between steps, the counterpart of the peers' Python guidance and scheduler
code. The decode method itself (a random VAE for latent sizes, seconds per image) is stubbed
unless ``--with-decode``.

Order: the eager peers and the bundles are prepared together and timed interleaved (one image of
each per round, the order reversed every other round); then torch.compile and torch.compile +
TaylorSeer, each alone: dynamo caches compiled code per code object for the whole process, and
with both models compiled the plain model was run through the TaylorSeer model's graph-broken
code. Other processes' share of the CPU is measured during every timed run (/proc/stat): torch's
OpenMP threads slow down many times over when another process takes a core.

Nothing here passes or fails: it measures, writes JSON and prints a table.

  python benchmarks/desktop_peers.py --export-dir out/peers            # export if missing, time all
  python benchmarks/desktop_peers.py --bundles A,B,C --runs 20         # reuse exports
  python benchmarks/desktop_peers.py --configs eager,eager+taylorseer --size DiT-S/8 --runs 3   # smoke
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PEERS = ("eager", "eager+taylorseer", "compile", "compile+taylorseer")
ALL = (*PEERS, "bundles")
TITLES = {
    "eager": "diffusers eager",
    "eager+taylorseer": "diffusers eager + TaylorSeer",
    "compile": "torch.compile",
    "compile+taylorseer": "torch.compile + TaylorSeer",
}


class PeersError(RuntimeError):
    pass


def slug(size: str) -> str:
    return size.lower().replace("/", "")


# ---------------------------------------------------------------------------------------------
# the diffusers peers


@dataclass
class Peer:
    """One diffusers configuration: the module to call, and what its hooks need per image."""

    name: str
    title: str
    call: Callable
    module: object  # the un-compiled transformer (hooks and their state live on it)
    taylorseer: bool
    compiled: bool
    info: dict = field(default_factory=dict)


def diffusers_transformer(size: str, seed: int):
    """diffusers' DiT with the registry size's shapes and random weights (normal, std 0.02, as
    lazydit's timing bundles), the same for every configuration: rebuilt from the same seed."""
    import torch
    from diffusers import DiTTransformer2DModel

    from lazydit.model import DiT_models

    c = DiT_models[size]
    if c.mlp_ratio != 4.0 or c.hidden_size % c.num_heads:
        raise PeersError(f"{size}: diffusers' DiT block has mlp ratio 4 and hidden = heads x head_dim")
    torch.manual_seed(seed)
    model = DiTTransformer2DModel(
        num_attention_heads=c.num_heads,
        attention_head_dim=c.hidden_size // c.num_heads,
        in_channels=c.in_channels,
        out_channels=c.out_channels,
        num_layers=c.depth,
        sample_size=c.input_size,
        patch_size=c.patch_size,
        num_embeds_ada_norm=c.num_classes,
        norm_type="ada_norm_zero",
    )
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(std=0.02)
    return model.eval()


def taylorseer_config(args):
    import torch
    from diffusers.hooks import TaylorSeerCacheConfig

    patterns = [r"transformer_blocks\.\d+\.attn1"]
    if args.taylor_modules == "attn+ff":
        patterns.append(r"transformer_blocks\.\d+\.ff")
    return TaylorSeerCacheConfig(
        cache_interval=args.interval,
        # steps 0..k-1 compute; after them the hook computes when (step - k - 1) % interval == 0,
        # so k = 1 computes steps 0, 2, 4, ... and forecasts 1, 3, 5, ...: FORA-2's schedule
        disable_cache_before_step=args.taylor_warmup_steps,
        disable_cache_after_step=None,
        max_order=args.taylor_order,
        taylor_factors_dtype=torch.float32,  # the default is bfloat16; the bundles cache in fp32
        cache_identifiers=patterns,
    )


def make_peer(name: str, args) -> Peer:
    import torch
    from diffusers.hooks import apply_taylorseer_cache

    module = diffusers_transformer(args.size, args.seed)
    ts = "taylorseer" in name
    info: dict = {"parameters": sum(p.numel() for p in module.parameters())}
    if ts:
        config = taylorseer_config(args)
        apply_taylorseer_cache(module, config)
        hooked = [n for n, m in module.named_modules() if n and getattr(m, "_diffusers_hook", None) is not None]
        hooked = [n for n in hooked if "taylorseer_cache" in module.get_submodule(n)._diffusers_hook.hooks]
        if not hooked:
            raise PeersError(f"TaylorSeer hooked no module (patterns {config.cache_identifiers})")
        info["taylorseer_hooked_modules"] = len(hooked)
    call = module
    if name.startswith("compile"):
        call = torch.compile(module)  # default mode
    return Peer(name, TITLES[name], call, module, ts, name.startswith("compile"), info)


def ddim_scheduler(steps: int):
    """DDIM with DiT's diffusion: linear betas 1e-4..0.02 over 1000 steps, no clipping (the DiT
    checkpoints do not clamp), 'leading' spacing: 950, 900, ..., 0 for 20 steps, the timesteps the
    bundles use."""
    from diffusers import DDIMScheduler

    s = DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=1e-4,
        beta_end=0.02,
        beta_schedule="linear",
        clip_sample=False,
        set_alpha_to_one=True,
        steps_offset=0,
        timestep_spacing="leading",
        prediction_type="epsilon",
    )
    s.set_timesteps(steps)
    return s


def denoise(peer: Peer, scheduler, noise, label, null_class, cfg_scale, steps, on_step=None) -> tuple[float, list]:
    """One image: returns (wall ms of the whole loop, ms per step). Per step, as DiTPipeline:
    duplicate the conditional half, scale_model_input, one forward on batch 2 (class, null class),
    guide the first in_channels output channels, keep the epsilon half of the learned-sigma
    output, one scheduler step on the batch."""
    import torch
    from diffusers.hooks import HookRegistry
    from diffusers.models.cache_utils import CacheMixin

    channels = noise.shape[1]
    labels = torch.tensor([label, null_class])
    step_ms = []
    if peer.taylorseer:
        # a new image: forget the previous one's Taylor factors and step counter
        HookRegistry.check_if_exists_or_initialize(peer.module).reset_stateful_hooks()
    # the hooks keep their state per cache context; a model without hooks gets none
    context = CacheMixin.cache_context(peer.module, "cond") if peer.taylorseer else contextlib.nullcontext()
    with torch.no_grad(), context:
        start = time.perf_counter()
        scheduler.set_timesteps(steps)
        sample = torch.cat([noise, noise])
        for i, t in enumerate(scheduler.timesteps):
            t0 = time.perf_counter()
            sample = torch.cat([sample[:1], sample[:1]])
            sample = scheduler.scale_model_input(sample, t)
            out = peer.call(sample, timestep=t[None].expand(2), class_labels=labels, return_dict=False)[0]
            eps, rest = out[:, :channels], out[:, channels:]
            cond, uncond = eps[:1], eps[1:]
            guided = uncond + cfg_scale * (cond - uncond)
            out = torch.cat([torch.cat([guided, guided]), rest], dim=1)
            model_output = out[:, :channels] if out.shape[1] == 2 * channels else out
            sample = scheduler.step(model_output, t, sample).prev_sample
            step_ms.append((time.perf_counter() - t0) * 1000)
            if on_step is not None:
                on_step(i)
        total = (time.perf_counter() - start) * 1000
    if not torch.isfinite(sample).all():
        raise PeersError(f"{peer.title}: the sample is not finite")
    return total, step_ms


def taylorseer_schedule(peer: Peer, run_image: Callable) -> dict:
    """Run one untimed image and read, after every step, whether the hook computed or forecast
    (the hook's state: ``last_update_step == current_step`` after a computed step)."""
    hook = None
    for _, m in peer.module.named_modules():
        reg = getattr(m, "_diffusers_hook", None)
        if reg is not None and "taylorseer_cache" in reg.hooks:
            hook = reg.hooks["taylorseer_cache"]
            break
    computed = []

    def on_step(i):
        state = hook.state_manager.get_state()
        computed.append(state.last_update_step == state.current_step)

    run_image(on_step)
    return {
        "compute_steps": [i for i, c in enumerate(computed) if c],
        "forecast_steps": [i for i, c in enumerate(computed) if not c],
    }


# ---------------------------------------------------------------------------------------------
# the bundles


# (policy, precision): FORA bundles in each of --precisions, and the no-skip baseline in fp32
def standard_bundles(precisions: list[str]) -> list[tuple[str, str]]:
    return [("fora", p) for p in precisions] + [("full", "fp32")]


def export_missing(args) -> list[Path]:
    """The standard bundles under --export-dir, exported with the lazydit CLI when missing."""
    root = Path(args.export_dir)
    root.mkdir(parents=True, exist_ok=True)
    dirs = []
    for policy, precision in standard_bundles(args.precisions):
        kind = f"fora{args.interval}" if policy == "fora" else "full"
        out = root / f"{slug(args.size)}-{kind}-{precision}-{args.steps}steps"
        dirs.append(out)
        if (out / "manifest.json").is_file():
            print(f"[export] reusing {out}", flush=True)
            continue
        cmd = [sys.executable, "-m", "lazydit.cli", "export", "--timing-size", args.size]
        if policy == "fora":
            cmd += ["--policy", "fora", "--interval", str(args.interval)]
        cmd += ["--steps", str(args.steps), "--formats", "executorch", "--precision", precision, "--out", str(out)]
        log = root / f"{out.name}.export.log"
        print(f"[export] {' '.join(cmd[2:])}  (minutes; log: {log})", flush=True)
        t0 = time.perf_counter()
        with open(log, "w") as f:
            rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)
        if rc != 0:
            tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
            raise PeersError(f"export of {out} failed (exit {rc}); end of {log}:\n{tail}")
        print(f"[export] {out.name} done in {time.perf_counter() - t0:.0f} s", flush=True)
    return dirs


def bundle_title(manifest: dict) -> tuple[str, str]:
    plan = manifest["plan"]
    precision = manifest.get("precision", {}).get("name", "fp32")
    if not plan.get("skipped"):
        kind = "no-skip"
    elif plan.get("policy") == "fora":
        kind = f"FORA-{plan.get('params', {}).get('interval')}"
    else:
        kind = f"{plan.get('policy')} {plan['lazy_ratio']['modules']:.0%}"
    title = f"lazydit ExecuTorch {precision} {kind}"
    return title.lower().replace("lazydit executorch ", "et-").replace(" ", "-"), title


class StepsOnly:
    """A bundle's backend whose decode method is not run: it returns zeros of the manifest's
    dtypes and shapes (what the runtime loop checks), so that every timed run skips the decode
    (seconds: the random VAE of a latent timing bundle) and measures what the peers do. With
    ``--with-decode`` the real backend is used and the decode, timed apart, is subtracted."""

    def __init__(self, backend):
        self.inner = backend
        self.bundle = backend.bundle
        self.name = backend.name
        m = backend.bundle.manifest
        self.decode = m["decode"]
        slots = m["slots"]
        self.outputs = [
            np.zeros(slots[o["target"]]["shape"], dtype=slots[o["target"]]["dtype"])
            for o in m["methods"][self.decode]["outputs"]
        ]

    def run(self, method: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
        if method == self.decode:
            return [o.copy() for o in self.outputs]
        return self.inner.run(method, inputs)


def check_bundle(path: Path, args, verify_hashes: bool = True):
    """The bundle at ``path`` if it is one the peers can be compared with (checked before anything runs)."""
    from lazydit.runtime.bundle import Bundle, BundleError

    if not (path / "manifest.json").is_file():
        raise PeersError(f"{path}: no manifest.json (not a bundle; export it or pass --export-dir)")
    try:
        bundle = Bundle.load(path, verify_hashes=verify_hashes)
    except BundleError as err:
        raise PeersError(f"{path}: {err}") from err
    m = bundle.manifest
    model_name = m["model"].get("name") or m["model"].get("config", {}).get("name")
    if model_name != args.size:
        raise PeersError(f"{path} holds {model_name}, the peers run {args.size} (--size)")
    if m["sampler"]["steps"] != args.steps:
        raise PeersError(f"{path} has {m['sampler']['steps']} steps, the peers run {args.steps} (--steps)")
    if "executorch" not in m["artifacts"]:
        raise PeersError(
            f"{path} has no ExecuTorch program (formats: {sorted(m['artifacts'])}); export with --formats executorch"
        )
    return bundle


def load_bundle(path: Path, args):
    """A bundle on the project runtime's ExecuTorch backend, timed by ``lazydit.runtime.bench.Timed``
    (the loop ``lazydit bench`` times); returns (name, title, Timed, initial state, info)."""
    from lazydit.runtime.backends import create_backend
    from lazydit.runtime.bench import Timed
    from lazydit.runtime.bundle import BundleError

    bundle = check_bundle(path, args)
    m = bundle.manifest
    t0 = time.perf_counter()
    try:
        backend = create_backend("executorch", bundle, args.threads)
    except BundleError as err:
        raise PeersError(f"{path}: {err}") from err
    load_ms = (time.perf_counter() - t0) * 1000
    timed = Timed(bundle, backend if args.with_decode else StepsOnly(backend), load_ms)
    initial = bundle.initial_state()
    initial["cfg_scale"] = np.array([args.cfg_scale], dtype=np.float32)
    name, title = bundle_title(m)
    info = {
        "bundle": str(path),
        "precision": m.get("precision", {}).get("name", "fp32"),
        "policy": m["plan"].get("policy"),
        "plan_params": {k: v for k, v in m["plan"].get("params", {}).items() if k != "gates"},
        "lazy_steps": bundle.lazy_steps,
        "lazy_ratio": m["plan"]["lazy_ratio"],
        "skipped_modules": m["plan"].get("skipped"),
        "macs_per_image": m["plan"].get("macs_per_image"),
        "methods": len(m["methods"]),
        "timing_only": m["model"].get("timing_only"),
        "decode": "run, timed apart and subtracted" if args.with_decode else "not run (stubbed with zeros)",
        "model_load_time(ms)": load_ms,
        "weights_cache": getattr(backend, "weights_cache", None),
    }
    return name, title, timed, initial, info


# ---------------------------------------------------------------------------------------------
# timing


def stats(values: list[float]) -> dict:
    return {
        "median_ms": float(np.median(values)),
        "p90_ms": float(np.percentile(values, 90)),
        "mean_ms": float(np.mean(values)),
        "min_ms": float(np.min(values)),
        "max_ms": float(np.max(values)),
    }


def dynamo_counts() -> dict:
    from torch._dynamo.utils import counters

    return {
        "graphs": int(counters["stats"].get("unique_graphs", 0)),
        "graph_breaks": int(sum(counters["graph_break"].values())),
    }


def parse_args(argv=None):
    from lazydit.model import DiT_models

    sizes = [k for k, c in DiT_models.items() if c.in_channels == 4]
    p = argparse.ArgumentParser(
        prog="desktop_peers.py",
        description="Time, in one process on this machine, diffusers' DiT (eager, + TaylorSeer cache, "
        "torch.compile, torch.compile + TaylorSeer) against lazydit ExecuTorch bundles of the same shapes: "
        "1 image with classifier-free guidance (batch 2), DDIM, random weights, the denoising loop only "
        "(no VAE decode). Writes JSON and prints a table.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--size", default="DiT-S/2", choices=sizes, help="registry size (latent 4x32x32)")
    p.add_argument("--steps", type=int, default=20, help="DDIM steps")
    p.add_argument("--runs", type=int, default=20, help="timed images per configuration")
    p.add_argument("--warmup", type=int, default=2, help="untimed images first (torch.compile compiles in them)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads and the ExecuTorch backend's threads")
    p.add_argument("--seed", type=int, default=0, help="weights and noise seed")
    p.add_argument("--label", type=int, default=0, help="class of the image")
    p.add_argument("--cfg-scale", type=float, default=4.0, help="guidance scale (DiTPipeline's default)")
    p.add_argument(
        "--interval", type=int, default=2, help="FORA interval of the exported bundles and TaylorSeer's cache_interval"
    )
    p.add_argument("--taylor-order", type=int, default=1, help="TaylorSeer max_order")
    p.add_argument(
        "--taylor-warmup-steps",
        type=int,
        default=1,
        help="TaylorSeer disable_cache_before_step: 1 with interval 2 computes steps 0,2,4,... as FORA-2",
    )
    p.add_argument(
        "--taylor-modules",
        choices=("attn+ff", "attn"),
        default="attn+ff",
        help="what TaylorSeer caches in every block: attention and feed-forward (as FORA and the bundles), or "
        "attention only",
    )
    p.add_argument("--configs", default=",".join(ALL), help=f"which to run, of {','.join(ALL)}")
    p.add_argument("--bundles", default="", help="existing bundle folders, comma separated")
    p.add_argument(
        "--export-dir",
        help="export the standard bundles (FORA-<interval> per --precisions, no-skip fp32) here when missing, "
        "with `lazydit export --timing-size SIZE --formats executorch` (a few minutes each for DiT-S/2)",
    )
    p.add_argument("--precisions", default="fp32,int8", help="precisions of the exported FORA bundles")
    p.add_argument(
        "--order",
        choices=("interleaved", "blocked"),
        default="interleaved",
        help="interleaved: one image of every configuration per round (load drift hits all alike); "
        "blocked: all runs of one configuration, then the next",
    )
    p.add_argument(
        "--compile-cache",
        help="TorchInductor cache folder to use (and keep); default: a fresh temporary one, removed at the end, so "
        "the reported compile time is a first compile's",
    )
    p.add_argument(
        "--with-decode",
        action="store_true",
        help="run the bundles' decode method too (timed apart and subtracted); by default it is stubbed",
    )
    p.add_argument("--json", help="output (default results/peers-<size>.json in the repository)")
    args = p.parse_args(argv)
    args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = set(args.configs) - set(ALL)
    if unknown:
        p.error(f"unknown --configs {sorted(unknown)}; choose from {','.join(ALL)}")
    args.precisions = [c.strip() for c in args.precisions.split(",") if c.strip()]
    if set(args.precisions) - {"fp32", "fp16", "int8"}:
        p.error("--precisions: fp32, fp16, int8")
    if args.runs < 1 or args.warmup < 0 or args.steps < 1 or args.threads < 1 or args.interval < 1:
        p.error("--runs, --steps, --threads, --interval must be >= 1 and --warmup >= 0")
    if any(c.startswith("compile") for c in args.configs) and args.warmup < 1:
        p.error("torch.compile compiles in the warmup runs: --warmup must be >= 1")
    if "bundles" in args.configs and not args.bundles and not args.export_dir:
        p.error("the bundles need --bundles DIR,... or --export-dir DIR (or leave 'bundles' out of --configs)")
    args.json = Path(args.json) if args.json else REPO / "results" / f"peers-{slug(args.size)}.json"
    return args


def main(argv=None) -> int:
    try:
        args = parse_args(argv)
    except ModuleNotFoundError as err:
        print(f"desktop_peers: {err}; run inside the project venv (source .venv/bin/activate)", file=sys.stderr)
        return 2
    fresh = None
    if args.compile_cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(args.compile_cache).resolve())
    else:
        fresh = tempfile.mkdtemp(prefix="peers-inductor-")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = fresh
    try:
        return run(args)
    except PeersError as err:
        print(f"desktop_peers: error: {err}", file=sys.stderr)
        return 2
    finally:
        if fresh:
            shutil.rmtree(fresh, ignore_errors=True)


@dataclass
class Config:
    """One timed configuration: ``once()`` times one image, -> (denoising ms, ms per step)."""

    name: str
    result: dict  # title, kind, info; the statistics are added at the end
    once: Callable[[], tuple[float, list[float]]]
    runs_ms: list[float] = field(default_factory=list)
    steps_ms: list[list[float]] = field(default_factory=list)
    compiled_while_timed: dict = field(default_factory=lambda: {"graphs": 0, "graph_breaks": 0})
    others: list = field(default_factory=list)  # share of the machine's CPU other processes used, per run

    def time_once(self) -> float:
        before = dynamo_counts()
        cpu0 = cpu_seconds()
        total, per_step = self.once()
        cpu1 = cpu_seconds()
        after = dynamo_counts()
        self.runs_ms.append(total)
        self.steps_ms.append(per_step)
        for k in after:  # whatever dynamo compiles now is timed: it should be nothing
            self.compiled_while_timed[k] += after[k] - before[k]
        if cpu0 and cpu1:
            others = (cpu1[0] - cpu0[0]) - (cpu1[1] - cpu0[1])  # machine busy time minus this process's
            self.others.append(max(0.0, others) / (total / 1000 * (os.cpu_count() or 1)))
        return total


def time_all(configs: list[Config], runs: int, order: str) -> None:
    if order == "interleaved" and len(configs) > 1:
        for r in range(runs):
            for c in configs if r % 2 == 0 else configs[::-1]:
                c.time_once()
            print(
                f"run {r + 1}/{runs}: " + "  ".join(f"{c.name} {c.runs_ms[-1]:.0f}" for c in configs) + " ms",
                flush=True,
            )
        return
    for c in configs:
        for r in range(runs):
            c.time_once()
        print(
            f"[{c.name}] median {np.median(c.runs_ms):.0f} ms, p90 {np.percentile(c.runs_ms, 90):.0f} ms "
            f"over {runs} runs",
            flush=True,
        )


def run(args) -> int:
    # bundles first: an export runs in its own process, before anything here is timed
    bundle_dirs = [Path(d.strip()) for d in args.bundles.split(",") if d.strip()]
    if "bundles" in args.configs and args.export_dir:
        bundle_dirs += [d for d in export_missing(args) if d not in bundle_dirs]
    if "bundles" not in args.configs:
        bundle_dirs = []
    for d in bundle_dirs:
        check_bundle(d, args, verify_hashes=False)  # fail now, not after minutes of peers

    import torch

    torch.set_num_threads(args.threads)
    import diffusers

    from lazydit.model import DiT_models
    from lazydit.runtime.backends import executorch_bindings
    from lazydit.runtime.loop import run_bundle

    c = DiT_models[args.size]
    torch.manual_seed(args.seed)
    noise = torch.randn(1, c.in_channels, c.input_size, c.input_size)
    scheduler = ddim_scheduler(args.steps)
    taylor = None

    def prepare_peer(name: str) -> Config:
        nonlocal taylor
        print(f"[{name}] building {args.size} (diffusers {diffusers.__version__})", flush=True)
        peer = make_peer(name, args)
        if peer.taylorseer and taylor is None:
            cfg = taylorseer_config(args)
            taylor = {k: (str(v) if k == "taylor_factors_dtype" else v) for k, v in vars(cfg).items()}
            taylor["repr"] = repr(cfg)
            taylor["applied_with"] = "diffusers.hooks.apply_taylorseer_cache(transformer, config)"

        def image(on_step=None):
            return denoise(peer, scheduler, noise, args.label, c.num_classes, args.cfg_scale, args.steps, on_step)

        before = dynamo_counts()
        warm = [image()[0] for _ in range(args.warmup)]
        info = {**peer.info, "warmup_ms": warm}
        if peer.compiled:
            after = dynamo_counts()
            info["dynamo_during_warmup"] = {k: after[k] - before[k] for k in after}
            info["first_run_ms"] = warm[0]
        if peer.taylorseer:
            info["schedule"] = taylorseer_schedule(peer, image)
            taylor.setdefault("schedule_run", {})[name] = info["schedule"]
        print(f"[{name}] ready: warmup runs {', '.join(f'{w:.0f}' for w in warm)} ms", flush=True)
        result = {"title": peer.title, "kind": "diffusers", "info": info}
        return Config(name, result, lambda: image())

    executorch_threads = None

    def prepare_bundle(path: Path) -> Config:
        nonlocal executorch_threads
        name, title, timed, initial, info = load_bundle(path, args)
        warm = []
        for _ in range(args.warmup):
            r = run_bundle(timed.backend, initial)
            warm.append((r.total_seconds - r.decode_seconds) * 1000)
        executorch_threads = executorch_bindings()._threadpool_get_thread_count()
        info["warmup_ms"] = warm
        print(
            f"[{name}] ready: {path} loaded in {timed.load_ms:.0f} ms, warmup runs "
            f"{', '.join(f'{w:.0f}' for w in warm)} ms",
            flush=True,
        )

        def once():
            timed.once(initial)  # run_bundle: every step method, then the decode method
            return timed.images_ms[-1] - timed.decode_ms[-1], timed.steps_ms[-1]

        result = {"title": title, "kind": "lazydit", "info": info, "timed": timed}
        return Config(name, result, once)

    done: list[Config] = []
    # 1. eager peers and bundles: prepared together, timed together (interleaved by default)
    group = [prepare_peer(n) for n in ("eager", "eager+taylorseer") if n in args.configs]
    group += [prepare_bundle(p) for p in bundle_dirs]
    names = [g.name for g in group]
    for g in group:
        if names.count(g.name) > 1:
            g.name = f"{g.name}@{Path(g.result['info'].get('bundle', '')).name}"
    if executorch_threads is not None and executorch_threads != args.threads:
        print(
            f"warning: ExecuTorch's threadpool has {executorch_threads} threads, --threads is {args.threads}",
            file=sys.stderr,
        )
    time_all(group, args.runs, args.order)
    done += group
    # 2. each compiled configuration alone, from an empty dynamo cache: dynamo caches compiled code
    # per code object for the whole process, and with both models compiled the plain one was run
    # through the TaylorSeer model's graph-broken code (its guards let the plain model through)
    for name in ("compile", "compile+taylorseer"):
        if name not in args.configs:
            continue
        torch._dynamo.reset()
        cfg = prepare_peer(name)
        time_all([cfg], args.runs, "blocked")
        cfg.once = None  # release the model and its compiled code
        torch._dynamo.reset()
        done.append(cfg)
    if not done:
        raise PeersError("nothing to run")

    results: dict[str, dict] = {}
    for cfg in done:
        res = cfg.result
        timed = res.pop("timed", None)
        res.update(stats(cfg.runs_ms))
        per_step = np.median(np.array(cfg.steps_ms), axis=0)
        res["runs_ms"] = cfg.runs_ms
        res["per_step_median_ms"] = [float(v) for v in per_step]
        res["sum_of_per_step_medians_ms"] = float(per_step.sum())
        if cfg.others:
            res["other_processes_cpu_share"] = {"median": float(np.median(cfg.others)), "max": float(max(cfg.others))}
        if res["kind"] == "diffusers" and cfg.name.startswith("compile"):
            res["info"]["dynamo_during_timed_runs"] = cfg.compiled_while_timed
            res["info"]["compile_s_estimate"] = (res["info"]["first_run_ms"] - res["median_ms"]) / 1000
            if cfg.compiled_while_timed["graphs"]:
                print(
                    f"warning: {cfg.name} compiled {cfg.compiled_while_timed['graphs']} graphs during its timed "
                    "runs: its figures include compilation (raise --warmup)",
                    file=sys.stderr,
                )
        if timed is not None:
            res["backend_steps_median_ms"] = float(np.median([sum(s) for s in timed.steps_ms]))
            if args.with_decode:
                res["decode_median_ms_excluded"] = float(np.median(timed.decode_ms))
                res["image_with_decode_median_ms"] = float(np.median(timed.images_ms))
        results[cfg.name] = res
    ratios = speedups(results)
    report = {
        "what": "desktop peers of a lazydit bundle: the denoising loop of 1 image (classifier-free guidance, "
        "batch 2), no VAE decode, random weights",
        "timed": {
            "diffusers": "wall time of the DDIM loop: per step one transformer forward on batch 2 (class + null "
            "class), guidance, DDIMScheduler.step (what diffusers' DiTPipeline does per step); no VAE decode",
            "lazydit": "wall time of the project runtime's loop (lazydit.runtime.loop.run_bundle, through "
            "lazydit.runtime.bench.Timed) minus its decode call, run by run: every step method plus the routing "
            "between steps" + ("" if args.with_decode else "; the decode method is not run (stubbed with zeros)"),
            "order": f"eager peers and bundles {args.order}; then torch.compile, then torch.compile + TaylorSeer, "
            "each alone from an empty dynamo cache (compiled in its warmup runs, then timed)",
            "statistics": "median and p90 (numpy) over the timed runs",
        },
        "model": {**c.to_dict(), "weights": f"random, normal std 0.02, seed {args.seed}"},
        "settings": {
            "steps": args.steps,
            "runs": args.runs,
            "warmup": args.warmup,
            "threads": args.threads,
            "executorch_threadpool_threads": executorch_threads,
            "cfg_scale": args.cfg_scale,
            "label": args.label,
            "seed": args.seed,
            "order": args.order,
            "compile_cache": args.compile_cache or "a fresh temporary TorchInductor cache (a first compile)",
            "scheduler": {k: v for k, v in scheduler.config.items() if not k.startswith("_")},
        },
        "taylorseer": taylor,
        "versions": versions(),
        "machine": machine(),
        "configurations": results,
        "speedups": ratios,
        "speedups_mean": "'a vs b' = median(b) / median(a): above 1, a is faster",
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print_table(results, args)
    busy = {n: r["other_processes_cpu_share"]["median"] for n, r in results.items() if "other_processes_cpu_share" in r}
    if any(v > 0.05 for v in busy.values()):
        print(
            "note: other processes used the CPU during the timed runs (median share of the machine: "
            + ", ".join(f"{n} {v:.0%}" for n, v in busy.items())
            + "); torch's OpenMP threads slow down far more than ExecuTorch's under contention: rerun on an idle "
            "machine",
            file=sys.stderr,
        )
    print(f"wrote {args.json}")
    return 0


def speedups(results: dict) -> dict:
    """median(b) / median(a) for "a vs b": > 1 when a is faster."""
    out = {}

    def put(a, b):
        if a in results and b in results:
            out[f"{a} vs {b}"] = results[b]["median_ms"] / results[a]["median_ms"]

    put("eager+taylorseer", "eager")
    put("compile", "eager")
    put("compile+taylorseer", "compile")
    put("compile+taylorseer", "eager")
    ours = [n for n, r in results.items() if r["kind"] == "lazydit"]
    for n in ours:
        for peer in PEERS:
            put(n, peer)
    # every bundle against the no-skip bundle of its precision and against the fp32 no-skip one
    fulls = {results[n]["info"]["precision"]: n for n in ours if not results[n]["info"]["skipped_modules"]}
    for n in ours:
        for base in {fulls.get(results[n]["info"]["precision"]), fulls.get("fp32")} - {None, n}:
            put(n, base)
    return out


def print_table(results: dict, args) -> None:
    ref = "compile+taylorseer" if "compile+taylorseer" in results else None
    print(
        f"\n{args.size}, {args.steps} DDIM steps, 1 image with guidance (batch 2), {args.threads} threads, "
        f"{args.runs} runs; denoising loop only (no VAE decode)"
    )
    head = f"{'configuration':<36} {'median ms':>10} {'p90 ms':>9} {'min ms':>9}"
    head += f" {'x vs eager':>11}" + (f" {'x vs compile+TS':>16}" if ref else "")
    print(head)
    print("-" * len(head))
    eager = results.get("eager", {}).get("median_ms")
    for r in results.values():
        line = f"{r['title']:<36} {r['median_ms']:>10.0f} {r['p90_ms']:>9.0f} {r['min_ms']:>9.0f}"
        line += f" {eager / r['median_ms']:>11.2f}" if eager else f" {'':>11}"
        if ref:
            line += f" {results[ref]['median_ms'] / r['median_ms']:>16.2f}"
        print(line)
    print("(x vs Y: median(Y) / median(this); > 1 is faster than Y)\n")


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("torch", "diffusers", "executorch", "numpy", "lazydit"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    try:
        out["lazydit_git"] = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        out["lazydit_git"] = None
    return out


def cpu_seconds() -> tuple[float, float] | None:
    """(busy seconds of the whole machine, CPU seconds of this process) from /proc/stat and
    os.times; None where /proc/stat is missing."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal ...: all but idle and iowait are busy
    busy = sum(fields[:8]) - fields[3] - fields[4]
    t = os.times()
    return busy / os.sysconf("SC_CLK_TCK"), t.user + t.system


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(), "loadavg_at_end": load}


if __name__ == "__main__":
    sys.exit(main())
