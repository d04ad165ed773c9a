"""The DiT noise schedule and deterministic DDIM sampling with classifier-free guidance.

Timesteps follow DiT's ``space_timesteps(1000, "ddimN")``: every ``1000 // N``-th training
timestep starting at 0, walked from the noisiest down. The model always sees the original
(0..999) timestep value.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

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


EPS_RULES = ("recomputed", "model")


@dataclass(frozen=True)
class SamplerSettings:
    """How a DDIM step turns the model's noise estimate into the next sample: the choices that
    differ between where models come from, recorded in plans and manifests and baked into graphs.

    * ``clip_x0``: clamp the predicted clean sample to [-1, 1] (right for pixels; the official DiT
      scripts sample latents unclamped, diffusers follows its scheduler's ``clip_sample``);
    * ``eps_after_clip``: the noise estimate the update uses once x0 is clamped: ``recomputed``
      from the clamped x0 (the official DiT diffusion code) or the ``model``'s own (diffusers'
      DDIMScheduler with ``use_clipped_model_output=False``, what its DiTPipeline does);
    * ``guided_channels``: classifier-free guidance on every channel (None) or on the first k only,
      the rest keeping the conditional estimate (the official ``forward_with_cfg`` guides 3 of 4).
    """

    clip_x0: bool = True
    eps_after_clip: str = "recomputed"
    guided_channels: int | None = None

    def __post_init__(self) -> None:
        if self.eps_after_clip not in EPS_RULES:
            raise ValueError(f"eps_after_clip must be one of {EPS_RULES}, got {self.eps_after_clip!r}")
        if self.guided_channels is not None and self.guided_channels < 1:
            raise ValueError(f"guided channels must be at least 1, got {self.guided_channels}")

    def to_dict(self) -> dict:
        return {"clip_x0": self.clip_x0, "eps_after_clip": self.eps_after_clip, "guided_channels": self.guided_channels}

    @classmethod
    def from_dict(cls, data: dict) -> SamplerSettings:
        """The settings in a plan's or manifest's ``sampler``; absent keys are the pixel defaults."""
        return cls(
            bool(data.get("clip_x0", True)), data.get("eps_after_clip", "recomputed"), data.get("guided_channels")
        )

    def with_overrides(self, clip_x0: bool | None = None, guided_channels: int | None = None) -> SamplerSettings:
        """These settings with what a user asked for on the command line (None: keep)."""
        changes = {}
        if clip_x0 is not None:
            changes["clip_x0"] = clip_x0
        if guided_channels is not None:
            changes["guided_channels"] = guided_channels or None  # 0 means every channel
        return replace(self, **changes)

    def guide(self, eps_cond: torch.Tensor, eps_uncond: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
        guided = guide(eps_cond, eps_uncond, scale)
        k = self.guided_channels
        if k is None or k >= eps_cond.shape[1]:
            return guided
        return torch.cat([guided[:, :k], eps_cond[:, k:]], dim=1)

    def update(
        self, x: torch.Tensor, eps: torch.Tensor, alpha: torch.Tensor | float, alpha_prev: torch.Tensor | float
    ) -> torch.Tensor:
        """One eta=0 DDIM step written only with tensor arithmetic, so exported graphs share it."""
        alpha = torch.as_tensor(alpha, dtype=x.dtype)
        alpha_prev = torch.as_tensor(alpha_prev, dtype=x.dtype)
        x0 = (x - torch.sqrt(1.0 - alpha) * eps) / torch.sqrt(alpha)
        if self.clip_x0:
            x0 = torch.clamp(x0, -1.0, 1.0)
            if self.eps_after_clip == "recomputed":
                eps = (x - torch.sqrt(alpha) * x0) / torch.sqrt(1.0 - alpha)
        return torch.sqrt(alpha_prev) * x0 + torch.sqrt(1.0 - alpha_prev) * eps


PIXEL_SAMPLER = SamplerSettings()  # models trained here on pixels: clamp, as the original DDIM code
# facebookresearch/DiT's sample.py: latents unclamped, guidance on the first 3 of 4 channels
OFFICIAL_SAMPLER = SamplerSettings(clip_x0=False, guided_channels=3)
# the published DiT pipelines' scheduler: DDIM over the DiT training schedule, x0 not clamped,
# and DiTPipeline never asks for the clamped model output
DIFFUSERS_SAMPLER = SamplerSettings(clip_x0=False, eps_after_clip="model")


def guide(eps_cond: torch.Tensor, eps_uncond: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    return eps_uncond + scale * (eps_cond - eps_uncond)


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    acp = torch.as_tensor(linear_alphas_cumprod(), dtype=x0.dtype)[t].view(-1, 1, 1, 1)
    return torch.sqrt(acp) * x0 + torch.sqrt(1 - acp) * noise


def initial_noise(n: int, shape: tuple[int, int, int], seed: int, start: int = 0) -> torch.Tensor:
    """Sample i's noise depends only on (seed, i), never on the plan, steps, batch size or which
    process draws it; ``start`` is the global index of the first of the ``n``."""
    out = torch.empty((n, *shape))
    for i in range(n):
        g = torch.Generator().manual_seed(seed * 1_000_003 + start + i)
        out[i] = torch.randn(shape, generator=g)
    return out
