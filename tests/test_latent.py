"""Real latent DiTs as they are published, against the peers' own code: a diffusers pipeline folder
(DiTTransformer2DModel + AutoencoderKL + DDIMScheduler, random weights, written by diffusers'
save_pretrained) sampled by diffusers' own DiTPipeline, and an official-layout checkpoint."""

import json

import numpy as np
import pytest
import torch
from conftest import make_tiny_model, run_cli

from lazydit.model import DiTConfig

diffusers = pytest.importorskip("diffusers")

CLASSES = (3, 991)
SEED = 2


def _randomize(module: torch.nn.Module, seed: int, std: float) -> None:
    """diffusers zero-initialises parts of its DiT; a comparison needs every weight to matter."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * std)


def write_pipeline(folder, clip_sample: bool, vae_weights: bool = True):
    transformer = diffusers.DiTTransformer2DModel(
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=4,
        out_channels=8,
        num_layers=2,
        sample_size=8,
        patch_size=2,
        num_embeds_ada_norm=1000,  # DiTPipeline's null class is 1000
    )
    _randomize(transformer, 0, 0.05)
    # every block carries a copy of the timestep and class embedders; published checkpoints keep them equal
    first = transformer.transformer_blocks[0].norm1.emb
    for block in transformer.transformer_blocks[1:]:
        block.norm1.emb.load_state_dict(first.state_dict())
    vae = diffusers.AutoencoderKL(
        block_out_channels=(32, 32), layers_per_block=1, latent_channels=4, norm_num_groups=8, sample_size=16
    )
    _randomize(vae, 1, 0.2)  # large enough that the picture depends on the latent
    scheduler = diffusers.DDIMScheduler(beta_schedule="linear", clip_sample=clip_sample, set_alpha_to_one=True)
    pipe = diffusers.DiTPipeline(transformer=transformer.eval(), vae=vae.eval(), scheduler=scheduler)
    pipe.save_pretrained(folder)
    if not vae_weights:
        for f in (folder / "vae").glob("diffusion_pytorch_model.*"):
            f.unlink()
    return pipe


def pipeline_images(pipe, labels, seed: int, steps: int = 20, cfg: float = 1.5) -> np.ndarray:
    """diffusers' own DiTPipeline, sample i drawn from lazydit's noise for index i (the same
    generator seed), decoded to uint8 as its numpy_to_pil does."""
    pipe.set_progress_bar_config(disable=True)
    out = []
    for i, label in enumerate(labels):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + i)
        image = pipe(class_labels=[int(label)], guidance_scale=cfg, generator=gen, num_inference_steps=steps,
                     output_type="np").images  # fmt: skip
        out.append((image[0] * 255).round().astype(np.uint8))
    return np.stack(out)


def psnr(a, b) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="module", params=[False, True], ids=["clip_sample=False", "clip_sample=True"])
def pipeline(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pipeline")
    pipe = write_pipeline(folder, clip_sample=request.param)
    return folder, pipe, request.param


def test_lazydit_sample_on_a_pipeline_folder_is_diffusers_ditpipeline(pipeline, tmp_path):
    folder, pipe, clip = pipeline
    classes = ",".join(map(str, CLASSES))
    common = ["--model", str(folder), "--classes", classes, "--per-class", "1", "--steps", "20", "--cfg", "1.5"]
    run_cli("sample", *common, "--seed", str(SEED), "--out", str(tmp_path / "ours"))
    with np.load(tmp_path / "ours" / "samples.npz") as data:
        ours, labels = data["images"], data["labels"]
    assert labels.tolist() == list(CLASSES) and ours.shape == (2, 16, 16, 3) and ours.dtype == np.uint8
    theirs = pipeline_images(pipe, labels, SEED)
    assert psnr(ours, theirs) >= 40, psnr(ours, theirs)
    # negative control: the other clip setting is a different sampler and must not match
    flip = "--no-clip-x0" if clip else "--clip-x0"
    run_cli("sample", *common, "--seed", str(SEED), flip, "--out", str(tmp_path / "flipped"))
    with np.load(tmp_path / "flipped" / "samples.npz") as data:
        assert psnr(data["images"], theirs) < 30


def test_a_pipeline_folder_exports_in_fp16_with_its_vae_decoder_in_fp16(pipeline, tmp_path):
    folder, _, clip = pipeline
    if not clip:
        pytest.skip("one pipeline folder is enough for the fp16 decoder")
    out = tmp_path / "bundle"
    run_cli("export", "--model", str(folder), "--steps", "4", "--formats", "executorch", "--precision", "fp16",
            "--out", str(out))  # fmt: skip
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["precision"]["name"] == "fp16" and "decode" in manifest["methods"]
    report = json.loads(run_cli("verify", "--bundle", str(out), "--backend", "executorch").stdout)
    assert report["passed"] and report["floor_db"] == manifest["golden"]["floor_db"]


def test_a_pipeline_folder_exports_and_its_decoded_golden_image_is_the_pipelines(pipeline, tmp_path):
    folder, pipe, clip = pipeline
    if clip:
        pytest.skip("one clip setting is enough for the exporter; sampling covers both")
    out = tmp_path / "bundle"
    label = CLASSES[1]
    run_cli("export", "--model", str(folder), "--steps", "20", "--formats", "executorch,coreml,onnx",
            "--label", str(label), "--seed", str(SEED), "--out", str(out))  # fmt: skip
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["image"] == {"height": 16, "width": 16, "channels": 3}
    assert manifest["slots"]["image"]["shape"] == [1, 16, 16, 3]
    assert manifest["sampler"]["clip_x0"] is False and manifest["sampler"]["eps_after_clip"] == "model"
    assert manifest["model"]["vae"]["scaling_factor"] == pytest.approx(pipe.vae.config.scaling_factor)
    for backend in ("onnxruntime", "executorch"):
        report = json.loads(run_cli("verify", "--bundle", str(out), "--backend", backend).stdout)
        assert report["passed"] and report["min_psnr_db"] >= 40
    from lazydit.runtime.tensorfile import read_tensors

    golden = read_tensors(out / "golden.lzt")["decode/out/image"]
    theirs = pipeline_images(pipe, [label], SEED)
    assert psnr(golden, theirs) >= 40, psnr(golden, theirs)


OFFICIAL = DiTConfig(input_size=8, patch_size=2, in_channels=4, hidden_size=384, depth=2, num_heads=6,
                     num_classes=10, learn_sigma=True, name="official")  # fmt: skip


def official_ddim(model, noise, label, steps: int, cfg: float, clip: bool, guided: int) -> torch.Tensor:
    """DDIM as the official DiT scripts run it, written here from the method (forward_with_cfg
    guides the first ``guided`` channels; the rest keeps the conditional estimate)."""
    from lazydit.diffusion import DDIMSchedule

    schedule, x = DDIMSchedule(steps), noise.clone()
    with torch.no_grad():
        for k in range(steps):
            s = schedule.scalars(k)
            out = model(torch.cat([x, x]), torch.full((2,), s["t"]), torch.tensor([label, model.config.num_classes]))
            eps = out[:, : model.config.in_channels]
            cond, uncond = eps[:1], eps[1:]
            eps = cond.clone()
            eps[:, :guided] = uncond[:, :guided] + cfg * (cond[:, :guided] - uncond[:, :guided])
            a, a_prev = torch.tensor(s["alpha"]), torch.tensor(s["alpha_prev"])
            x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
            if clip:
                x0 = x0.clamp(-1, 1)
            eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
            x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    return x


@pytest.mark.parametrize(
    "flags, clip, guided",
    [([], False, 3), (["--clip-x0", "--guided-channels", "0"], True, None)],
    ids=["official choices", "flags switched"],
)
def test_an_official_checkpoint_samples_as_the_official_code_and_says_so_in_the_manifest(tmp_path, flags, clip, guided):
    from lazydit.diffusion import initial_noise
    from lazydit.executor import sample
    from lazydit.pipelines import ModelSource, load

    model = make_tiny_model(3, OFFICIAL)
    torch.save(model.state_dict(), tmp_path / "DiT-official.pt")
    source = ModelSource(model=str(tmp_path / "DiT-official.pt"), clip_x0=clip if flags else None,
                         guided_channels=0 if flags else None)  # fmt: skip
    loaded = load(source).dit
    assert (loaded.sampler.clip_x0, loaded.sampler.guided_channels) == (clip, guided)
    from lazydit.plans import Plan

    noise = initial_noise(1, (4, 8, 8), 5)
    ours = sample(loaded, noise, torch.tensor([7]), Plan.full(10, 2, sampler=loaded.sampler), 4.0)
    reference = official_ddim(model, noise, 7, 10, 4.0, clip, guided or 4)
    # unclamped, this random model's sample grows to a few hundred: fp32 rounding scales with it
    # (AVX-512 GEMMs differed by 7e-4 at a magnitude of 429), so the tolerance does too
    tol = 1e-4 * max(1.0, reference.abs().max().item())
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=tol)
    other = official_ddim(model, noise, 7, 10, 4.0, not clip, 4 if guided else 3)
    assert (ours - other).abs().max() > 100 * tol  # the other choices are a different sampler
    out = tmp_path / "bundle"
    run_cli("export", "--model", str(tmp_path / "DiT-official.pt"), *flags, "--steps", "4", "--formats", "onnx",
            "--out", str(out))  # fmt: skip
    sampler = json.loads((out / "manifest.json").read_text())["sampler"]
    assert (sampler["clip_x0"], sampler["guided_channels"], sampler["eps_after_clip"]) == (clip, guided, "recomputed")


def test_a_latent_model_without_a_vae_is_refused_before_sampling(tmp_path):
    torch.save(make_tiny_model(3, OFFICIAL).state_dict(), tmp_path / "DiT-official.pt")
    proc = run_cli("sample", "--model", str(tmp_path / "DiT-official.pt"), "--steps", "2", "--out",
                   str(tmp_path / "o"), check=False)  # fmt: skip
    assert proc.returncode == 2 and "no VAE" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "break_it, message",
    [
        (
            lambda f: (f / "transformer" / "diffusion_pytorch_model.safetensors").unlink(),
            "has a config.json but no weights",
        ),
        (lambda f: (f / "vae" / "diffusion_pytorch_model.safetensors").unlink(), "--vae random"),
        (lambda f: _edit(f / "transformer" / "config.json", num_layers=3), "disagrees with"),
        (lambda f: _edit(f / "vae" / "config.json", latent_channels=8), "latent channels"),
        (lambda f: (f / "model_index.json").unlink() or (f / "transformer" / "config.json").unlink(), "neither"),
    ],
    ids=["no transformer weights", "no vae weights", "config disagrees", "vae latent channels", "not a model folder"],
)
def test_bad_model_folders_name_the_file_and_write_nothing(tmp_path, break_it, message):
    folder = tmp_path / "pipe"
    write_pipeline(folder, clip_sample=False)
    break_it(folder)
    proc = run_cli("sample", "--model", str(folder), "--classes", "1", "--steps", "2", "--out", str(tmp_path / "o"),
                   check=False)  # fmt: skip
    assert proc.returncode == 2 and message in proc.stderr and str(folder) in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "o").exists()


def _edit(path, **changes):
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_classes_outside_the_model_are_refused(tmp_path):
    proc = run_cli("sample", "--classes", "3,10", "--steps", "2", "--out", str(tmp_path / "o"), check=False)
    assert proc.returncode == 2 and "classes [10] are not classes of this model (0..9)" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_a_pipeline_without_vae_weights_makes_a_timing_only_bundle_with_vae_random(tmp_path):
    folder = tmp_path / "pipe"
    write_pipeline(folder, clip_sample=False, vae_weights=False)
    out = tmp_path / "bundle"
    run_cli("export", "--model", str(folder), "--vae", "random", "--steps", "2", "--formats", "onnx", "--out", str(out))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["timing_only"] is True and manifest["metadata"]["vae"] == "random"
    report = json.loads(run_cli("verify", "--bundle", str(out), "--backend", "torch").stdout)
    assert report["passed"]


def test_a_diffusers_transformer_loads_to_its_own_forward_within_float_rounding(tmp_path):
    """The real DiTTransformer2DModel against the loaded DiT: norm eps and timestep frequencies
    come from its config, so the outputs agree to float rounding (the original frequencies do not)."""
    import dataclasses

    from lazydit.model import DiT
    from lazydit.pipelines import ModelSource, load

    pipe = write_pipeline(tmp_path / "pipe", clip_sample=False)
    dit = load(ModelSource(model=str(tmp_path / "pipe"))).dit
    assert dit.config.mlp_norm_eps == pipe.transformer.config.norm_eps == 1e-5
    x, t, y = torch.randn(3, 4, 8, 8), torch.tensor([999, 500, 3]), torch.tensor([3, 991, 1000])
    with torch.no_grad():
        theirs = pipe.transformer(x, timestep=t, class_labels=y).sample
        ours = dit(x, t, y)
        assert (ours - theirs).abs().max() < 2e-5
        original = DiT(dataclasses.replace(dit.config, timestep_freq_shift=0))
        original.load_state_dict(dit.state_dict())
        assert (original(x, t, y) - theirs).abs().max() > 1e-4
