"""Training a DiT on a dataset: epsilon-prediction MSE, AdamW with warm-up and cosine decay,
an EMA copy (the one that is shipped), resumable atomic checkpoints and a fixed seed."""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from .checkpoints import atomic_write, save_model
from .data import ImageDataset
from .diffusion import NUM_TRAIN_TIMESTEPS, q_sample
from .model import DiT, DiTConfig


@dataclass
class TrainConfig:
    iterations: int = 8000
    batch_size: int = 128
    lr: float = 1e-3
    warmup: int = 200
    weight_decay: float = 0.0
    ema_decay: float = 0.999
    seed: int = 0
    checkpoint_every: int = 500


def _lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.iterations - cfg.warmup)
    return cfg.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def _update_ema(ema: DiT, model: DiT, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters()):
        e.mul_(decay).add_(p.detach(), alpha=1 - decay)


def train(model_config: DiTConfig, data: ImageDataset, out: str | Path, cfg: TrainConfig, progress: bool = True,
          save_dtype: torch.dtype = torch.float32) -> Path:
    """Train and write ``out/model.safetensors`` (EMA weights) + ``out/train_state.pt`` (to resume)."""
    if data.num_classes != model_config.num_classes:
        raise ValueError(f"dataset has {data.num_classes} classes, the model {model_config.num_classes}")
    if data.shape != (model_config.in_channels, model_config.input_size, model_config.input_size):
        raise ValueError(f"dataset images are {data.shape}, the model expects "
                         f"{(model_config.in_channels, model_config.input_size, model_config.input_size)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "train_state.pt"
    torch.manual_seed(cfg.seed)
    model = DiT(model_config)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    start = 0
    if state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        if state["train_config"] != asdict(cfg) or state["model_config"] != model_config.to_dict():
            raise ValueError(f"{state_path} was written with other settings; use a new --out or the same settings")
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["generator"])
        start = state["step"]
    model.train()
    bar = tqdm(range(start, cfg.iterations), initial=start, total=cfg.iterations, desc="train", disable=not progress)
    n = len(data)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, cfg)
        idx = torch.randint(0, n, (cfg.batch_size,), generator=gen)
        x0, y = data.images[idx], data.labels[idx]
        t = torch.randint(0, NUM_TRAIN_TIMESTEPS, (cfg.batch_size,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        pred = model(q_sample(x0, t, noise), t, y, train=True, generator=gen)
        loss = torch.mean((model.eps(pred) - noise) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _update_ema(ema, model, cfg.ema_decay if step >= cfg.warmup else 0.0)
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
        done = step + 1
        if done % cfg.checkpoint_every == 0 or done == cfg.iterations:
            snapshot = {"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                        "generator": gen.get_state(), "step": done, "train_config": asdict(cfg),
                        "model_config": model_config.to_dict()}
            atomic_write(state_path, lambda tmp, s=snapshot: torch.save(s, tmp))
    return save_model(ema.eval(), out / "model", dtype=save_dtype, metadata={"train_config": asdict(cfg), "dataset_size": n})
