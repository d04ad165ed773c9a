"""Checkpoint loading: every supported layout reproduces the source model; bad files raise CheckpointError.

The diffusers files are written by ``to_diffusers`` below, which follows the key layout of
diffusers' ``scripts/convert_dit_to_diffusers.py`` / ``DiTTransformer2DModel`` and does not use
the loader's own mapping. ``diffusers_forward`` is a functional re-implementation of
``DiTTransformer2DModel.forward`` over those keys, used as an independent reference.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from lazydit.checkpoints import CheckpointError, infer_config, load_model, save_model
from lazydit.model import DiT, DiTConfig, timestep_embedding

TINY = DiTConfig(
    input_size=8,
    patch_size=2,
    in_channels=4,
    hidden_size=64,
    depth=2,
    num_heads=4,
    num_classes=10,
    learn_sigma=True,
    name="tiny",
)
# hidden 128 is a registry width (DiT-Digits, 4 heads), so heads can be inferred without a size.
WIDE = dataclasses.replace(TINY, hidden_size=128, name="wide")


def make_model(config: DiTConfig = TINY, seed: int = 0) -> DiT:
    """A DiT whose every weight (adaLN-Zero and final layers included) is random and non-zero."""
    torch.manual_seed(seed)
    model = DiT(config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name != "pos_embed":
                param.add_(torch.randn_like(param) * 0.05)
    return model.eval()


def inputs(config: DiTConfig = TINY, batch: int = 3):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, config.in_channels, config.input_size, config.input_size, generator=g)
    t = torch.tensor([0.0, 17.0, 999.0])[:batch]
    y = torch.tensor([0, 3, config.num_classes])[:batch]  # the last one is the null class
    return x, t, y


@torch.no_grad()
def run(model: DiT, config: DiTConfig = TINY) -> torch.Tensor:
    return model(*inputs(config))


def assert_same_model(loaded: DiT, source: DiT) -> None:
    assert loaded.config == source.config
    for (k1, v1), (k2, v2) in zip(loaded.state_dict().items(), source.state_dict().items(), strict=True):
        assert k1 == k2
        assert torch.equal(v1, v2), k1
    torch.testing.assert_close(run(loaded, source.config), run(source, source.config), rtol=0, atol=0)


# ----------------------------------------------------------------------------- diffusers reference


def to_diffusers(official: dict[str, torch.Tensor], depth: int) -> dict[str, torch.Tensor]:
    """Official DiT keys -> diffusers DiTTransformer2DModel keys (as in convert_dit_to_diffusers.py)."""
    o = {k: v.detach().clone() for k, v in official.items()}
    sd = {
        "pos_embed.proj.weight": o["x_embedder.proj.weight"],
        "pos_embed.proj.bias": o["x_embedder.proj.bias"],
        "proj_out_1.weight": o["final_layer.adaLN_modulation.1.weight"],
        "proj_out_1.bias": o["final_layer.adaLN_modulation.1.bias"],
        "proj_out_2.weight": o["final_layer.linear.weight"],
        "proj_out_2.bias": o["final_layer.linear.bias"],
    }
    for d in range(depth):
        blk = f"transformer_blocks.{d}"
        sd[f"{blk}.norm1.emb.timestep_embedder.linear_1.weight"] = o["t_embedder.mlp.0.weight"].clone()
        sd[f"{blk}.norm1.emb.timestep_embedder.linear_1.bias"] = o["t_embedder.mlp.0.bias"].clone()
        sd[f"{blk}.norm1.emb.timestep_embedder.linear_2.weight"] = o["t_embedder.mlp.2.weight"].clone()
        sd[f"{blk}.norm1.emb.timestep_embedder.linear_2.bias"] = o["t_embedder.mlp.2.bias"].clone()
        sd[f"{blk}.norm1.emb.class_embedder.embedding_table.weight"] = o["y_embedder.embedding_table.weight"].clone()
        sd[f"{blk}.norm1.linear.weight"] = o[f"blocks.{d}.adaLN_modulation.1.weight"]
        sd[f"{blk}.norm1.linear.bias"] = o[f"blocks.{d}.adaLN_modulation.1.bias"]
        q, k, v = torch.chunk(o[f"blocks.{d}.attn.qkv.weight"], 3, dim=0)
        qb, kb, vb = torch.chunk(o[f"blocks.{d}.attn.qkv.bias"], 3, dim=0)
        sd[f"{blk}.attn1.to_q.weight"], sd[f"{blk}.attn1.to_q.bias"] = q.clone(), qb.clone()
        sd[f"{blk}.attn1.to_k.weight"], sd[f"{blk}.attn1.to_k.bias"] = k.clone(), kb.clone()
        sd[f"{blk}.attn1.to_v.weight"], sd[f"{blk}.attn1.to_v.bias"] = v.clone(), vb.clone()
        sd[f"{blk}.attn1.to_out.0.weight"] = o[f"blocks.{d}.attn.proj.weight"]
        sd[f"{blk}.attn1.to_out.0.bias"] = o[f"blocks.{d}.attn.proj.bias"]
        sd[f"{blk}.ff.net.0.proj.weight"] = o[f"blocks.{d}.mlp.fc1.weight"]
        sd[f"{blk}.ff.net.0.proj.bias"] = o[f"blocks.{d}.mlp.fc1.bias"]
        sd[f"{blk}.ff.net.2.weight"] = o[f"blocks.{d}.mlp.fc2.weight"]
        sd[f"{blk}.ff.net.2.bias"] = o[f"blocks.{d}.mlp.fc2.bias"]
    return {k: v.contiguous() for k, v in sd.items()}


def diffusers_timestep_proj(
    t: torch.Tensor,
    dim: int = 256,
    flip_sin_to_cos: bool = True,
    downscale_freq_shift: float = 1,
    max_period: int = 10000,
) -> torch.Tensor:
    """diffusers.models.embeddings.get_timestep_embedding (as called by CombinedTimestepLabelEmbeddings)."""
    half_dim = dim // 2
    exponent = -math.log(max_period) * torch.arange(0, half_dim, dtype=torch.float32)
    exponent = exponent / (half_dim - downscale_freq_shift)
    emb = t[:, None].float() * torch.exp(exponent)[None, :]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half_dim:], emb[:, :half_dim]], dim=-1)
    return emb


def original_timestep_embedding(t: torch.Tensor, dim: int = 256, max_period: int = 10000) -> torch.Tensor:
    """facebookresearch/DiT models.py TimestepEmbedder.timestep_embedding."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(start=0, end=half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def diffusers_pos_embed(embed_dim: int, grid: int) -> torch.Tensor:
    """diffusers get_2d_sincos_pos_embed(output_type="pt") with base_size = grid, interpolation 1."""
    coords = torch.arange(grid, dtype=torch.float32)
    mesh = torch.stack(torch.meshgrid(coords, coords, indexing="xy"), dim=0).reshape(2, 1, grid, grid)

    def one_d(d: int, pos: torch.Tensor) -> torch.Tensor:
        omega = torch.arange(d // 2, dtype=torch.float64) / (d / 2.0)
        out = torch.outer(pos.reshape(-1), 1.0 / 10000**omega)
        return torch.cat([torch.sin(out), torch.cos(out)], dim=1)

    return torch.cat([one_d(embed_dim // 2, mesh[0]), one_d(embed_dim // 2, mesh[1])], dim=1).float()[None]


# diffusers' BasicTransformerBlock normalises the MLP branch with norm3 = LayerNorm(eps=norm_eps), default 1e-5;
# the original DiT uses 1e-6 there. Loaded diffusers checkpoints carry the 1e-5 (DiTConfig.mlp_norm_eps).
DIFFUSERS_MLP_NORM_EPS = 1e-5


def diffusers_forward(sd, x, t, y, *, heads: int, patch: int, out_channels: int, mlp_norm_eps: float):
    """DiTTransformer2DModel.forward written out over the diffusers state dict."""
    h = F.conv2d(x, sd["pos_embed.proj.weight"], sd["pos_embed.proj.bias"], stride=patch)
    h = h.flatten(2).transpose(1, 2)
    dim = h.shape[-1]
    h = h + diffusers_pos_embed(dim, x.shape[-1] // patch)

    def conditioning(i: int) -> torch.Tensor:  # each block's own AdaLayerNormZero.emb
        e = f"transformer_blocks.{i}.norm1.emb."
        te = F.linear(
            diffusers_timestep_proj(t),
            sd[e + "timestep_embedder.linear_1.weight"],
            sd[e + "timestep_embedder.linear_1.bias"],
        )
        te = F.linear(
            F.silu(te), sd[e + "timestep_embedder.linear_2.weight"], sd[e + "timestep_embedder.linear_2.bias"]
        )
        return te + sd[e + "class_embedder.embedding_table.weight"][y]

    def heads_of(z: torch.Tensor) -> torch.Tensor:
        return z.reshape(z.shape[0], z.shape[1], heads, -1).transpose(1, 2)

    depth = len({k.split(".")[1] for k in sd if k.startswith("transformer_blocks.")})
    for i in range(depth):
        b = f"transformer_blocks.{i}."
        mods = F.linear(F.silu(conditioning(i)), sd[b + "norm1.linear.weight"], sd[b + "norm1.linear.bias"])
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mods.chunk(6, dim=1)
        n = F.layer_norm(h, (dim,), eps=1e-6) * (1 + scale_msa[:, None]) + shift_msa[:, None]
        q, k, v = (heads_of(F.linear(n, sd[b + f"attn1.to_{c}.weight"], sd[b + f"attn1.to_{c}.bias"])) for c in "qkv")
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(h.shape)
        h = h + gate_msa.unsqueeze(1) * F.linear(a, sd[b + "attn1.to_out.0.weight"], sd[b + "attn1.to_out.0.bias"])
        n = F.layer_norm(h, (dim,), eps=mlp_norm_eps) * (1 + scale_mlp[:, None]) + shift_mlp[:, None]
        f = F.gelu(F.linear(n, sd[b + "ff.net.0.proj.weight"], sd[b + "ff.net.0.proj.bias"]), approximate="tanh")
        h = h + gate_mlp.unsqueeze(1) * F.linear(f, sd[b + "ff.net.2.weight"], sd[b + "ff.net.2.bias"])
    shift, scale = F.linear(F.silu(conditioning(0)), sd["proj_out_1.weight"], sd["proj_out_1.bias"]).chunk(2, dim=1)
    h = F.layer_norm(h, (dim,), eps=1e-6) * (1 + scale[:, None]) + shift[:, None]
    h = F.linear(h, sd["proj_out_2.weight"], sd["proj_out_2.bias"])
    g = int(h.shape[1] ** 0.5)
    h = h.reshape(-1, g, g, patch, patch, out_channels)
    return torch.einsum("nhwpqc->nchpwq", h).reshape(-1, out_channels, g * patch, g * patch)


# ----------------------------------------------------------------------------- the test fixtures themselves


def tiny_diffusers_forward(sd, x, t, y):
    """The reference forward of a TINY model in diffusers' layout."""
    return diffusers_forward(
        sd,
        x,
        t,
        y,
        heads=TINY.num_heads,
        patch=TINY.patch_size,
        out_channels=TINY.out_channels,
        mlp_norm_eps=DIFFUSERS_MLP_NORM_EPS,
    )


def test_source_models_are_non_trivial():
    a, b = make_model(seed=0), make_model(seed=1)
    out = run(a)
    assert out.shape == (3, TINY.out_channels, 8, 8)
    assert not torch.allclose(out, run(b), atol=1e-3)
    x, t, y = inputs()
    with torch.no_grad():  # timestep and class both change the output
        assert not torch.allclose(a(x, t + 5, y), out, atol=1e-4)
        assert not torch.allclose(a(x, t, (y + 1) % 10), out, atol=1e-4)


def test_timestep_freq_shift_reproduces_diffusers_and_original_embeddings():
    t = torch.tensor([0.0, 1.0, 17.0, 500.0, 999.0])
    ours_diffusers = timestep_embedding(t, 256, freq_shift=1)
    ours_original = timestep_embedding(t, 256, freq_shift=0)
    torch.testing.assert_close(ours_diffusers, diffusers_timestep_proj(t))
    torch.testing.assert_close(ours_original, original_timestep_embedding(t))
    # the two really differ (exponent / 127 vs / 128), and cos comes first in both
    assert (ours_diffusers - ours_original).abs().max() > 1e-2
    torch.testing.assert_close(ours_diffusers[:, 0], torch.cos(t))
    torch.testing.assert_close(ours_diffusers[:, 128], torch.sin(t))


def test_model_matches_diffusers_reference_forward():
    source = make_model(dataclasses.replace(TINY, timestep_freq_shift=1, mlp_norm_eps=DIFFUSERS_MLP_NORM_EPS))
    sd = to_diffusers(source.state_dict(), TINY.depth)
    x, t, y = inputs()
    ref = tiny_diffusers_forward(sd, x, t, y)
    torch.testing.assert_close(run(source), ref, rtol=1e-5, atol=1e-5)
    # the comparison is sensitive: the original frequencies (shift 0) do not match diffusers
    wrong = DiT(TINY)
    wrong.load_state_dict(source.state_dict())
    assert not torch.allclose(run(wrong), ref, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- official .pt


def test_official_flat_state_dict(tmp_path):
    source = make_model()
    torch.save(source.state_dict(), tmp_path / "DiT-tiny.pt")
    assert_same_model(load_model(tmp_path / "DiT-tiny.pt", size=TINY), source)


def test_official_flat_state_dict_infers_config(tmp_path):
    source = make_model(WIDE)
    torch.save(source.state_dict(), tmp_path / "wide.pt")
    loaded = load_model(tmp_path / "wide.pt")
    assert loaded.config.name == "wide"
    assert_same_model(loaded, source)


def test_official_training_checkpoint_uses_ema(tmp_path):
    ema, raw = make_model(seed=0), make_model(seed=1)
    opt = torch.optim.AdamW(raw.parameters(), lr=1e-4)
    raw(*inputs()).square().mean().backward()
    opt.step()
    checkpoint = {
        "model": raw.state_dict(),
        "ema": ema.state_dict(),
        "opt": opt.state_dict(),
        "args": argparse.Namespace(model="DiT-S/2", image_size=256, global_batch_size=256),
    }
    torch.save(checkpoint, tmp_path / "0050000.pt")
    loaded = load_model(tmp_path / "0050000.pt", size=TINY)
    assert_same_model(loaded, ema)
    assert not torch.allclose(run(loaded), run(raw), atol=1e-3)


def test_training_checkpoint_without_ema_uses_model(tmp_path):
    source = make_model()
    torch.save({"model": source.state_dict(), "step": 10}, tmp_path / "ckpt.pt")
    assert_same_model(load_model(tmp_path / "ckpt.pt", size=TINY), source)


def test_legacy_pickle_format(tmp_path):
    source = make_model()
    torch.save(source.state_dict(), tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    assert_same_model(load_model(tmp_path / "old.pt", size=TINY), source)


# ----------------------------------------------------------------------------- diffusers


def test_diffusers_safetensors(tmp_path):
    source = make_model(dataclasses.replace(TINY, timestep_freq_shift=1, mlp_norm_eps=DIFFUSERS_MLP_NORM_EPS))
    sd = to_diffusers(source.state_dict(), TINY.depth)
    save_file(sd, str(tmp_path / "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})
    loaded = load_model(tmp_path / "diffusion_pytorch_model.safetensors", size=TINY)
    assert loaded.config.timestep_freq_shift == 1
    assert_same_model(loaded, source)
    x, t, y = inputs()
    ref = tiny_diffusers_forward(sd, x, t, y)
    torch.testing.assert_close(run(loaded), ref, rtol=1e-5, atol=1e-5)


def test_diffusers_bin_with_config_json(tmp_path):
    source = make_model(dataclasses.replace(TINY, timestep_freq_shift=1, mlp_norm_eps=DIFFUSERS_MLP_NORM_EPS))
    torch.save(to_diffusers(source.state_dict(), TINY.depth), tmp_path / "diffusion_pytorch_model.bin")
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "_class_name": "DiTTransformer2DModel",
                "sample_size": 8,
                "patch_size": 2,
                "in_channels": 4,
                "out_channels": 8,
                "num_layers": 2,
                "num_attention_heads": 4,
                "attention_head_dim": 16,
                "num_embeds_ada_norm": 10,
                "norm_type": "ada_norm_zero",
            }
        )
    )
    loaded = load_model(tmp_path / "diffusion_pytorch_model.bin")  # size and heads from config.json
    assert_same_model(loaded, source)


def test_diffusers_infers_config_from_registry_width(tmp_path):
    config = dataclasses.replace(
        WIDE, in_channels=1, learn_sigma=False, timestep_freq_shift=1, mlp_norm_eps=DIFFUSERS_MLP_NORM_EPS
    )
    source = make_model(config)
    save_file(to_diffusers(source.state_dict(), config.depth), str(tmp_path / "digits.safetensors"))
    assert_same_model(load_model(tmp_path / "digits.safetensors"), source)


def test_diffusers_loader_detects_a_wrong_mapping(tmp_path):
    """Swapping q and k (or the two proj_out_1 halves) must change the loaded model's output."""
    source = make_model(dataclasses.replace(TINY, timestep_freq_shift=1, mlp_norm_eps=DIFFUSERS_MLP_NORM_EPS))
    sd = to_diffusers(source.state_dict(), TINY.depth)
    swapped = dict(sd)
    swapped["transformer_blocks.0.attn1.to_q.weight"] = sd["transformer_blocks.0.attn1.to_k.weight"]
    swapped["transformer_blocks.0.attn1.to_k.weight"] = sd["transformer_blocks.0.attn1.to_q.weight"]
    save_file(swapped, str(tmp_path / "qk.safetensors"))
    assert not torch.allclose(run(load_model(tmp_path / "qk.safetensors", size=TINY)), run(source), atol=1e-4)
    flipped = dict(sd)
    for kind in ("weight", "bias"):
        shift, scale = sd[f"proj_out_1.{kind}"].chunk(2, dim=0)
        flipped[f"proj_out_1.{kind}"] = torch.cat([scale, shift]).contiguous()
    save_file(flipped, str(tmp_path / "head.safetensors"))
    assert not torch.allclose(run(load_model(tmp_path / "head.safetensors", size=TINY)), run(source), atol=1e-4)


def test_diffusers_embedder_copies_must_agree(tmp_path):
    sd = to_diffusers(make_model().state_dict(), TINY.depth)
    sd["transformer_blocks.1.norm1.emb.class_embedder.embedding_table.weight"] += 0.01
    save_file(sd, str(tmp_path / "finetuned.safetensors"))
    with pytest.raises(CheckpointError, match=r"block 1.*y_embedder\.embedding_table"):
        load_model(tmp_path / "finetuned.safetensors", size=TINY)


@pytest.mark.parametrize(
    "change, message",
    [
        ("drop", r"missing key 'transformer_blocks\.1\.attn1\.to_v\.bias'"),
        ("extra", r"unexpected keys \['transformer_blocks\.0\.norm3\.weight'\]"),
    ],
)
def test_diffusers_wrong_keys(tmp_path, change, message):
    sd = to_diffusers(make_model().state_dict(), TINY.depth)
    if change == "drop":
        del sd["transformer_blocks.1.attn1.to_v.bias"]
    else:
        sd["transformer_blocks.0.norm3.weight"] = torch.ones(64)
    save_file(sd, str(tmp_path / "bad.safetensors"))
    with pytest.raises(CheckpointError, match=message):
        load_model(tmp_path / "bad.safetensors", size=TINY)


# ----------------------------------------------------------------------------- own format


@pytest.mark.parametrize("shift", [0, 1])
def test_own_format_round_trip(tmp_path, shift):
    source = make_model(dataclasses.replace(TINY, timestep_freq_shift=shift))
    path = save_model(source, tmp_path / "model", metadata={"note": "x"})
    assert path == tmp_path / "model.safetensors"
    assert json.loads((tmp_path / "model.json").read_text())["note"] == "x"
    assert_same_model(load_model(path), source)
    assert_same_model(load_model(tmp_path / "model.json"), source)
    assert load_model(path).config.name == "tiny"


def test_own_format_half_precision(tmp_path):
    source = make_model()
    path = save_model(source, tmp_path / "half", dtype=torch.float16)
    loaded = load_model(path)
    assert loaded.config == source.config
    torch.testing.assert_close(run(loaded), run(source), rtol=2e-2, atol=2e-2)


def _own(tmp_path, edit) -> str:
    path = save_model(make_model(), tmp_path / "model")
    meta = json.loads((tmp_path / "model.json").read_text())
    (tmp_path / "model.json").write_text(edit(meta))
    return path


def _set(meta, key, value):
    meta["config"][key] = value
    return json.dumps(meta)


def _drop(meta, *keys):
    for key in keys:
        del meta["config"][key]
    return json.dumps(meta)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: _drop(m, "num_heads"), r"missing fields \['num_heads'\]"),
        (
            lambda m: _drop(m, "timestep_freq_shift", "learn_sigma"),
            r"missing fields \['learn_sigma', 'timestep_freq_shift'\]",
        ),
        (lambda m: _set(m, "heads", 4), r"unknown fields \['heads'\]"),
        (lambda m: _set(m, "hidden_size", "64"), r"hidden_size must be int"),
        (lambda m: _set(m, "learn_sigma", 1), r"learn_sigma must be bool"),
        (lambda m: _set(m, "num_heads", 5), r"not divisible by num_heads 5"),
        (lambda m: _set(m, "depth", 3), r"missing keys \['blocks\.2\."),
        (lambda m: _set(m, "num_classes", 20), r"y_embedder\.embedding_table\.weight has shape \(11, 64\)"),
        (lambda m: json.dumps(m)[:-10], r"not valid JSON"),
        (lambda m: json.dumps(m["config"]), r"no \"config\" object"),
        (lambda m: json.dumps([1, 2]), r"no \"config\" object"),
    ],
)
def test_own_format_bad_config(tmp_path, edit, message):
    path = _own(tmp_path, edit)
    with pytest.raises(CheckpointError, match=message):
        load_model(path)


def test_own_format_without_its_config(tmp_path):
    path = save_model(make_model(), tmp_path / "model")
    (tmp_path / "model.json").unlink()
    with pytest.raises(CheckpointError, match=r"config .*model\.json is missing"):
        load_model(path)


# ----------------------------------------------------------------------------- bad checkpoints


def test_wrong_keys(tmp_path):
    state = make_model().state_dict()
    state["blocks.0.attn.qkv_weight"] = state.pop("blocks.0.attn.qkv.weight")
    torch.save(state, tmp_path / "renamed.pt")
    with pytest.raises(
        CheckpointError,
        match=r"missing keys \['blocks\.0\.attn\.qkv\.weight'\].*"
        r"unexpected keys \['blocks\.0\.attn\.qkv_weight'\]",
    ):
        load_model(tmp_path / "renamed.pt", size=TINY)


def test_unrecognised_layout(tmp_path):
    torch.save({"encoder.weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="unrecognised key layout"):
        load_model(tmp_path / "other.pt")


def test_wrong_shape(tmp_path):
    state = make_model().state_dict()
    state["blocks.1.attn.proj.weight"] = torch.zeros(64, 32)
    torch.save(state, tmp_path / "shape.pt")
    with pytest.raises(
        CheckpointError,
        match=r"blocks\.1\.attn\.proj\.weight has shape \(64, 32\), "
        r"the model expects \(64, 64\)",
    ):
        load_model(tmp_path / "shape.pt", size=TINY)


def test_wrong_size_for_checkpoint(tmp_path):
    torch.save(make_model().state_dict(), tmp_path / "tiny.pt")
    with pytest.raises(CheckpointError, match=r"has shape \(1, 16, 64\), the model expects \(1, 16, 128\)"):
        load_model(tmp_path / "tiny.pt", size=dataclasses.replace(TINY, hidden_size=128))
    with pytest.raises(CheckpointError, match=r"unknown model size 'DiT-Q/2'"):
        load_model(tmp_path / "tiny.pt", size="DiT-Q/2")


def test_heads_cannot_be_inferred_for_unknown_width(tmp_path):
    torch.save(make_model().state_dict(), tmp_path / "tiny.pt")
    with pytest.raises(CheckpointError, match="number of attention heads for hidden size 64"):
        load_model(tmp_path / "tiny.pt")


def test_infer_config_reads_shapes():
    config = dataclasses.replace(
        WIDE, in_channels=3, input_size=12, depth=3, num_classes=7, learn_sigma=False, mlp_ratio=2.0
    )
    state = DiT(config).state_dict()
    assert infer_config(state, name="wide") == config
    del state["pos_embed"]
    with pytest.raises(CheckpointError, match="cannot tell the image size"):
        infer_config(state)
    assert infer_config(state, input_size=12) == config


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
@pytest.mark.parametrize("keep", [0.5, 0.99, 0.01])
def test_truncated_pt(tmp_path, fmt, keep):
    path = tmp_path / "model.pt"
    torch.save(make_model().state_dict(), path, _use_new_zipfile_serialization=fmt == "zip")
    data = path.read_bytes()
    path.write_bytes(data[: max(1, int(len(data) * keep))])
    with pytest.raises(CheckpointError, match=r"model\.pt: not a readable PyTorch checkpoint"):
        load_model(path, size=TINY)


@pytest.mark.parametrize("keep", [0.5, 0.99, 30])
def test_truncated_safetensors(tmp_path, keep):
    path = tmp_path / "model.safetensors"
    save_file(to_diffusers(make_model().state_dict(), TINY.depth), str(path))
    data = path.read_bytes()
    path.write_bytes(data[: keep if isinstance(keep, int) else int(len(data) * keep)])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: not a readable safetensors file"):
        load_model(path, size=TINY)


@pytest.mark.parametrize("name", ["model.pt", "model.safetensors", "model.bin"])
@pytest.mark.parametrize("seed", range(4))
def test_garbage_bytes(tmp_path, name, seed):
    path = tmp_path / name
    path.write_bytes(random.Random(seed).randbytes(4096))
    with pytest.raises(CheckpointError) as err:
        load_model(path, size=TINY)
    assert name in str(err.value)
    assert "refused" not in str(err.value)


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty file"):
        load_model(tmp_path / "empty.pt")
    with pytest.raises(CheckpointError, match="no such file"):
        load_model(tmp_path / "absent.pt")


class CustomWeights:
    def __init__(self):
        self.weight = torch.ones(3)


class OpensAFile:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickle_with_custom_class_is_refused(tmp_path):
    state = make_model().state_dict()
    torch.save({**state, "extra": CustomWeights()}, tmp_path / "custom.pt")
    with pytest.raises(CheckpointError, match=r"refused.*CustomWeights"):
        load_model(tmp_path / "custom.pt", size=TINY)


def test_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"ema": OpensAFile(marker)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match=r"refused.*open"):
        load_model(tmp_path / "evil.pt", size=TINY)
    assert not marker.exists()


@pytest.mark.parametrize(
    "obj, message",
    [
        ({"step": 3, "note": "hello"}, r"holds no tensors"),
        ({"ema": {}, "step": 3}, r"holds no tensors"),
        ([1, 2, 3], r"holds a list, not a state dict"),
        (torch.zeros(3), r"holds a Tensor, not a state dict"),
        ({"x_embedder.proj.weight": torch.zeros(1), "step": 3}, r"entry 'step' is a int"),
    ],
)
def test_pt_without_a_state_dict(tmp_path, obj, message):
    torch.save(obj, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match=message):
        load_model(tmp_path / "odd.pt", size=TINY)


def test_diffusers_stored_position_table_is_used(tmp_path):
    """PatchEmbed(pos_embed_max_size=...) stores its table as pos_embed.pos_embed."""
    source = make_model(dataclasses.replace(WIDE, timestep_freq_shift=1, mlp_norm_eps=DIFFUSERS_MLP_NORM_EPS))
    with torch.no_grad():
        source.pos_embed.add_(torch.randn_like(source.pos_embed) * 0.1)  # differs from the recomputed table
    sd = to_diffusers(source.state_dict(), WIDE.depth)
    sd["pos_embed.pos_embed"] = source.pos_embed.detach().clone()
    save_file(sd, str(tmp_path / "stored.safetensors"))
    assert_same_model(load_model(tmp_path / "stored.safetensors", size=WIDE), source)
