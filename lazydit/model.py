"""Diffusion Transformer with the state-dict layout of facebookresearch/DiT.

Key names (``x_embedder.proj``, ``blocks.{i}.attn.qkv``, ``blocks.{i}.adaLN_modulation.1`` ...)
are kept exactly as upstream so official checkpoints load without renaming. Each block exposes
its attention and MLP branches separately, because a skip plan reuses one branch's cached
output (taken *before* the adaLN gate multiplies it) while the modulation, gates and residual
adds are always recomputed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from .diffusion import PIXEL_SAMPLER, SamplerSettings

MODULES = ("attn", "mlp")


@dataclass(frozen=True)
class DiTConfig:
    """Everything needed to rebuild a DiT; stored next to the weights as JSON."""

    input_size: int = 32
    patch_size: int = 2
    in_channels: int = 4
    hidden_size: int = 1152
    depth: int = 28
    num_heads: int = 16
    mlp_ratio: float = 4.0
    class_dropout_prob: float = 0.1
    num_classes: int = 1000
    learn_sigma: bool = True
    # 0: the original DiT frequencies (exponent / half); 1: diffusers' Timesteps with
    # downscale_freq_shift=1 (exponent / (half - 1)).
    timestep_freq_shift: int = 0
    # LayerNorm eps before the MLP: 1e-6 in the original DiT, diffusers' norm_eps (1e-5) in its port
    mlp_norm_eps: float = 1e-6
    name: str = field(default="custom", compare=False)

    @property
    def out_channels(self) -> int:
        return self.in_channels * 2 if self.learn_sigma else self.in_channels

    @property
    def num_tokens(self) -> int:
        return (self.input_size // self.patch_size) ** 2

    @property
    def mlp_hidden(self) -> int:
        return int(self.hidden_size * self.mlp_ratio)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DiTConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown DiT config fields: {sorted(unknown)}")
        return cls(**data)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def timestep_frequencies(
    dim: int, freq_shift: int = 0, max_period: int = 10000, device: torch.device | None = None
) -> torch.Tensor:
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=device)
    return torch.exp(exponent / (half - freq_shift))


def timestep_embedding(t: torch.Tensor, dim: int, freq_shift: int = 0, max_period: int = 10000) -> torch.Tensor:
    freqs = timestep_frequencies(dim, freq_shift, max_period, t.device)
    args = t[:, None].float() * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, in_channels: int, hidden_size: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256, freq_shift: int = 0):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size),
        )
        self.frequency_embedding_size = frequency_embedding_size
        self.freq_shift = freq_shift

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_embedding(t, self.frequency_embedding_size, self.freq_shift))


class LabelEmbedder(nn.Module):
    """Class embedding with one extra row, the null class used for classifier-free guidance."""

    def __init__(self, num_classes: int, hidden_size: int, dropout_prob: float):
        super().__init__()
        self.embedding_table = nn.Embedding(num_classes + 1, hidden_size)
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob

    def forward(
        self, labels: torch.Tensor, train: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        if train:
            labels = self.drop(labels, generator)
        return self.embedding_table(labels)

    def drop(self, labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Training's label dropout: each label becomes the null class with ``dropout_prob``."""
        if self.dropout_prob <= 0:
            return labels
        drop = torch.rand(labels.shape[0], generator=generator, device=labels.device) < self.dropout_prob
        return torch.where(drop, torch.full_like(labels, self.num_classes), labels)


class Attention(nn.Module):
    """Multi-head self-attention written with plain matmuls so every exporter traces it."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = torch.softmax((q * self.scale) @ k.transpose(-2, -1), dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DiTBlock(nn.Module):
    """adaLN-Zero block whose two branches can be run, or replaced by a cache, one at a time."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float, mlp_norm_eps: float = 1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=mlp_norm_eps)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))

    def modulation(self, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp."""
        return self.adaLN_modulation(c).chunk(6, dim=1)

    def branch_input(self, module: str, x: torch.Tensor, mods: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The adaLN-modulated input of a branch (what lazy gates look at)."""
        if module == "attn":
            return modulate(self.norm1(x), mods[0], mods[1])
        return modulate(self.norm2(x), mods[3], mods[4])

    def branch(self, module: str, h: torch.Tensor) -> torch.Tensor:
        return self.attn(h) if module == "attn" else self.mlp(h)

    @staticmethod
    def gate(module: str, mods: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return mods[2] if module == "attn" else mods[5]

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        mods = self.modulation(c)
        for module in MODULES:
            out = self.branch(module, self.branch_input(module, x, mods))
            x = x + self.gate(module, mods).unsqueeze(1) * out
        return x


class FinalLayer(nn.Module):
    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class DiT(nn.Module):
    def __init__(self, config: DiTConfig):
        super().__init__()
        # how a DDIM step uses this model's output; set by the loader from where the weights came from
        self.sampler: SamplerSettings = PIXEL_SAMPLER
        self.config = config
        self.x_embedder = PatchEmbed(config.patch_size, config.in_channels, config.hidden_size)
        self.t_embedder = TimestepEmbedder(config.hidden_size, freq_shift=config.timestep_freq_shift)
        self.y_embedder = LabelEmbedder(config.num_classes, config.hidden_size, config.class_dropout_prob)
        self.pos_embed = nn.Parameter(torch.zeros(1, config.num_tokens, config.hidden_size), requires_grad=False)
        self.blocks = nn.ModuleList(
            DiTBlock(config.hidden_size, config.num_heads, config.mlp_ratio, config.mlp_norm_eps)
            for _ in range(config.depth)
        )
        self.final_layer = FinalLayer(config.hidden_size, config.patch_size, config.out_channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        def _basic_init(module: nn.Module) -> None:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

        self.apply(_basic_init)
        grid = int(self.config.num_tokens**0.5)
        pos = get_2d_sincos_pos_embed(self.config.hidden_size, grid)
        self.pos_embed.data.copy_(torch.from_numpy(pos).float().unsqueeze(0))
        w = self.x_embedder.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def embed(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        y: torch.Tensor,
        train: bool = False,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Token sequence and conditioning vector c = t_emb + y_emb."""
        tokens = self.x_embedder(x) + self.pos_embed
        c = self.t_embedder(t) + self.y_embedder(y, train=train, generator=generator)
        return tokens, c

    def head(self, tokens: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return unpatchify(self.final_layer(tokens, c), self.config.patch_size, self.config.out_channels)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        y: torch.Tensor,
        train: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        tokens, c = self.embed(x, t, y, train=train, generator=generator)
        for block in self.blocks:
            tokens = block(tokens, c)
        return self.head(tokens, c)

    def eps(self, out: torch.Tensor) -> torch.Tensor:
        """The noise prediction part of the output (learn_sigma models also predict variance)."""
        return out[:, : self.config.in_channels]


def unpatchify(x: torch.Tensor, p: int, c: int) -> torch.Tensor:
    """[n, (h w), (p q c)] tokens -> [n, c, (h p), (w q)] image."""
    h = w = int(x.shape[1] ** 0.5)
    x = x.reshape(x.shape[0], h, w, p, p, c)
    x = torch.einsum("nhwpqc->nchpwq", x)
    return x.reshape(x.shape[0], c, h * p, w * p)


def get_2d_sincos_pos_embed(embed_dim: int, grid_size: int) -> np.ndarray:
    grid_h = np.arange(grid_size, dtype=np.float32)
    grid_w = np.arange(grid_size, dtype=np.float32)
    grid = np.stack(np.meshgrid(grid_w, grid_h), axis=0).reshape(2, 1, grid_size, grid_size)
    emb_h = _1d_sincos(embed_dim // 2, grid[0])
    emb_w = _1d_sincos(embed_dim // 2, grid[1])
    return np.concatenate([emb_h, emb_w], axis=1)


def _1d_sincos(embed_dim: int, pos: np.ndarray) -> np.ndarray:
    omega = np.arange(embed_dim // 2, dtype=np.float64) / (embed_dim / 2.0)
    omega = 1.0 / 10000**omega
    out = np.einsum("m,d->md", pos.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def _sizes() -> dict[str, DiTConfig]:
    widths = {"S": (384, 12, 6), "B": (768, 12, 12), "L": (1024, 24, 16), "XL": (1152, 28, 16)}
    registry = {}
    for size, (hidden, depth, heads) in widths.items():
        for patch in (2, 4, 8):
            name = f"DiT-{size}/{patch}"
            registry[name] = DiTConfig(
                input_size=32,
                patch_size=patch,
                in_channels=4,
                hidden_size=hidden,
                depth=depth,
                num_heads=heads,
                num_classes=1000,
                learn_sigma=True,
                name=name,
            )
    registry["DiT-Digits"] = DiTConfig(
        input_size=8,
        patch_size=2,
        in_channels=1,
        hidden_size=128,
        depth=8,
        num_heads=4,
        num_classes=10,
        learn_sigma=False,
        name="DiT-Digits",
    )
    return registry


DiT_models: dict[str, DiTConfig] = _sizes()


def build_model(name_or_config: str | DiTConfig, **overrides) -> DiT:
    """Build a DiT by registry name (``DiT-XL/2``) or from a config."""
    if isinstance(name_or_config, str):
        if name_or_config not in DiT_models:
            raise KeyError(f"unknown DiT size {name_or_config!r}; choose one of {sorted(DiT_models)}")
        config = DiT_models[name_or_config]
    else:
        config = name_or_config
    if overrides:
        config = DiTConfig.from_dict({**config.to_dict(), **overrides})
    return DiT(config)
