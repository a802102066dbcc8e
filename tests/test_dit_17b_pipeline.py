"""MTVCrafter17BPipeline with tiny random weights: any length, windows that join, the prompt, seed and motion
matter, cancel, the FusionX LoRA merge, the official folder layout, and the mvdit-17b backend through the
command line and a real server on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from mtvcrafter import official
from mtvcrafter.dit import MTVCrafter17BPipeline, merge_lora, save_tiny_17b_model_dir, tiny_pipeline_17b
from mtvcrafter.dit.errors import ModelFileError
from mtvcrafter.dit.layout_17b import load_pipeline_17b
from mtvcrafter.dit.pipeline_17b import OVERLAP, OVERLAP_LATENTS, window_starts
from mtvcrafter.motion import load_motion


@pytest.fixture(scope="module")
def pipe():
    p = tiny_pipeline_17b()
    p.set_progress_bar_config(disable=True)
    return p


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def joints(sample_pkl):
    motion = load_motion(sample_pkl, clip=0)
    reps = -(-200 // motion.num_frames)
    return np.concatenate([motion.joints] * reps)[:200]


def render(pipe, image, joints, **kw):
    kw = {"height": 32, "width": 32, "num_inference_steps": 2, "output_type": "np", **kw}
    return pipe(image, joints, **kw)


@pytest.mark.parametrize("frames", [49, 30, 200])
def test_any_length_gives_that_many_frames(pipe, image, joints, frames):
    out = render(pipe, image, joints[:frames])
    assert out.frames.shape == (1, frames, 32, 32, 3)
    assert len(out.windows) == len(window_starts(frames)) == {49: 1, 30: 1, 200: 5}[frames]
    assert np.isfinite(out.frames).all()


def test_windows_every_40_frames():
    assert window_starts(49) == [0] and window_starts(50) == [0, 40] and window_starts(89) == [0, 40]
    assert window_starts(90) == [0, 40, 80]


class KnownTarget(torch.nn.Module):
    """A stand-in transformer whose prediction drives the latents to ``target`` (flow matching:
    ``x0 = x_t − σ·v``, so ``v = (x_t − target) / σ``); records the conditions it is given."""

    def __init__(self, model, target):
        super().__init__()
        self.model, self.target, self.seen = model, target, []
        self.config, self.dtype = model.config, model.dtype

    def forward(self, hidden_states, timestep, **kw):
        latents = hidden_states[:, :16]
        self.seen.append(hidden_states[:, 16:20].clone())
        sigma = (timestep.float() / 1000).view(-1, 1, 1, 1, 1)
        return ((latents - self.target) / sigma,)


def test_windows_join_to_the_target(pipe, image, joints):
    """A model that always predicts one latent video gives it back in every window, and window 1 is joined
    to window 0: its first 3 latent frames end as the VAE encoding of window 0's last 9 frames (pinned
    and noised with the schedule), the rest as the target; the video is window 0's first 40 frames and
    then window 1's 49."""
    torch.manual_seed(0)
    target = torch.randn(1, 16, 13, 4, 4) * 0.5
    real = pipe.transformer
    stand_in = KnownTarget(real, target)
    finals = []

    def keep_last(p, step, t, tensors):
        if (step + 1) % p.num_timesteps == 0:
            finals.append(tensors["latents"].clone())
        return tensors

    real.forward = stand_in.forward  # the pipeline's transformer, its prediction replaced
    try:
        out = render(pipe, image, joints[:89], num_inference_steps=4, guidance_scale=1.0, output_type="pt",
                     callback_on_step_end=keep_last)  # fmt: skip
        first = pipe.decode(target)
        tail = first[-OVERLAP:].permute(1, 0, 2, 3)[None] * 2 - 1
        joined = torch.cat([tail, torch.zeros(1, 3, 49 - OVERLAP, 32, 32)], dim=2)
        pinned = pipe.encode_condition(joined)[:, :, :OVERLAP_LATENTS]
        second = pipe.decode(finals[1])
    finally:
        del real.forward
    video = out.frames[0]
    assert video.shape == (89, 3, 32, 32) and len(finals) == 2
    torch.testing.assert_close(finals[0], target, atol=1e-5, rtol=0)
    torch.testing.assert_close(finals[1][:, :, OVERLAP_LATENTS:], target[:, :, OVERLAP_LATENTS:], atol=1e-5, rtol=0)
    torch.testing.assert_close(finals[1][:, :, :OVERLAP_LATENTS], pinned, atol=1e-5, rtol=0)
    torch.testing.assert_close(video[:40], first[:40], atol=1e-5, rtol=0)
    torch.testing.assert_close(video[40:], second, atol=1e-5, rtol=0)
    # the masks: the first window keeps 1 latent frame (the reference), later ones 3 (the overlap frames)
    assert stand_in.seen[0][:, :, :1].eq(1).all() and stand_in.seen[0][:, :, 1:].eq(0).all()
    later = stand_in.seen[-1]
    assert later[:, :, :OVERLAP_LATENTS].eq(1).all() and later[:, :, OVERLAP_LATENTS:].eq(0).all()


def test_prompt_seed_and_motion_change_the_video(pipe, image, joints):
    base = render(pipe, image, joints[:30], prompt="a man walks").frames
    assert np.array_equal(base, render(pipe, image, joints[:30], prompt="a man walks").frames)  # reproducible
    assert not np.array_equal(base, render(pipe, image, joints[:30], prompt="a woman spins").frames)
    assert not np.array_equal(base, render(pipe, image, joints[:30], prompt="a man walks", seed=7).frames)
    moved = joints[:30] + np.array([300.0, 0, 0], np.float32)
    assert not np.array_equal(base, render(pipe, image, moved, prompt="a man walks").frames)


def test_the_default_size_is_the_official_bucket(pipe, joints):
    """Without a size, the official 512-pixel bucket nearest the reference's aspect (here 9:16 → 384 × 672);
    one side given, the other follows the reference's aspect (a small call: the VAE is slow at 672)."""
    from mtvcrafter.dit.pipeline_17b import _size

    assert _size(Image.new("RGB", (720, 1280))) == (384, 672)
    assert _size(np.zeros((1000, 3000, 3), np.uint8)) == (864, 288)
    seen = []
    hook = pipe.transformer.register_forward_pre_hook(
        lambda m, a, k: seen.append(tuple(k["hidden_states"].shape[-2:])), with_kwargs=True
    )
    try:
        out = pipe(Image.new("RGB", (96, 48)), joints[:3], num_inference_steps=1, height=32, output_type="np")
    finally:
        hook.remove()
    assert seen[0] == (4, 8) and out.frames.shape == (1, 3, 32, 64, 3)


def test_cancel_stops_within_one_step(pipe, image, joints):
    steps = []

    def stop_at_two(p, step, t, tensors):
        steps.append(step)
        if step == 1:
            p.request_interrupt()
        return tensors

    out = render(pipe, image, joints[:120], num_inference_steps=3, callback_on_step_end=stop_at_two)
    assert out.interrupted and out.frames is None and steps == [0, 1]


def test_lora_merges_as_the_official_script(tmp_path):
    """``W += up @ down`` (alpha ignored), ``b += diff_b``, tensors read as bfloat16; names are the official ones."""
    pipe = tiny_pipeline_17b(seed=1)
    model = pipe.transformer
    g = torch.Generator().manual_seed(0)
    down, up = torch.randn(4, 72, generator=g), torch.randn(72, 4, generator=g)
    diff_b = torch.randn(72, generator=g)
    lora = {
        "diffusion_model.blocks.0.self_attn.q.lora_down.weight": down,
        "diffusion_model.blocks.0.self_attn.q.lora_up.weight": up,
        "diffusion_model.blocks.0.self_attn.q.alpha": torch.tensor(8.0),
        "diffusion_model.blocks.1.cross_attn.o.diff_b": diff_b,
    }
    save_file(lora, str(tmp_path / "fusionx.safetensors"))
    q_before = model.blocks[0].attn1.to_q.weight.detach().clone()
    o_before = model.blocks[1].attn2.to_out[0].bias.detach().clone()
    assert merge_lora(model, tmp_path / "fusionx.safetensors") == 2
    expected_q = q_before.double() + up.bfloat16().double() @ down.bfloat16().double()
    torch.testing.assert_close(model.blocks[0].attn1.to_q.weight.double(), expected_q, atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(model.blocks[1].attn2.to_out[0].bias, o_before + diff_b.bfloat16().float())
    save_file({"unrelated.weight": down}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ModelFileError, match="no tensor of this LoRA fits"):
        merge_lora(model, tmp_path / "other.safetensors")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_17b_model_dir(tmp_path_factory.mktemp("mtvcrafter") / "MTVCrafter")


def test_the_official_layout_loads_the_same_pipeline(model_dir, pipe, image, joints):
    assert (model_dir / "MV-DiT" / "Wan-2-1" / "config.json").is_file()
    assert json.loads((model_dir / "MV-DiT/Wan-2-1/config.json").read_text())["_class_name"] == "Transformer17B"
    for name in ("Wan2.1_VAE.pth", "models_t5_umt5-xxl-enc-bf16.pth", "google/umt5-xxl"):
        assert (model_dir / "wan2.1" / name).exists()
    loaded = load_pipeline_17b(model_dir)
    loaded.set_progress_bar_config(disable=True)
    assert isinstance(loaded, MTVCrafter17BPipeline)
    np.testing.assert_array_equal(render(loaded, image, joints[:20]).frames, render(pipe, image, joints[:20]).frames)


def test_a_missing_base_file_is_named_with_its_repository(model_dir, tmp_path):
    import shutil

    broken = tmp_path / "m"
    shutil.copytree(model_dir, broken)
    (broken / "wan2.1" / "Wan2.1_VAE.pth").unlink()
    with pytest.raises(ModelFileError, match=r"missing Wan2\.1_VAE\.pth .*Wan-AI/Wan2\.1-I2V-14B"):
        load_pipeline_17b(broken)
    from mtvcrafter.backends import BackendConfig, get_backend

    available, reason = get_backend("mvdit-17b", BackendConfig(model_dir=broken)).status()
    assert not available and "Wan2.1_VAE.pth" in reason
    assert get_backend("mvdit-17b", BackendConfig(model_dir=model_dir)).status() == (True, "")


def test_mvdit_17b_from_the_command_line(model_dir, tmp_path, sample_pkl, reference_image):
    out = tmp_path / "o.mp4"
    args = ["animate", "--backend", "mvdit-17b", "--model-dir", str(model_dir), "--ref", str(reference_image),
            "--motion", str(sample_pkl), "--num-frames", "12", "--size", "32x32", "--steps", "1",
            "--prompt", "a person dances", "--negative-prompt", "blur", "--out", str(out)]  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "mtvcrafter", *args], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "rendered 12 frames" in result.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "mtvcrafter", *args[:-2], "--backend", "tiny", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert bad.returncode != 0 and "prompt: the tiny backend takes none" in bad.stderr


def test_mvdit_17b_job_with_a_prompt_through_a_real_server(model_dir, tmp_path, sample_pkl, reference_image):
    pytest.importorskip("fastapi")
    from mtvcrafter.client import Client, ServerError
    from mtvcrafter_server.local import local_server

    motion = load_motion(sample_pkl, clip=1).slice(0, 17)
    with local_server(tmp_path / "data", "--model-dir", str(model_dir), log=tmp_path / "log") as url:
        client = Client(url)
        listed = {b["name"]: b for b in client.backends()}
        assert listed["mvdit-17b"]["available"] and "prompt" in listed["mvdit-17b"]["settings"]
        assert listed["mvdit-17b"]["defaults"]["prompt"] == official.PROMPT_17B
        params = {"backend": "mvdit-17b", "prompt": "a robot waves", "width": 32, "height": 32, "steps": 1}
        job = client.submit(motion, reference_image, params)
        for _ in range(1200):
            done = client.job(job["id"])
            if done["status"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.25)
        assert done["status"] == "succeeded", done
        assert done["params"]["prompt"] == "a robot waves"
        client.download(job["id"], tmp_path / "o.mp4")
        import imageio_ffmpeg

        count, _ = imageio_ffmpeg.count_frames_and_secs(str(tmp_path / "o.mp4"))
        assert count == motion.num_frames
        # a LoRA is named, never a path on the server
        with pytest.raises(ServerError, match="not a path.*HTTP 422"):
            client.submit(motion, reference_image, {**params, "lora": "/etc/x.safetensors"})


def test_model_cpu_offload_gives_the_same_frames(joints):
    pipe = tiny_pipeline_17b(seed=2)
    pipe.set_progress_bar_config(disable=True)
    image = Image.new("RGB", (32, 32), (90, 140, 200))
    plain = render(pipe, image, joints[:10]).frames
    pipe.enable_model_cpu_offload(device="cpu")
    pipe.enable_vae_tiling()
    np.testing.assert_array_equal(render(pipe, image, joints[:10]).frames, plain)


def test_the_first_windows_clip_input_is_the_official_round_trip():
    """The official script resizes the reference (PIL bicubic, no crop), normalises it to [−1, 1], and for CLIP
    turns it back into a uint8 picture by truncation before normalising again: a quarter of the values
    drop by one level. Written here with numpy as the script's statements."""
    from mtvcrafter.dit.pipeline_17b import _clip_round_trip, _reference

    rng = np.random.default_rng(3)
    image = Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8))
    resized = np.asarray(image.resize((32, 48), Image.BICUBIC)).astype(np.float32) / np.float32(255)
    official_ref = (resized - np.float32(0.5)) / np.float32(0.5)
    pixels = ((official_ref * np.float32(0.5) + np.float32(0.5)) * np.float32(255)).astype(np.uint8)
    official_clip = (pixels.astype(np.float32) / np.float32(255) - np.float32(0.5)) / np.float32(0.5)
    ref = _reference(image, 32, 48)
    np.testing.assert_array_equal(ref[0].permute(1, 2, 0).numpy(), official_ref)
    np.testing.assert_array_equal(_clip_round_trip(ref)[0].permute(1, 2, 0).numpy(), official_clip)
    assert (official_clip != official_ref).mean() > 0.05  # the truncation is real, not a no-op


def test_a_server_caches_by_the_lora_files_contents_and_bounds_derived_sizes(tmp_path, sample_pkl, reference_image):
    """Replacing a LoRA file under the same name gives a new video, not the cached one; a size the reference's
    aspect would derive past the server's limit is refused at submit."""
    pytest.importorskip("fastapi")
    from mtvcrafter.client import Client, ServerError
    from mtvcrafter_server.local import local_server

    motion = load_motion(sample_pkl, clip=2).slice(0, 5)
    loras = tmp_path / "loras"
    loras.mkdir()

    def write_lora(scale):
        save_file({"diffusion_model.head.head.diff_b": torch.full((64,), scale)}, str(loras / "look.safetensors"))

    params = {"backend": "tiny-17b", "lora": "look.safetensors", "width": 32, "height": 32, "steps": 1}
    with local_server(tmp_path / "data", "--lora-dir", str(loras), log=tmp_path / "log") as url:
        client = Client(url)

        def run():
            job = client.submit(motion, reference_image, params)
            for _ in range(1200):
                done = client.job(job["id"])
                if done["status"] in ("succeeded", "failed", "cancelled"):
                    return done
                time.sleep(0.1)
            raise AssertionError("the job did not end")

        write_lora(0.5)
        first = run()
        assert first["status"] == "succeeded" and not first.get("cached"), first
        assert run().get("cached")  # the same inputs and the same file: the earlier result
        time.sleep(0.01)
        write_lora(-0.5)
        third = run()
        assert third["status"] == "succeeded" and not third.get("cached"), third
        tall = tmp_path / "tall.png"
        Image.new("RGB", (16, 200)).save(tall)  # width 256 given: the height follows the aspect, 3200
        with pytest.raises(ServerError, match="over this server's 2048 pixels.*HTTP 422"):
            client.submit(motion, tall, {"backend": "tiny-17b", "width": 256})
