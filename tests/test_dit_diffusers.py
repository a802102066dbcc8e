"""MV-DiT and its pipeline as a diffusers user drives them: swappable attention processors, strict
``from_pretrained`` keywords, ``save_pretrained`` → ``from_pretrained`` round trips, ``latents=``, and
``export_to_video(out.frames[0], …)``. All on the tiny pipeline (seeded random weights) on the CPU.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from diffusers.utils import export_to_video  # noqa: E402

from mtvcrafter.dit import (  # noqa: E402
    DiTError,
    ModelFileError,
    MTVCrafterPipeline,
    MVDiT7BTransformer,
    make_scheduler,
    plan_windows,
    save_tiny_model_dir,
    tiny_pipeline,
)
from mtvcrafter.dit.rotary import apply_rotary  # noqa: E402
from mtvcrafter.dit.transformer_7b import MVDiTAttnProcessor  # noqa: E402
from mtvcrafter.motion import NormStats  # noqa: E402

RUN = {"height": 64, "width": 64, "num_inference_steps": 2, "seed": 0}


def quiet(pipe):
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def pipe():
    return quiet(tiny_pipeline(seed=0))


@pytest.fixture(scope="module")
def clip(sample_motions):
    return sample_motions[0].slice(0, 49)


@pytest.fixture(scope="module")
def base(pipe, clip, reference_image):
    """The seeded 49-frame render as float32 ``(1, 49, 3, 64, 64)``: what the other renders are compared with."""
    return pipe(reference_image, clip, output_type="pt", **RUN).frames


# -- attention processors ----------------------------------------------------------------------------------------------


def transformer_inputs(model):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 2, model.config.in_channels, 8, 8, generator=gen)
    tokens = torch.randn(2, 48, model.unconditional_motion_token.shape[1], generator=gen)
    return x, torch.tensor([999, 10]), tokens, NormStats.official().mean


class PlainAttnProcessor:
    """The same math as MVDiTAttnProcessor written with an explicit softmax (self- and motion attention)."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, image_rotary_emb=None, motion_rotary_emb=None):
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        q, k, v = (
            proj(x).unflatten(-1, (attn.heads, -1)).transpose(1, 2)
            for proj, x in ((attn.to_q, hidden_states), (attn.to_k, context), (attn.to_v, context))
        )
        q = apply_rotary(attn.norm_q(q), image_rotary_emb)
        k = apply_rotary(attn.norm_k(k), image_rotary_emb if encoder_hidden_states is None else motion_rotary_emb)
        weights = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1)
        out = (weights @ v).transpose(1, 2).flatten(2)
        return attn.to_out[1](attn.to_out[0](out))


class NoRotaryAttnProcessor(MVDiTAttnProcessor):
    """Attention without the rotary embeddings: another function."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, image_rotary_emb=None, motion_rotary_emb=None):
        return super().__call__(attn, hidden_states, encoder_hidden_states)


def test_attention_processors_are_listed_and_swappable():
    model = tiny_pipeline().transformer
    processors = model.attn_processors
    assert sorted(processors) == [f"transformer_blocks.{b}.{a}.processor" for b in range(2) for a in ("attn0", "attn1")]
    assert all(type(p) is MVDiTAttnProcessor for p in processors.values())
    inputs = transformer_inputs(model)
    with torch.no_grad():
        before = model(*inputs).sample

        model.set_attn_processor(PlainAttnProcessor())
        assert all(type(p) is PlainAttnProcessor for p in model.attn_processors.values())
        plain = model(*inputs).sample

        model.set_attn_processor(NoRotaryAttnProcessor())
        no_rotary = model(*inputs).sample

        model.set_attn_processor(processors)  # a dict by name puts the originals back
        again = model(*inputs).sample
    torch.testing.assert_close(plain, before, rtol=1e-5, atol=1e-6)
    assert (no_rotary - before).abs().max() > 1e-3  # the processor is what runs
    assert torch.equal(again, before)


def test_blocks_call_their_attention_modules():
    """Hooks on the attention modules (what caching and parallelism attach to) see every call."""
    model = tiny_pipeline().transformer
    calls = []
    for name, module in model.named_modules():
        if name.endswith(("attn0", "attn1")):
            module.register_forward_hook(lambda m, args, kwargs, out, name=name: calls.append(name), with_kwargs=True)
    with torch.no_grad():
        model(*transformer_inputs(model))
    assert calls == [f"transformer_blocks.{b}.{a}" for b in range(2) for a in ("attn1", "attn0")]


def test_fused_projections_the_diffusers_way():
    model = tiny_pipeline().transformer
    inputs = transformer_inputs(model)
    with torch.no_grad():
        before = model(*inputs).sample
        model.fuse_qkv_projections()
        attn0, attn1 = model.transformer_blocks[0].attn0, model.transformer_blocks[0].attn1
        assert attn1.fused_projections and hasattr(attn1, "to_qkv") and not hasattr(attn1, "to_q")
        assert attn0.fused_projections and hasattr(attn0, "to_kv") and hasattr(attn0, "to_q")
        fused = model(*inputs).sample
        model.unfuse_qkv_projections()
        assert not model.fused_projections
        assert torch.equal(model(*inputs).sample, before)
    torch.testing.assert_close(fused, before, rtol=1e-5, atol=1e-6)


# -- from_pretrained keywords ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory, pipe):
    """The tiny pipeline written by save_pretrained (copy it before changing it)."""
    folder = tmp_path_factory.mktemp("saved") / "pipeline"
    pipe.save_pretrained(folder)
    return folder


def test_unknown_from_pretrained_keywords_are_refused(saved, tmp_path):
    with pytest.raises(DiTError, match=r"unknown keyword argument\(s\) torch_dtpye.*torch_dtype"):
        MVDiT7BTransformer.from_pretrained(saved, subfolder="transformer", torch_dtpye=torch.bfloat16)
    with pytest.raises(DiTError, match=r"revision, token"):
        MTVCrafterPipeline.from_pretrained(saved, token="x", revision="main")
    official = save_tiny_model_dir(tmp_path / "official")
    with pytest.raises(DiTError, match="variant"):
        MTVCrafterPipeline.from_pretrained(official, variant="fp16")
    with pytest.raises(DiTError, match="torch_dtype"):
        MVDiT7BTransformer.from_pretrained(saved / "transformer", torch_dtype="bfloat16")
    with pytest.raises(DiTError, match="push_to_hub"):
        tiny_pipeline().save_pretrained(tmp_path / "x", push_to_hub=True)


def test_subfolder_and_torch_dtype_are_honoured(saved, tmp_path):
    model = MVDiT7BTransformer.from_pretrained(saved, subfolder="transformer", torch_dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.dtype == torch.bfloat16
    kept = MVDiT7BTransformer.from_pretrained(saved / "transformer", local_files_only=True)
    assert {p.dtype for p in kept.parameters()} == {torch.float32}

    loaded = MTVCrafterPipeline.from_pretrained(saved.parent, subfolder=saved.name, torch_dtype=torch.bfloat16)
    assert loaded.transformer.dtype == torch.bfloat16 and loaded.vae.dtype == torch.bfloat16
    official = save_tiny_model_dir(tmp_path / "models" / "MTVCrafter")
    loaded = MTVCrafterPipeline.from_pretrained(official.parent, subfolder="MTVCrafter", torch_dtype=torch.float16)
    assert loaded.transformer.dtype == torch.float16 and loaded.vae.dtype == torch.float16
    with pytest.raises(ModelFileError, match="no such folder"):
        MTVCrafterPipeline.from_pretrained(official.parent, subfolder="elsewhere")


# -- save_pretrained → from_pretrained ---------------------------------------------------------------------------------


def test_save_pretrained_writes_every_component(saved, pipe):
    index = json.loads((saved / "model_index.json").read_text())
    assert index["_class_name"] == "MTVCrafterPipeline"
    assert {k: v for k, v in index.items() if not k.startswith("_")} == {
        "transformer": ["mtvcrafter.dit.transformer_7b", "MVDiT7BTransformer"],
        "vae": ["diffusers", "AutoencoderKLCogVideoX"],
        "scheduler": ["diffusers", "CogVideoXDPMScheduler"],
        "motion_tokenizer": ["mtvcrafter.tokenizer.tokenizer", "MotionTokenizer"],
        "stats": ["mtvcrafter.motion.stats", "NormStats"],
    }
    assert set(pipe.components) == {"transformer", "vae", "scheduler", "motion_tokenizer", "stats"}
    for name in ("transformer", "vae", "scheduler", "motion_tokenizer", "stats"):
        assert (saved / name).is_dir(), name


def test_save_pretrained_round_trip_renders_the_same_frames(saved, clip, reference_image, base):
    loaded = quiet(MTVCrafterPipeline.from_pretrained(saved))
    assert type(loaded.scheduler).__name__ == "CogVideoXDPMScheduler"
    np.testing.assert_array_equal(loaded.stats.mean, NormStats.official().mean)
    out = loaded(reference_image, clip, output_type="pt", **RUN).frames
    assert torch.equal(out, base)


def test_round_trip_keeps_the_scheduler_the_stats_and_the_fusion(tmp_path, clip, reference_image):
    pipe = quiet(tiny_pipeline())
    pipe.register_modules(scheduler=make_scheduler("ddim"))
    stats = NormStats(NormStats.official().mean * 1.1, NormStats.official().std)
    pipe.register_modules(stats=stats)
    pipe.transformer.fuse_qkv_projections()
    want = pipe(reference_image, clip, output_type="pt", **RUN).frames
    pipe.save_pretrained(tmp_path / "p", safe_serialization=False)
    assert pipe.transformer.fused_projections  # saving does not undo the fusion
    loaded = quiet(MTVCrafterPipeline.from_pretrained(tmp_path / "p"))
    assert type(loaded.scheduler).__name__ == "CogVideoXDDIMScheduler"
    np.testing.assert_array_equal(loaded.stats.mean, stats.mean)
    got = loaded(reference_image, clip, output_type="pt", **RUN).frames
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)  # fused projections round differently

    by_name = MTVCrafterPipeline.from_pretrained(tmp_path / "p", scheduler="dpm")
    assert type(by_name.scheduler).__name__ == "CogVideoXDPMScheduler"


def test_a_pipeline_without_tokenizer_round_trips(tmp_path, pipe, clip, reference_image):
    tokens = pipe.motion_tokenizer.tokens(pipe.motion_tokenizer.encode(clip.joints))
    bare = quiet(MTVCrafterPipeline(pipe.transformer, pipe.vae, pipe.scheduler))
    bare.save_pretrained(tmp_path / "bare")
    assert json.loads((tmp_path / "bare" / "model_index.json").read_text())["motion_tokenizer"] == [None, None]
    loaded = quiet(MTVCrafterPipeline.from_pretrained(tmp_path / "bare"))
    assert loaded.motion_tokenizer is None
    want = bare(reference_image, motion_tokens=tokens, output_type="latent", **RUN).frames
    got = loaded(reference_image, motion_tokens=tokens, output_type="latent", **RUN).frames
    assert torch.equal(got, want)


def test_damaged_saved_pipelines_are_named(saved, tmp_path):
    import shutil

    folder = shutil.copytree(saved, tmp_path / "p")
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "vae": ["diffusers", "AutoencoderKL"]}))
    with pytest.raises(ModelFileError, match=r"model_index\.json: vae is a AutoencoderKL"):
        MTVCrafterPipeline.from_pretrained(folder)
    (folder / "model_index.json").write_text(json.dumps(index))
    shutil.rmtree(folder / "stats")
    with pytest.raises(ModelFileError, match="stats"):
        MTVCrafterPipeline.from_pretrained(folder)
    with pytest.raises(DiTError, match="base_model_dir"):
        MTVCrafterPipeline.from_pretrained(saved, base_model_dir=tmp_path)


# -- latents= ----------------------------------------------------------------------------------------------------------


def test_given_latents_are_the_seeded_noise(pipe, clip, reference_image, base):
    noise = pipe.prepare_latents(49, 64, 64, torch.float32, "cpu", torch.Generator().manual_seed(RUN["seed"]))
    assert tuple(noise.shape) == (1, 13, 4, 8, 8)
    given = pipe(reference_image, clip, latents=noise.clone(), output_type="pt", **RUN).frames
    assert torch.equal(given, base)  # the seeded call draws exactly this noise
    again = pipe(reference_image, clip, latents=noise.clone(), output_type="pt", **RUN).frames
    assert torch.equal(again, given)
    other = pipe(reference_image, clip, latents=torch.randn_like(noise), output_type="pt", **RUN).frames
    assert not torch.equal(other, base)

    # with a generator, its stream goes on from where the latents left it (diffusers' convention)
    generator = torch.Generator().manual_seed(RUN["seed"])
    noise = pipe.prepare_latents(49, 64, 64, torch.float32, "cpu", generator)
    continued = pipe(reference_image, clip, latents=noise, generator=generator, output_type="pt",
                     reference_generator=torch.Generator().manual_seed(RUN["seed"] + 1), **RUN).frames  # fmt: skip
    assert torch.equal(continued, base)


def test_latents_cover_the_whole_video_and_wrong_ones_are_refused(pipe, sample_motions, reference_image):
    motion = sample_motions[0].slice(0, 120)
    latent_frames = plan_windows(120).latent_frames
    noise = pipe.prepare_latents(120, 64, 64, torch.float32, "cpu", torch.Generator().manual_seed(0))
    assert tuple(noise.shape) == (1, latent_frames, 4, 8, 8)
    seeded = pipe(reference_image, motion, output_type="latent", **RUN).frames
    given = pipe(reference_image, motion, latents=noise, output_type="latent", **RUN).frames
    assert torch.equal(given, seeded)
    with pytest.raises(DiTError, match=r"latents must be \(1, 31, 4, 8, 8\)"):
        pipe(reference_image, motion, latents=noise[:, :13], **RUN)
    with pytest.raises(DiTError, match="torch.Tensor"):
        pipe(reference_image, motion, latents=noise.numpy(), **RUN)


# -- export_to_video ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("output_type", ["pil", "np"])
def test_export_to_video_writes_every_frame(pipe, sample_motions, reference_image, tmp_path, output_type):
    imageio = pytest.importorskip("imageio.v3")
    motion = sample_motions[0].slice(0, 30)
    out = pipe(reference_image, motion, output_type=output_type, **RUN)
    path = export_to_video(out.frames[0], str(tmp_path / "v.mp4"), fps=20)
    frames = imageio.imread(path)
    assert frames.shape == (motion.num_frames, 64, 64, 3)
    # the pixels, not an inverted or black video (H.264 is lossy: compare the averages)
    pixels = np.stack([np.asarray(f) for f in out.frames[0]]) if output_type == "pil" else out.frames[0] * 255
    assert abs(float(frames.mean()) - float(pixels.mean())) < 8
