"""Exact mode, fast mode and the offload modes of both MV-DiT pipelines, on tiny random models on the CPU.

- exact mode renders the plain path's frames bit for bit (an independently built pipeline of the same seed),
  and plausible mistakes in its speed-ups are caught by that comparison;
- fast mode's deviation (relative error of the final latents against exact mode) is bounded and reported,
  and it really skips blocks; fp8 is skipped on the CPU with one line;
- every offload mode renders the frames of no offload; ``auto`` picks from given free memory (a pure function)
  and the estimates put the full-size models under the targets;
- the ``fast`` and ``offload`` settings reach the pipeline from the command line and from a server's job params.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import report

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from mtvcrafter.backends import RenderSettings, SettingsError  # noqa: E402
from mtvcrafter.dit import tiny_pipeline, tiny_pipeline_17b  # noqa: E402
from mtvcrafter.dit import transformer_17b as t17  # noqa: E402
from mtvcrafter.dit.offload import GIB, MemoryEstimate, choose_offload, estimate_memory  # noqa: E402
from mtvcrafter.dit.speed import FAST_CACHE, fp8_unavailable, prepare_pipeline  # noqa: E402

HEADING = "exact, fast and offload modes (tiny models, CPU)"
SIZE = {"height": 32, "width": 32}


@pytest.fixture(scope="module")
def joints(sample_motions):
    return sample_motions[0].joints


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(3)
    return rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)


def build(model: str):
    pipe = tiny_pipeline(seed=1) if model == "7b" else tiny_pipeline_17b(seed=1)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def render(pipe, image, joints, frames: int = 49, steps: int = 3, output_type: str = "latent"):
    out = pipe(image, joints[:frames], num_inference_steps=steps, seed=5, output_type=output_type, **SIZE)
    return out.frames


def blocks_run(pipe) -> list[int]:
    """A counter of the blocks whose layers ran (a skipped block is entered, but its first layer never runs)."""
    transformer = pipe.transformer
    blocks = getattr(transformer, "transformer_blocks", None) or transformer.blocks
    count = [0]
    for block in blocks:
        next(iter(block.children())).register_forward_pre_hook(lambda *a: count.__setitem__(0, count[0] + 1))
    return count


# -- exact mode --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["7b", "17b"])
def plain_and_exact(request, image, joints):
    """The plain path's latents and frames, then exact mode's pipeline (an independent one of the same seed)."""
    model = request.param
    plain = build(model)
    want = render(plain, image, joints), render(plain, image, joints, output_type="np")
    exact = build(model)
    offload, notes = prepare_pipeline(exact, "cpu")
    assert offload == "none" and notes == []  # nothing compiled on the CPU, nothing skipped
    return model, want, exact


def test_exact_mode_renders_the_plain_paths_frames_bit_for_bit(plain_and_exact, image, joints):
    model, (latents, frames), exact = plain_and_exact
    assert exact.transformer.fused_projections  # exact mode did change the model
    got_latents = render(exact, image, joints)
    got_frames = render(exact, image, joints, output_type="np")
    assert torch.equal(got_latents, latents)
    np.testing.assert_array_equal(got_frames, frames)
    report(HEADING, f"{model} exact mode vs the plain path: latents and frames equal bit for bit")


def _swap_fused_kv(pipe) -> None:
    """A fused k/v matrix built in the wrong order (v's rows first): a plausible slip when fusing."""
    transformer = pipe.transformer
    blocks = getattr(transformer, "transformer_blocks", None) or transformer.blocks
    attn = blocks[0].attn0 if hasattr(blocks[0], "attn0") else blocks[0].motion_attn
    with torch.no_grad():
        k, v = attn.to_kv.weight.chunk(2)
        attn.to_kv.weight.copy_(torch.cat([v, k]))
        kb, vb = attn.to_kv.bias.chunk(2)
        attn.to_kv.bias.copy_(torch.cat([vb, kb]))


def test_a_plausible_slip_in_the_fusion_is_caught(plain_and_exact, image, joints):
    model, (latents, _), _ = plain_and_exact
    pipe = build(model)
    prepare_pipeline(pipe, "cpu")
    _swap_fused_kv(pipe)
    assert not torch.equal(render(pipe, image, joints), latents)


def test_the_17b_video_rotary_table_is_built_once_and_a_float32_one_would_be_caught(image, joints, monkeypatch):
    """The official numerics rotate with a float64 table; exact mode caches it per grid. Caching it in float32
    (the diffusers numerics' precision) changes the frames: the bit-for-bit comparison sees it."""
    plain = build("17b")
    want = render(plain, image, joints)
    pipe = build("17b")
    prepare_pipeline(pipe, "cpu")
    built = []
    original = t17.video_rotary_f64
    monkeypatch.setattr(t17, "video_rotary_f64", lambda *a: built.append(a) or original(*a))
    assert torch.equal(render(pipe, image, joints, steps=4), render(plain, image, joints, steps=4))
    assert len(built) == 1  # one table for the render's grid, not one per step
    monkeypatch.setattr(t17, "video_rotary_f64", lambda *a: tuple(t.float() for t in original(*a)))
    pipe.transformer._video_rotary_cache.clear()
    assert not torch.equal(render(pipe, image, joints), want)


def test_the_17b_encodes_each_prompt_once(image, joints):
    pipe = build("17b")
    prepare_pipeline(pipe, "cpu")
    calls = []
    pipe.text_encoder.register_forward_pre_hook(lambda *a: calls.append(1))
    render(pipe, image, joints, steps=1)
    assert len(calls) == 2  # the prompt and the negative prompt
    render(pipe, image, joints, steps=1)
    assert len(calls) == 2  # both cached
    pipe(
        image, joints[:49], prompt="A character dances in a park.", num_inference_steps=1, output_type="latent", **SIZE
    )
    assert len(calls) == 3


def test_fusing_the_17b_replaces_its_projections_and_saves_the_official_names(tmp_path):
    """diffusers' WanAttention keeps the separate projections beside the fused ones (7 B parameters twice at full
    size); ours replaces them, and a saved model still has the separate ones."""
    pipe = build("17b")
    model = pipe.transformer
    before = sum(p.numel() for p in model.parameters())
    model.fuse_qkv_projections()
    assert sum(p.numel() for p in model.parameters()) == before
    attn2 = model.blocks[0].attn2
    assert not list(attn2.to_k.parameters()) and attn2.add_k_proj is not None  # weightless placeholders
    model.save_pretrained(tmp_path)
    assert model.fused_projections
    saved = type(model).from_pretrained(tmp_path)
    assert "blocks.0.attn2.to_k.weight" in dict(saved.named_parameters())


# -- fast mode ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "frames", "steps"), [("7b", 60, 50), ("17b", 49, 20)])
def test_fast_mode_skips_blocks_with_a_bounded_reported_error(model, frames, steps, image, joints):
    """Fast mode (First-Block Cache; fp8 is skipped on the CPU) against exact mode on the same seed; the 7B over two
    windows, the cache starting afresh in each."""
    exact, fast = build(model), build(model)
    prepare_pipeline(exact, "cpu")
    _, notes = prepare_pipeline(fast, "cpu", fast=True)
    assert notes == [fp8_unavailable("cpu")]
    ran_exact, ran_fast = blocks_run(exact), blocks_run(fast)
    start = time.perf_counter()
    want = render(exact, image, joints, frames=frames, steps=steps)
    exact_s = time.perf_counter() - start
    start = time.perf_counter()
    got = render(fast, image, joints, frames=frames, steps=steps)
    fast_s = time.perf_counter() - start
    error = float((got - want).norm() / want.norm())
    share = ran_fast[0] / ran_exact[0]
    line = f"{model} fast mode ({FAST_CACHE}), {frames} frames × {steps} steps: relative error of the final latents "
    report(HEADING, line + f"{error:.1e}, {share:.0%} of the block runs, {exact_s:.2f} s → {fast_s:.2f} s")
    assert got.shape == want.shape and torch.isfinite(got).all()
    assert share < 0.95  # blocks were skipped (the tiny models have 2 and 5 blocks; the first always runs)
    assert 0 < error < 0.05


def test_fp8_is_skipped_on_the_cpu_in_one_line():
    reason = fp8_unavailable("cpu")
    assert reason.startswith("fp8 matmuls need a CUDA GPU") and "\n" not in reason and "skipped" in reason


# -- offloading ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["7b", "17b"])
def test_every_offload_mode_renders_the_frames_of_no_offload(model, image, joints):
    none = build(model)
    prepare_pipeline(none, "cpu")
    want = render(none, image, joints, frames=20, output_type="np")
    for mode in ("model", "group", "sequential", "auto"):
        pipe = build(model)
        used, _ = prepare_pipeline(pipe, "cpu", offload=mode)
        assert used == ("none" if mode == "auto" else mode)  # auto: no GPU, nothing to offload from
        np.testing.assert_array_equal(render(pipe, image, joints, frames=20, output_type="np"), want, err_msg=mode)
    fast_none, fast_group = build(model), build(model)
    prepare_pipeline(fast_none, "cpu", fast=True)
    prepare_pipeline(fast_group, "cpu", offload="group", fast=True)
    np.testing.assert_array_equal(
        render(fast_group, image, joints, frames=20, steps=6), render(fast_none, image, joints, frames=20, steps=6)
    )


def test_auto_chooses_the_fastest_mode_that_fits_the_free_memory():
    est = MemoryEstimate(
        weights={"transformer": 14 * GIB, "vae": GIB // 2}, largest_block=GIB // 3, transformer_rest=GIB // 10,
        largest_layer=0, activations=2 * GIB, decode=GIB,
    )  # fmt: skip
    needs = {mode: est.need(mode) / GIB for mode in ("none", "model", "group", "sequential")}
    assert needs == pytest.approx({"none": 16.5, "model": 16.0, "group": 3.27, "sequential": 2.93}, abs=0.01)
    # with 15 % and 1 GiB to spare: none fits in 19.98 GiB, model in 19.4, group in 4.76, sequential in 4.37
    for free_gib, mode in ((80, "none"), (20, "none"), (19.9, "model"), (19.5, "model"), (19.3, "group"),
                           (4.8, "group"), (4.7, "sequential"), (0, "sequential")):  # fmt: skip
        assert choose_offload(int(free_gib * GIB), est) == mode, free_gib


def test_the_estimates_put_group_offload_of_the_full_size_models_under_the_targets():
    """The official sizes built on the meta device (no memory): 512×512×49 with guidance, bf16. The estimates, not
    measurements (``mtvcrafter bench dit --offload all`` measures on a GPU): the 7B under 16 GiB, the 17B under
    24 GiB with group offloading; without offloading neither fits those cards."""
    from diffusers import AutoencoderKLCogVideoX, AutoencoderKLWan, CogVideoXDPMScheduler
    from transformers import CLIPVisionModelWithProjection, UMT5EncoderModel

    from mtvcrafter.dit import (
        COGVIDEOX_5B_SCHEDULER,
        MTVCrafter17BPipeline,
        MTVCrafterPipeline,
        MVDiT7BTransformer,
        MVDiT17BTransformer,
    )
    from mtvcrafter.dit.pipeline_17b import make_scheduler_17b
    from mtvcrafter.dit.wan_base import encoder_configs
    from mtvcrafter.motion import NormStats

    tokenizer = tiny_pipeline_17b().tokenizer
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("meta"):
            seven = MTVCrafterPipeline(
                MVDiT7BTransformer(),
                AutoencoderKLCogVideoX(scaling_factor=0.7),
                CogVideoXDPMScheduler(**COGVIDEOX_5B_SCHEDULER),
                None,
                NormStats.official(),
            )
            text_config, image_config = encoder_configs()
            text = UMT5EncoderModel(text_config)
            clip = CLIPVisionModelWithProjection(image_config).float()
            seventeen = MTVCrafter17BPipeline(transformer=MVDiT17BTransformer(), vae=AutoencoderKLWan().float(),
                                              text_encoder=text, tokenizer=tokenizer, image_encoder=clip,
                                              scheduler=make_scheduler_17b())  # fmt: skip
    finally:
        torch.set_default_dtype(previous)
    e7, e17 = estimate_memory(seven, 512, 512, 49), estimate_memory(seventeen, 512, 512, 49)
    assert 7.0e9 < e7.weights["transformer"] / 2 < 7.2e9 and 17.3e9 < e17.weights["transformer"] / 2 < 17.5e9
    assert e7.need("group") < 16 * GIB < e7.need("none")
    assert e17.need("group") < 24 * GIB < e17.need("model")
    for name, e in (("7b", e7), ("17b", e17)):
        report(HEADING, f"{name} at 512×512×49, bf16, estimated peak GiB: " + ", ".join(
            f"{mode} {e.need(mode) / GIB:.1f}" for mode in ("none", "model", "group", "sequential")))  # fmt: skip
    assert choose_offload(16 * GIB, e7) == "group" and choose_offload(24 * GIB, e17) == "group"
    assert choose_offload(80 * GIB, e7) == "none" and choose_offload(80 * GIB, e17) == "none"


# -- the settings reach the pipeline ------------------------------------------------------------------------------


def test_fast_and_offload_are_render_settings_with_bounds():
    assert RenderSettings().fast is False and RenderSettings(fast=True, offload="group").offload == "group"
    for values, field in (({"fast": "yes"}, "fast"), ({"fast": 1}, "fast"), ({"offload": "disk"}, "offload")):
        with pytest.raises(SettingsError) as error:
            RenderSettings.from_dict(values)
        assert error.value.field == field


def test_the_command_line_takes_fast_as_a_switch():
    from mtvcrafter.cli import build_parser
    from mtvcrafter.cli.animate import render_settings

    parser = build_parser()
    base = ["animate", "--ref", "r.png", "--motion", "m.npz", "--out", "o.mp4"]
    assert render_settings(parser.parse_args(base)) == {}
    given = render_settings(parser.parse_args([*base, "--fast", "--offload", "sequential"]))
    assert given == {"fast": True, "offload": "sequential"}
    assert RenderSettings.from_dict(given).fast is True


def test_a_servers_fast_and_offload_params_reach_the_pipeline(tmp_path, sample_motions, reference_image, monkeypatch):
    import json
    import os

    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from mtvcrafter.motion import save_motion
    from mtvcrafter_server import Settings
    from mtvcrafter_server.app import create_app

    for name in [n for n in os.environ if n.startswith("MTVCRAFTER_")]:
        monkeypatch.delenv(name)
    motion = tmp_path / "m.npz"
    save_motion(sample_motions[0].slice(0, 12), motion)
    app = create_app(Settings(data_dir=tmp_path / "data"))
    params = {"backend": "tiny", "width": 32, "height": 32, "steps": 2, "fast": True, "offload": "group"}
    with TestClient(app, base_url="http://127.0.0.1") as client:
        listed = {b["name"]: b for b in client.get("/v1/backends").json()}
        assert {"fast", "offload"} <= set(listed["tiny"]["settings"])
        files = {"motion": ("m.npz", motion.read_bytes()), "reference": ("r.png", reference_image.read_bytes())}
        response = client.post("/v1/jobs", files=files, data={"params": json.dumps(params)})
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        for _ in range(600):
            job = client.get(f"/v1/jobs/{job_id}").json()
            if job["status"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.1)
        assert job["status"] == "succeeded", job
        assert any("fp8" in w and "skipped" in w for w in job.get("warnings", []))
        backend = app.state.backends["tiny"]
        from diffusers.hooks.group_offloading import _is_group_offload_enabled

        assert backend._offload == "group" and _is_group_offload_enabled(backend._pipe.transformer)
        assert backend._pipe.transformer.is_cache_enabled  # fast mode's step cache
        assert len(client.get(f"/v1/jobs/{job_id}/result").content) > 1000
