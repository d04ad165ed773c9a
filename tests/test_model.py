import torch
from conftest import make_tiny_model

from lazydit.diffusion import PIXEL_SAMPLER, DDIMSchedule, linear_alphas_cumprod
from lazydit.model import MODULES, DiT_models, build_model


def test_registry_has_every_official_size_and_the_default():
    for size in ("S", "B", "L", "XL"):
        for patch in (2, 4, 8):
            assert f"DiT-{size}/{patch}" in DiT_models
    digits = DiT_models["DiT-Digits"]
    assert digits.depth >= 8 and digits.in_channels == 1 and digits.num_classes == 10


def test_official_state_dict_key_layout():
    keys = set(build_model("DiT-S/8").state_dict())
    for key in (
        "x_embedder.proj.weight",
        "pos_embed",
        "t_embedder.mlp.0.weight",
        "t_embedder.mlp.2.weight",
        "y_embedder.embedding_table.weight",
        "blocks.0.attn.qkv.weight",
        "blocks.0.attn.proj.weight",
        "blocks.0.mlp.fc1.weight",
        "blocks.0.mlp.fc2.weight",
        "blocks.0.adaLN_modulation.1.weight",
        "final_layer.adaLN_modulation.1.weight",
        "final_layer.linear.weight",
    ):
        assert key in keys
    assert build_model("DiT-S/8").y_embedder.embedding_table.num_embeddings == 1001  # null class row


def test_separately_called_branches_reproduce_the_block():
    model = make_tiny_model()
    x, t, y = torch.randn(3, 1, 8, 8), torch.tensor([5, 500, 999]), torch.tensor([0, 4, 10])
    tokens, c = model.embed(x, t, y)
    manual = tokens
    for block in model.blocks:
        mods = block.modulation(c)
        for m in MODULES:
            manual = manual + block.gate(m, mods).unsqueeze(1) * block.branch(m, block.branch_input(m, manual, mods))
    torch.testing.assert_close(model.head(manual, c), model(x, t, y), rtol=0, atol=0)


def test_ddim_timesteps_follow_dit_spacing():
    assert DDIMSchedule(50).timesteps[:3] == [980, 960, 940] and DDIMSchedule(50).timesteps[-1] == 0
    assert DDIMSchedule(20).timesteps[0] == 950
    acp = linear_alphas_cumprod()
    assert abs(acp[0] - (1 - 1e-4)) < 1e-12 and acp[-1] < 1e-4
    assert DDIMSchedule(10).alphas_prev[-1] == 1.0


def test_ddim_update_with_true_noise_lands_on_the_clean_sample():
    x0 = torch.rand(2, 1, 8, 8) * 2 - 1
    eps = torch.randn_like(x0)
    a = 0.3
    xt = a**0.5 * x0 + (1 - a) ** 0.5 * eps
    torch.testing.assert_close(PIXEL_SAMPLER.update(xt, eps, a, 1.0), x0, atol=1e-5, rtol=0)
