"""The DiT noise schedule and deterministic DDIM sampling with classifier-free guidance.

Timesteps follow DiT's ``space_timesteps(1000, "ddimN")``: every ``1000 // N``-th training
timestep starting at 0, walked from the noisiest down. The model always sees the original
(0..999) timestep value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

NUM_TRAIN_TIMESTEPS = 1000


def linear_alphas_cumprod(num_timesteps: int = NUM_TRAIN_TIMESTEPS) -> np.ndarray:
    scale = 1000 / num_timesteps
    betas = np.linspace(scale * 1e-4, scale * 0.02, num_timesteps, dtype=np.float64)
    return np.cumprod(1.0 - betas)


@dataclass(frozen=True)
class DDIMSchedule:
    """A DDIM sampler on N evenly spaced steps: step i goes from ``timesteps[i]`` to the next."""

    steps: int

    def __post_init__(self) -> None:
        if not 1 <= self.steps <= NUM_TRAIN_TIMESTEPS:
            raise ValueError(f"DDIM steps must be in 1..{NUM_TRAIN_TIMESTEPS}, got {self.steps}")

    @property
    def timesteps(self) -> list[int]:
        stride = NUM_TRAIN_TIMESTEPS // self.steps
        return list(range(0, NUM_TRAIN_TIMESTEPS, stride))[: self.steps][::-1]

    @property
    def alphas(self) -> list[float]:
        """alpha_bar at each step's timestep."""
        acp = linear_alphas_cumprod()
        return [float(acp[t]) for t in self.timesteps]

    @property
    def alphas_prev(self) -> list[float]:
        """alpha_bar the step lands on (1.0 after the last step: a clean sample)."""
        return self.alphas[1:] + [1.0]

    def scalars(self, index: int) -> dict[str, float]:
        return {"t": float(self.timesteps[index]), "alpha": self.alphas[index], "alpha_prev": self.alphas_prev[index]}

    def to_dict(self) -> dict:
        return {
            "name": "ddim",
            "steps": self.steps,
            "eta": 0.0,
            "timesteps": self.timesteps,
            "alphas": self.alphas,
            "alphas_prev": self.alphas_prev,
        }


def ddim_update(
    x: torch.Tensor, eps: torch.Tensor, alpha: torch.Tensor | float, alpha_prev: torch.Tensor | float
) -> torch.Tensor:
    """One eta=0 DDIM step written only with tensor arithmetic, so exported graphs share it."""
    alpha = torch.as_tensor(alpha, dtype=x.dtype)
    alpha_prev = torch.as_tensor(alpha_prev, dtype=x.dtype)
    x0 = (x - torch.sqrt(1.0 - alpha) * eps) / torch.sqrt(alpha)
    x0 = torch.clamp(x0, -1.0, 1.0)
    eps = (x - torch.sqrt(alpha) * x0) / torch.sqrt(1.0 - alpha)
    return torch.sqrt(alpha_prev) * x0 + torch.sqrt(1.0 - alpha_prev) * eps


def guide(eps_cond: torch.Tensor, eps_uncond: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    return eps_uncond + scale * (eps_cond - eps_uncond)


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    acp = torch.as_tensor(linear_alphas_cumprod(), dtype=x0.dtype)[t].view(-1, 1, 1, 1)
    return torch.sqrt(acp) * x0 + torch.sqrt(1 - acp) * noise


def initial_noise(n: int, shape: tuple[int, int, int], seed: int) -> torch.Tensor:
    """Sample i's noise depends only on (seed, i), never on the plan, steps or batch size."""
    out = torch.empty((n, *shape))
    for i in range(n):
        g = torch.Generator().manual_seed(seed * 1_000_003 + i)
        out[i] = torch.randn(shape, generator=g)
    return out
