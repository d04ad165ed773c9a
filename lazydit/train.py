"""Training a DiT on a dataset: epsilon-prediction MSE, AdamW with warm-up and cosine decay,
an EMA copy (the one that is shipped), resumable atomic checkpoints and a fixed seed."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from .checkpoints import save_model
from .data import ImageDataset, load_dataset
from .diffusion import NUM_TRAIN_TIMESTEPS, q_sample
from .distributed import DEVICES, World, best_device
from .files import atomic_write
from .model import DiT, DiT_models, DiTConfig
from .options import opt


@dataclass
class TrainConfig:
    size: str = opt("DiT-Digits", "model size from the registry")
    dataset: str = opt("digits", "'digits' or a folder with one subfolder per class")
    image_size: int | None = opt(None, "image side for a folder dataset")
    channels: int = opt(1, "1 grey, 3 RGB (folder datasets)", choices=(1, 3))
    iterations: int = opt(8000, "optimizer steps")
    batch: int = opt(128, "images per step")
    lr: float = opt(1e-3, "peak AdamW learning rate (linear warm-up, then cosine)")
    warmup: int = opt(200, "warm-up steps (EMA starts after them)")
    weight_decay: float = opt(0.0, "AdamW weight decay")
    ema_decay: float = opt(0.999, "EMA decay of the saved weights")
    seed: int = opt(0, "seed of the weights, the batches and the noise")
    checkpoint_every: int = opt(500, "steps between resumable checkpoints")
    save_dtype: str = opt("float32", "dtype of the saved weights", choices=("float32", "float16"))
    eval_every: int = opt(
        0,
        "steps between evaluations of the EMA weights on a fixed sample set (0: none); a multiple of --checkpoint-every",
    )
    eval_per_class: int = opt(50, "samples per class of each evaluation (fixed noise: sample i from (seed, i))")
    eval_steps: int = opt(50, "DDIM steps of each evaluation")
    device: str = opt(
        "auto",
        "cpu, cuda or mps; auto: the best available (bf16 autocast on CUDA GPUs that support it)",
        choices=DEVICES,
    )

    def settings(self) -> dict:
        """What a resumed run must share with the run it continues (not where it runs)."""
        return {k: v for k, v in asdict(self).items() if k != "device"}

    def check(self) -> None:
        if self.iterations < 1 or self.batch < 1:
            raise ValueError("--iterations and --batch must be at least 1")
        if self.eval_every < 0 or (self.eval_every and self.eval_every % self.checkpoint_every):
            raise ValueError(
                f"--eval-every {self.eval_every} must be 0 or a multiple of --checkpoint-every "
                f"{self.checkpoint_every} (a resumed run repeats nothing between them)"
            )

    def model_config(self, data: ImageDataset) -> DiTConfig:
        """The registry size, fitted to a folder dataset's image size, channels and classes."""
        if self.size not in DiT_models:
            raise ValueError(f"unknown size {self.size!r}; choose one of {sorted(DiT_models)}")
        config = DiT_models[self.size]
        if self.dataset == "digits":
            return config
        shape = {"input_size": data.shape[1], "in_channels": data.shape[0], "num_classes": data.num_classes}
        return DiTConfig.from_dict({**config.to_dict(), **shape})


# (step, EMA model, mean training loss since the last evaluation, held-out loss or None) -> None
EvalHook = Callable[[int, DiT, float, "float | None"], None]


def train(
    config: TrainConfig,
    out: str | Path,
    progress: bool = True,
    on_eval: EvalHook | None = None,
    world: World | None = None,
) -> Path:
    """Train a DiT as ``config`` says; writes ``out/model.safetensors`` (+ JSON) and can resume.
    Every ``eval_every`` steps ``on_eval`` sees the EMA weights (the ones that are shipped)."""
    config.check()
    data = load_dataset(config.dataset, config.image_size, config.channels)
    held_out = load_dataset("digits", split="test") if config.dataset == "digits" else None
    return fit(config.model_config(data), data, out, config, progress, on_eval=on_eval, held_out=held_out, world=world)


@torch.no_grad()
def held_out_loss(model: DiT, data: ImageDataset, seed: int = 0, draws: int = 4) -> float:
    """The epsilon MSE on a fixed set: every image of ``data`` at ``draws`` fixed (timestep, noise)
    pairs, so two evaluations see the same problems."""
    gen = torch.Generator().manual_seed(seed + 7919)
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for _ in range(draws):
        t = torch.randint(0, NUM_TRAIN_TIMESTEPS, (len(data),), generator=gen)
        noise = torch.randn(data.images.shape, generator=gen)
        for i in range(0, len(data), 512):
            sl = slice(i, i + 512)
            x_t, t_sl, y, eps = (
                v.to(device) for v in (q_sample(data.images[sl], t[sl], noise[sl]), t[sl], data.labels[sl], noise[sl])
            )
            total += float(torch.sum((model.eps(model(x_t, t_sl, y)) - eps) ** 2))
            count += noise[sl].numel()
    return total / count


def _lr_at(step: int, config: TrainConfig) -> float:
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.iterations - config.warmup)
    return config.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def _update_ema(ema: DiT, model: DiT, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters()):
        e.mul_(decay).add_(p.detach(), alpha=1 - decay)


def fit(
    model_config: DiTConfig,
    data: ImageDataset,
    out: str | Path,
    config: TrainConfig,
    progress: bool = True,
    on_eval: EvalHook | None = None,
    held_out: ImageDataset | None = None,
    world: World | None = None,
) -> Path:
    """Train and write ``out/model.safetensors`` (EMA weights) + ``out/train_state.pt`` (to resume).

    In a ``world`` of several processes every rank draws the same global batch (images, timesteps,
    noise, label dropout) from the one generator and trains on its share of it under
    DistributedDataParallel, so the weights do not depend on the number of processes; rank 0
    writes the checkpoints, evaluates, and writes the model once every rank has finished."""
    world = world or World(device=best_device(config.device))
    local = world.split(config.batch, "batch")
    if data.num_classes != model_config.num_classes:
        raise ValueError(f"dataset has {data.num_classes} classes, the model {model_config.num_classes}")
    if data.shape != (model_config.in_channels, model_config.input_size, model_config.input_size):
        raise ValueError(
            f"dataset images are {data.shape}, the model expects "
            f"{(model_config.in_channels, model_config.input_size, model_config.input_size)}"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "train_state.pt"
    torch.manual_seed(config.seed)
    model = DiT(model_config)
    ema = copy.deepcopy(model).requires_grad_(False)
    model.to(world.device)
    ema.to(world.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(config.seed)
    start = 0
    if state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        if _settings(state["train_config"]) != config.settings() or state["model_config"] != model_config.to_dict():
            raise ValueError(f"{state_path} was written with other settings; use a new --out or the same settings")
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["opt"])
        gen.set_state(state["generator"])
        start = state["step"]
    model.train()
    trained = world.data_parallel(model, find_unused=False)
    bar = tqdm(
        range(start, config.iterations),
        initial=start,
        total=config.iterations,
        desc="train",
        disable=not (progress and world.main),
    )
    n = len(data)
    mine = slice(world.rank * local, (world.rank + 1) * local)
    loss_sum, loss_count = 0.0, 0
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, config)
        idx = torch.randint(0, n, (config.batch,), generator=gen)
        x0, y = data.images[idx], data.labels[idx]
        t = torch.randint(0, NUM_TRAIN_TIMESTEPS, (config.batch,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        y = model.y_embedder.drop(y, gen)
        x_t, t, y, noise = (v[mine].to(world.device) for v in (q_sample(x0, t, noise), t, y, noise))
        with world.autocast():
            pred = trained(x_t, t, y)
        loss = torch.mean((model.eps(pred).float() - noise) ** 2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        _update_ema(ema, model, config.ema_decay if step >= config.warmup else 0.0)
        loss_value = float(world.mean(loss.detach()))
        loss_sum += loss_value
        loss_count += 1
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss_value:.4f}")
        done = step + 1
        if world.main and on_eval is not None and config.eval_every and done % config.eval_every == 0:
            ema.eval()
            held = held_out_loss(ema, held_out, config.seed) if held_out is not None else None
            on_eval(done, ema, loss_sum / loss_count, held)
            loss_sum, loss_count = 0.0, 0
        if world.main and (done % config.checkpoint_every == 0 or done == config.iterations):
            snapshot = {
                "model": model.state_dict(),
                "ema": ema.state_dict(),
                "opt": optimizer.state_dict(),
                "generator": gen.get_state(),
                "step": done,
                "train_config": asdict(config),
                "model_config": model_config.to_dict(),
            }
            atomic_write(state_path, lambda tmp, s=snapshot: torch.save(s, tmp))
    world.barrier()  # a rank that failed never gets here: no model is written
    path = out / "model.safetensors"
    if world.main:
        path = save_model(
            ema.eval().cpu(),
            out / "model",
            dtype=getattr(torch, config.save_dtype),
            metadata={"train_config": asdict(config), "dataset_size": n},
        )
    return path


def _settings(saved: dict) -> dict:
    return {k: v for k, v in saved.items() if k != "device"}
