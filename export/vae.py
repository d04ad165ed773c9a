"""The VAE decoder written for XNNPACK: diffusers' AutoencoderKL is exported as it is, and three
of its operators are replaced, while lowering only, by formulations XNNPACK's partitioner takes
whole, so the decoder becomes one delegate instead of convolutions falling back to portable
kernels (which made a 256x256 decode take minutes):

* GroupNorm: mean and variance over the two innermost dims of a [N, groups, C/groups, -1] view
  (XNNPACK reduces only those, with keepdim);
* attention: bmm, softmax, bmm (the stock decomposition's masked-row checks do not lower);
* 2x nearest upsampling: each pixel repeated by concatenating views (XNNPACK's cat counts
  distinct inputs, so every operand is its own view).
Every formulation computes the same values as the operator it replaces, up to float rounding."""

from __future__ import annotations

import math

import torch

aten = torch.ops.aten


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5, cudnn_enabled=True):
    n, c = x.shape[:2]
    grouped = x.reshape(n, num_groups, c // num_groups, -1)
    centred = grouped - grouped.mean(dim=(2, 3), keepdim=True)
    variance = (centred * centred).mean(dim=(2, 3), keepdim=True)
    y = (centred * torch.rsqrt(variance + eps)).reshape(x.shape)
    per_channel = (1, c) + (1,) * (x.dim() - 2)
    if weight is not None:
        y = y * weight.reshape(per_channel)
    if bias is not None:
        y = y + bias.reshape(per_channel)
    return y


def attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    if attn_mask is not None or is_causal or dropout_p:
        raise NotImplementedError("the VAE's attention has no mask, causality or dropout")
    *batch, length, dim = q.shape
    scale = 1 / math.sqrt(dim) if scale is None else scale
    q3, k3, v3 = q.reshape(-1, length, dim), k.reshape(-1, k.shape[-2], dim), v.reshape(-1, v.shape[-2], v.shape[-1])
    weights = torch.softmax(torch.bmm(q3, k3.transpose(1, 2)) * scale, dim=-1)
    return torch.bmm(weights, v3).reshape(*batch, length, v.shape[-1])


def upsample_nearest_2x(x, output_size, scale_factors):
    n, c, h, w = x.shape
    size = output_size if output_size is not None else (int(h * scale_factors[0]), int(w * scale_factors[1]))
    if tuple(size) != (2 * h, 2 * w):
        raise NotImplementedError(f"only 2x nearest upsampling is rewritten, not {(h, w)} -> {tuple(size)}")
    rows = torch.cat([x.reshape(n, c, h, w, 1), x.reshape(n, c, h, w, 1)], dim=4).reshape(n, c, h, 1, 2 * w)
    return torch.cat([rows, rows.reshape(n, c, h, 1, 2 * w)], dim=3).reshape(n, c, 2 * h, 2 * w)


XNNPACK_DECOMPOSITIONS = {
    aten.group_norm.default: group_norm,
    aten.scaled_dot_product_attention.default: attention,
    aten.upsample_nearest2d.vec: upsample_nearest_2x,
}
