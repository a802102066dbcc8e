"""The MTVCrafter video pipeline as a user drives it: window plans, the tiny pipeline end to end on the CPU,
cancel and callbacks, reference encoding, motion tokens, the official folder layout, and `mtvcrafter animate`.

The tiny pipeline has the real structure with seeded random weights, so its video is noise; the tests check what
a user sees (frame counts, sizes, types, determinism, that the motion and settings change the video, errors).
"""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import report

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

import mtvcrafter.motion  # noqa: E402
from mtvcrafter.cli import main  # noqa: E402
from mtvcrafter.dit import (  # noqa: E402
    DiTError,
    ModelFileError,
    load_pipeline,
    motion_rotary,
    plan_windows,
    prepare_reference,
    save_tiny_model_dir,
    tiny_pipeline,
    video_rotary,
)
from mtvcrafter.motion import save_motion  # noqa: E402
from mtvcrafter.render import read_mp4_info  # noqa: E402

HEADING = "tiny MTVCrafter pipeline on the CPU"
SIZE = {"height": 64, "width": 64}
#: The settings of most calls: 64x64, 2 steps, seed 0.
RUN = {**SIZE, "num_inference_steps": 2, "seed": 0}


def quiet(pipe):
    pipe.set_progress_bar_config(disable=True)
    return pipe


def video(out) -> np.ndarray:
    """The one video of a call's batched PIL frames (the default output type) as uint8 ``(T, H, W, 3)``."""
    assert isinstance(out.frames, list) and len(out.frames) == 1, "frames are batched: a list of one video"
    return np.stack([np.asarray(frame) for frame in out.frames[0]])


@pytest.fixture(scope="module")
def pipe():
    """One tiny pipeline for the tests that do not change it (a call resets its interrupt flag)."""
    return quiet(tiny_pipeline(seed=0))


@pytest.fixture(scope="module")
def clip49(sample_motions):
    return sample_motions[0].slice(0, 49)


@pytest.fixture(scope="module")
def base(pipe, clip49, reference_image):
    """The 49-frame clip at 64x64, 2 steps, seed 0: what other calls are compared with."""
    start = time.perf_counter()
    out = pipe(reference_image, clip49, **RUN)
    report(HEADING, f"49 frames, 64x64, 2 steps: {time.perf_counter() - start:.2f} s")
    return out


@pytest.fixture(scope="module")
def base_latents(pipe, clip49, reference_image):
    return pipe(reference_image, clip49, output_type="latent", **RUN).frames


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """The tiny pipeline written in the official folder layout (copy it before changing it)."""
    return save_tiny_model_dir(tmp_path_factory.mktemp("tiny") / "MTVCrafter")


def copy_model_dir(model_dir, tmp_path):
    return shutil.copytree(model_dir, tmp_path / "MTVCrafter")


# -- window plans ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 20, 49, 50, 53, 89, 120, 300, 1000])
def test_window_plan_covers_the_video_with_overlapping_windows(n):
    plan = plan_windows(n)
    assert plan.frames == n
    assert plan.padded_frames >= max(n, 49) and plan.padded_frames % 4 == 1
    assert plan.padded_frames - max(n, 49) < 4  # the smallest such length
    assert plan.latent_frames == (plan.padded_frames - 1) // 4 + 1
    assert plan.starts[0] == 0 and plan.starts[-1] + 13 == plan.latent_frames
    assert list(plan.starts) == sorted(set(plan.starts))
    covered = set()
    for i, start in enumerate(plan.starts):
        covered.update(range(start, start + 13))
        assert plan.frame_range(i) == (4 * start, 4 * start + 49)
        assert plan.frame_range(i)[1] <= plan.padded_frames
        if i == 0:
            assert plan.overlap(0) == 0
        else:
            assert plan.overlap(i) >= 3
    assert covered == set(range(plan.latent_frames))


def test_window_plan_refuses_an_empty_video():
    with pytest.raises(DiTError):
        plan_windows(0)
    with pytest.raises(DiTError):
        plan_windows(-5)


# -- the tiny pipeline end to end --------------------------------------------------------------------------------------


def test_49_frames_give_one_49_frame_video(base):
    assert len(base.frames) == 1 and len(base.frames[0]) == 49
    assert all(im.size == (64, 64) and im.mode == "RGB" for im in base.frames[0])
    assert video(base).shape == (49, 64, 64, 3)
    assert not base.interrupted and base.plan.num_windows == 1
    assert video(base).std() > 0  # not a blank video


def test_non_square_size(pipe, clip49, reference_image):
    out = pipe(reference_image, clip49, height=64, width=96, num_inference_steps=2, seed=0)
    assert video(out).shape == (49, 64, 96, 3)


def test_a_long_motion_renders_every_frame_in_three_windows(pipe, sample_motions, reference_image):
    start = time.perf_counter()
    out = pipe(reference_image, sample_motions[0].slice(0, 120), **RUN)
    report(HEADING, f"120 frames (3 windows), 64x64, 2 steps: {time.perf_counter() - start:.2f} s")
    assert video(out).shape == (120, 64, 64, 3)
    assert out.plan.num_windows == 3 and len(out.windows) == 3
    assert [w.frame_start for w in out.windows] == [4 * s for s in out.plan.starts]


def test_a_short_motion_renders_exactly_its_frames(pipe, sample_motions, reference_image):
    out = pipe(reference_image, sample_motions[0].slice(0, 20), **RUN)
    assert video(out).shape == (20, 64, 64, 3)


def test_num_frames_cuts_the_motion(pipe, sample_motions, reference_image):
    motion = sample_motions[0]
    assert motion.num_frames == 127
    out = pipe(reference_image, motion, num_frames=30, **RUN)
    assert video(out).shape == (30, 64, 64, 3)
    with pytest.raises(DiTError, match="longer than the motion"):
        pipe(reference_image, motion, num_frames=128, **RUN)


def test_sizes_must_be_multiples_of_16(pipe, clip49, reference_image):
    with pytest.raises(DiTError, match="16") as error:
        pipe(reference_image, clip49, height=72, width=64, num_inference_steps=2)
    assert "height" in str(error.value)
    with pytest.raises(DiTError, match="16"):
        pipe(reference_image, clip49, height=64, width=40, num_inference_steps=2)


# -- determinism and conditioning --------------------------------------------------------------------------------------


def test_same_seed_gives_the_same_video(pipe, clip49, reference_image, base):
    again = pipe(reference_image, clip49, **RUN)
    np.testing.assert_array_equal(video(again), video(base))


def test_the_motion_conditions_the_video(pipe, sample_motions, reference_image, base):
    other = pipe(reference_image, sample_motions[3].slice(0, 49), **RUN)
    assert video(other).shape == video(base).shape
    assert not np.array_equal(other.windows[0].codes, base.windows[0].codes)
    assert not np.array_equal(video(other), video(base))


def test_seed_and_guidance_change_the_video(pipe, clip49, reference_image, base):
    other_seed = video(pipe(reference_image, clip49, **{**RUN, "seed": 1}))
    assert other_seed.shape == video(base).shape and not np.array_equal(other_seed, video(base))
    no_cfg = video(pipe(reference_image, clip49, guidance_scale=1.0, **RUN))
    assert no_cfg.shape == video(base).shape and not np.array_equal(no_cfg, video(base))


# -- output types ------------------------------------------------------------------------------------------------------


def test_output_types(pipe, clip49, reference_image, base):
    """Batched as diffusers' video pipelines: "pil" (the default) a list of one list of images, "np" float32
    (1, T, H, W, 3) and "pt" float32 (1, T, 3, H, W), both in [0, 1]; all the same pixels."""
    pil = pipe(reference_image, clip49, output_type="pil", **RUN)
    np.testing.assert_array_equal(video(pil), video(base))

    as_np = pipe(reference_image, clip49, output_type="np", **RUN).frames
    assert isinstance(as_np, np.ndarray) and as_np.dtype == np.float32 and as_np.shape == (1, 49, 64, 64, 3)
    assert as_np.min() >= 0 and as_np.max() <= 1
    np.testing.assert_array_equal((as_np[0] * 255).round().astype(np.uint8), video(base))

    pt = pipe(reference_image, clip49, output_type="pt", **RUN).frames
    assert isinstance(pt, torch.Tensor) and pt.dtype == torch.float32 and tuple(pt.shape) == (1, 49, 3, 64, 64)
    assert pt.min() >= 0 and pt.max() <= 1
    as_uint8 = (pt[0].permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
    np.testing.assert_array_equal(as_uint8, video(base))

    with pytest.raises(DiTError, match="output_type"):
        pipe(reference_image, clip49, output_type="gif", **RUN)


def test_latent_output(pipe, sample_motions, base_latents, reference_image):
    assert isinstance(base_latents, torch.Tensor) and tuple(base_latents.shape) == (1, 13, 4, 8, 8)
    long = pipe(reference_image, sample_motions[0].slice(0, 120), output_type="latent", height=64, width=96,
                num_inference_steps=2)  # fmt: skip
    assert tuple(long.frames.shape) == (1, long.plan.latent_frames, 4, 8, 12) and long.plan.latent_frames == 31


# -- cancel and callbacks ----------------------------------------------------------------------------------------------


def test_cancel_from_the_step_callback(pipe, sample_motions, reference_image):
    motion = sample_motions[0].slice(0, 120)
    seen = []

    def stop_at_step_1(pipeline, step, timestep, tensors):
        seen.append((step, pipeline.total_steps))
        if step == 1:
            pipeline.request_interrupt()
        return tensors

    out = pipe(reference_image, motion, **{**RUN, "num_inference_steps": 3}, callback_on_step_end=stop_at_step_1)
    assert seen == [(0, 9), (1, 9)]
    assert out.interrupted is True and out.frames is None
    assert pipe.total_steps == 9 and out.plan.num_windows == 3
    # the next call starts afresh
    again = pipe(reference_image, motion.slice(0, 20), output_type="latent", **RUN)
    assert not again.interrupted and again.frames is not None


def test_cancel_from_another_thread(pipe, sample_motions, reference_image):
    steps: list[int] = []
    second_step = threading.Event()
    result = {}

    def slow(pipeline, step, timestep, tensors):
        steps.append(step)
        if len(steps) == 2:
            second_step.set()
        time.sleep(0.2)
        return tensors

    def render():
        result["out"] = pipe(reference_image, sample_motions[0].slice(0, 120), output_type="latent",
                             **{**RUN, "num_inference_steps": 3}, callback_on_step_end=slow)  # fmt: skip

    worker = threading.Thread(target=render)
    worker.start()
    assert second_step.wait(60), "the call never reached its second step"
    pipe.request_interrupt()
    at_request = len(steps)
    worker.join(60)
    assert not worker.is_alive()
    out = result["out"]
    assert out.interrupted and out.frames is None
    assert len(steps) <= at_request + 1 < 9
    assert steps == list(range(len(steps)))


def test_the_callback_can_replace_the_latents(pipe, clip49, reference_image, base_latents):
    calls = []

    def zero(pipeline, step, timestep, tensors):
        calls.append(step)
        return {"latents": torch.zeros_like(tensors["latents"])}

    out = pipe(reference_image, clip49, output_type="latent", callback_on_step_end=zero, **RUN)
    assert calls == [0, 1]
    assert torch.count_nonzero(base_latents) > 0
    assert torch.count_nonzero(out.frames) == 0  # the replacement is what the video is made of


# -- the reference image -----------------------------------------------------------------------------------------------


def test_one_frame_encoding_has_the_distribution_of_the_49_frame_one(pipe, reference_image):
    x = prepare_reference(reference_image, 64, 64)
    assert tuple(x.shape) == (1, 3, 64, 64) and x.min() >= -1 and x.max() <= 1
    with torch.no_grad():
        one = pipe.vae.encode(x[:, :, None]).latent_dist
        still = pipe.vae.encode(x[:, :, None].expand(-1, -1, 49, -1, -1)).latent_dist
    assert tuple(one.mean.shape) == (1, 4, 1, 8, 8) and tuple(still.mean.shape) == (1, 4, 13, 8, 8)
    for frame in range(13):
        torch.testing.assert_close(still.mean[:, :, frame], one.mean[:, :, 0], atol=1e-5, rtol=0)
        torch.testing.assert_close(still.std[:, :, frame], one.std[:, :, 0], atol=1e-5, rtol=0)


def test_reference_encoding_modes(pipe, clip49, reference_image, base_latents):
    video = pipe(reference_image, clip49, reference_encoding="video", output_type="latent", **RUN).frames
    image = pipe(reference_image, clip49, reference_encoding="image", output_type="latent", **RUN).frames
    assert video.shape == image.shape == base_latents.shape
    assert torch.isfinite(video).all()
    torch.testing.assert_close(image, base_latents, atol=0, rtol=0)  # "image" is the default
    with pytest.raises(DiTError, match="reference_encoding"):
        pipe(reference_image, clip49, reference_encoding="film", **RUN)


# -- motion tokens -----------------------------------------------------------------------------------------------------


def test_motion_tokens_give_the_same_video_as_the_motion(pipe, clip49, reference_image, base):
    codes = pipe.motion_tokenizer.encode(clip49.joints)
    assert codes.shape == (13, 24)
    tokens = pipe.motion_tokenizer.tokens(codes)
    assert tuple(tokens.shape) == (312, 32)
    out = pipe(reference_image, motion_tokens=tokens, **RUN)
    np.testing.assert_array_equal(video(out), video(base))


def test_wrong_motion_tokens_are_refused(pipe, clip49, reference_image):
    tokens = pipe.motion_tokenizer.tokens(pipe.motion_tokenizer.encode(clip49.joints))
    with pytest.raises(DiTError, match="312"):
        pipe(reference_image, motion_tokens=tokens[:300], **RUN)
    with pytest.raises(DiTError, match="312"):
        pipe(reference_image, motion_tokens=tokens[:, :16], **RUN)
    with pytest.raises(DiTError, match="windows"):
        pipe(reference_image, motion_tokens=tokens, num_frames=120, **RUN)
    with pytest.raises(DiTError, match="motion"):
        pipe(reference_image, **RUN)


# -- the official folder layout ----------------------------------------------------------------------------------------


def test_a_saved_model_folder_loads_to_the_same_pipeline(model_dir, clip49, reference_image, base):
    loaded = quiet(load_pipeline(model_dir))
    out = loaded(reference_image, clip49, **RUN)
    np.testing.assert_array_equal(video(out), video(base))


def test_missing_files_are_named(model_dir, tmp_path):
    folder = copy_model_dir(model_dir, tmp_path)
    shutil.rmtree(folder / "CogVideoX-5b" / "vae")
    with pytest.raises(ModelFileError) as error:
        load_pipeline(folder)
    assert "CogVideoX-5b" in str(error.value) and "vae" in str(error.value)

    folder = copy_model_dir(model_dir, tmp_path / "second")
    weights = [p for p in (folder / "MV-DiT" / "CogVideoX").iterdir() if p.suffix in (".safetensors", ".bin")]
    assert weights
    for path in weights:
        path.unlink()
    with pytest.raises(ModelFileError) as error:
        load_pipeline(folder)
    assert str(folder / "MV-DiT" / "CogVideoX") in str(error.value)
    assert "yanboding/MTVCrafter" in str(error.value)


def test_base_model_folder_elsewhere(model_dir, tmp_path, clip49, reference_image, base_latents):
    folder = copy_model_dir(model_dir, tmp_path / "models")
    base_dir = shutil.move(folder / "CogVideoX-5b", tmp_path / "elsewhere" / "CogVideoX-5b")
    with pytest.raises(ModelFileError, match="CogVideoX-5b"):
        load_pipeline(folder)
    loaded = quiet(load_pipeline(folder, base_model_dir=base_dir))
    latents = loaded(reference_image, clip49, output_type="latent", **RUN).frames
    torch.testing.assert_close(latents, base_latents, atol=0, rtol=0)
    with pytest.raises(ModelFileError, match="vae"):
        load_pipeline(folder, base_model_dir=tmp_path)


def test_schedulers_by_name(model_dir, clip49, reference_image, base):
    ddim = quiet(load_pipeline(model_dir, scheduler="ddim"))
    assert type(ddim.scheduler).__name__ == "CogVideoXDDIMScheduler"
    frames = video(ddim(reference_image, clip49, **RUN))
    assert frames.shape == video(base).shape and not np.array_equal(frames, video(base))
    with pytest.raises(ModelFileError, match="NoSuchScheduler"):
        load_pipeline(model_dir, scheduler="NoSuchScheduler")


# -- the command line --------------------------------------------------------------------------------------------------


def test_cli_animate_tiny_backend(tmp_path, sample_motions, reference_image, capsys):
    motion_path = tmp_path / "walk.npz"
    save_motion(replace(sample_motions[1].slice(0, 60), fps=25.0), motion_path)
    out = tmp_path / "tiny.mp4"
    code = main(["animate", "--backend", "tiny", "--size", "64x64", "--steps", "2", "--ref", str(reference_image),
                 "--motion", str(motion_path), "--out", str(out)])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.strip() == str(out.resolve())
    assert read_mp4_info(out) == {"frames": 60, "fps": 25.0, "size": (64, 64)}
    assert "60 frames" in captured.err


def mvdit_args(tmp_path, sample_motions, reference_image, size):
    motion_path = tmp_path / "short.npz"
    save_motion(sample_motions[0].slice(0, 30), motion_path)
    return ["animate", "--backend", "mvdit-7b", "--ref", str(reference_image), "--motion", str(motion_path),
            "--out", str(tmp_path / "big.mp4"), "--size", size, "--steps", "2", "--device", "cpu"]  # fmt: skip


def test_cli_mvdit_needs_a_model_folder(tmp_path, sample_motions, reference_image, capsys):
    code = main(mvdit_args(tmp_path, sample_motions, reference_image, "64x64"))
    captured = capsys.readouterr()
    assert code != 0 and "--model-dir" in captured.err
    assert not (tmp_path / "big.mp4").exists()


def test_cli_mvdit_with_a_model_folder(tmp_path, model_dir, sample_motions, reference_image, capsys):
    code = main([*mvdit_args(tmp_path, sample_motions, reference_image, "32x32"), "--model-dir", str(model_dir)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    out = tmp_path / "big.mp4"
    assert captured.out.strip() == str(out.resolve())
    assert read_mp4_info(out) == {"frames": 30, "fps": 30.0, "size": (32, 32)}


def test_cli_mvdit_with_the_tiny_model_folder_at_64x64(tmp_path, model_dir, sample_motions, reference_image):
    args = [*mvdit_args(tmp_path, sample_motions, reference_image, "64x64"), "--model-dir", str(model_dir)]
    assert main(args) == 0
    assert read_mp4_info(tmp_path / "big.mp4") == {"frames": 30, "fps": 30.0, "size": (64, 64)}


def test_bench_dit_prints_step_and_clip_rows_against_the_plain_baseline(capsys):
    assert main(["bench", "dit", "--size", "tiny", "--quick", "--no-compile"]) == 0
    out = capsys.readouterr().out
    rows = {line.split("  ")[0].strip(): line for line in out.splitlines() if line.startswith(("step", "whole"))}
    assert set(rows) == {
        "step with CFG, plain baseline",
        "step with CFG, ours",
        "whole clip (49 frames, 4 steps, VAE), plain baseline",
        "whole clip (49 frames, 4 steps, VAE), ours",
    }
    agreement = float(out.split("ours vs plain: ")[1].split()[0])
    assert agreement < 1e-5  # the baseline computes the same function
    assert "2 layers × 32 wide" in out and "64×64×49" in out


def _official_style_band(dim, pos):
    """One rotary band as the authors' pipeline computes it: float32 positions, frequencies and products."""
    freqs = 1.0 / (10000.0 ** (torch.arange(0, dim, 2, dtype=torch.float32)[: dim // 2] / dim))
    angles = torch.outer(pos, freqs)
    return angles.cos().repeat_interleave(2, dim=1), angles.sin().repeat_interleave(2, dim=1)


def test_rotary_tables_are_bit_identical_to_the_official_float32_formula():
    mean = np.load(Path(mtvcrafter.motion.__file__).parent / "data" / "mean.npy")  # the official file, float32
    frames, rows, cols = 13, 32, 32
    t = _official_style_band(16, torch.arange(frames))
    centred = [torch.from_numpy(mean[:, a] - mean[:, a].mean()) for a in range(3)]
    xyz = [_official_style_band(16, c) for c in centred]
    for k, table in enumerate(motion_rotary(frames, mean)):
        spatial = torch.cat([xyz[a][k] for a in range(3)], dim=-1)
        expected = torch.cat([t[k][:, None].expand(-1, 24, -1), spatial[None].expand(frames, -1, -1)], dim=-1)
        assert table.dtype == torch.float32 and torch.equal(table, expected.reshape(frames * 24, 64))
    h = _official_style_band(24, torch.from_numpy(np.linspace(0, rows, rows, endpoint=False, dtype=np.float32)))
    w = _official_style_band(24, torch.from_numpy(np.linspace(0, cols, cols, endpoint=False, dtype=np.float32)))
    for k, table in enumerate(video_rotary(frames, rows, cols)):
        expected = torch.cat(
            [
                t[k][:, None, None].expand(-1, rows, cols, -1),
                h[k][None, :, None].expand(frames, -1, cols, -1),
                w[k][None, None].expand(frames, rows, -1, -1),
            ],
            dim=-1,
        )
        assert torch.equal(table, expected.reshape(-1, 64))


def _oracle_run(scheduler, frames, offset_per_window=0.0, steps=8):
    """The pipeline with a stand-in transformer that always predicts (as v) the clean latents of a known
    target video, shifted by ``offset_per_window × window``: what the windowing does with the predictions."""
    from mtvcrafter.dit import COGVIDEOX_5B_SCHEDULER, make_scheduler

    pipe = tiny_pipeline()
    pipe.set_progress_bar_config(disable=True)
    pipe.register_modules(scheduler=make_scheduler(scheduler, config=dict(COGVIDEOX_5B_SCHEDULER)))
    plan = plan_windows(frames)
    target = torch.randn(1, plan.latent_frames, 4, 8, 8, generator=torch.Generator().manual_seed(3)) * 0.5
    alphas = pipe.scheduler.alphas_cumprod

    def predict_target(hidden_states, timestep, motion_tokens, joint_mean, return_dict=True):
        window = pipe.current_window
        start = plan.starts[window]
        x0 = target[:, start : start + 13] + offset_per_window * window
        a = alphas[int(timestep[0])]
        xt = hidden_states[:, :, :4].float()
        eps = (xt - a.sqrt() * x0) / (1 - a).sqrt()
        return (a.sqrt() * eps - (1 - a).sqrt() * x0,)

    pipe.transformer.forward = predict_target
    joints = np.zeros((frames, 24, 3), np.float32)
    out = pipe(np.zeros((64, 64, 3), np.uint8), joints, **SIZE, num_inference_steps=steps, output_type="latent")
    return plan, out.frames, target


@pytest.mark.parametrize("scheduler", ["dpm", "ddim"])
def test_windows_put_every_prediction_where_it_belongs(scheduler):
    plan, latents, target = _oracle_run(scheduler, 300)
    assert plan.num_windows == 8
    error = (latents - target).abs().amax(dim=(0, 2, 3, 4))
    assert float(error.max()) < 1e-3, error


def test_overlaps_blend_from_the_previous_window_to_the_next():
    plan, latents, target = _oracle_run("dpm", 130, offset_per_window=1.0)
    offset = (latents - target).mean(dim=(0, 2, 3, 4))
    for w in range(1, plan.num_windows):
        s, overlap = plan.starts[w], plan.overlap(w)
        ramp = [float(offset[s + j]) for j in range(overlap + 1)]
        assert abs(ramp[0] - (w - 1)) < 1e-3  # the new window's own first latent is never used
        if w + 1 == plan.num_windows or plan.starts[w + 1] > s + overlap:
            assert abs(ramp[-1] - w) < 1e-3  # past the overlap: the new window alone
        assert all(a < b for a, b in zip(ramp, ramp[1:], strict=False)), ramp  # a monotonic cross-fade


def test_fused_projections_compute_the_same_and_save_the_official_names(tmp_path):
    model = tiny_pipeline().transformer
    x = torch.randn(2, 2, 8, 8, 8, generator=torch.Generator().manual_seed(0))
    tokens = torch.randn(2, 48, 32, generator=torch.Generator().manual_seed(1))
    mean = mtvcrafter.motion.NormStats.official().mean
    with torch.no_grad():
        before = model(x, torch.tensor([999, 10]), tokens, mean).sample
        params = sum(p.numel() for p in model.parameters())
        model.fuse_qkv_projections()
        assert model.fused_projections
        assert sum(p.numel() for p in model.parameters()) == params  # replaced, not duplicated
        fused = model(x, torch.tensor([999, 10]), tokens, mean).sample
        model.save_pretrained(tmp_path)
        assert model.fused_projections  # saving does not undo the fusion
        reloaded = type(model).from_pretrained(tmp_path)(x, torch.tensor([999, 10]), tokens, mean).sample
        model.unfuse_qkv_projections()
        unfused = model(x, torch.tensor([999, 10]), tokens, mean).sample
    torch.testing.assert_close(fused, before, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(reloaded, before, rtol=1e-5, atol=1e-6)
    assert torch.equal(unfused, before)


@pytest.mark.parametrize(
    ("name", "why"),
    [("FlowMatchEulerDiscreteScheduler", "not a DDPM-family"), ("HeunDiscreteScheduler", "noise schedule differs")],
)
def test_schedulers_that_cannot_drive_the_model_are_refused(name, why):
    from mtvcrafter.dit import COGVIDEOX_5B_SCHEDULER, make_scheduler

    with pytest.raises(ModelFileError, match=why):
        make_scheduler(name, config=dict(COGVIDEOX_5B_SCHEDULER))


def test_tiny_backend_honours_the_scheduler_option(tmp_path, sample_motions, reference_image, capsys):
    motion_path = tmp_path / "m.npz"
    save_motion(sample_motions[0].slice(0, 20), motion_path)
    args = ["animate", "--backend", "tiny", "--ref", str(reference_image), "--motion", str(motion_path),
            "--out", str(tmp_path / "o.mp4"), "--size", "64x64", "--steps", "2"]  # fmt: skip
    assert main([*args, "--scheduler", "NoSuchScheduler"]) == 1
    assert "unknown scheduler" in capsys.readouterr().err
    assert main([*args, "--scheduler", "ddim"]) == 0


def test_bad_numbers_on_the_command_line_are_refused_before_any_work(capsys):
    for option, value in (("--seed", "99999999999999999999"), ("--guidance", "nan"), ("--guidance", "-1")):
        with pytest.raises(SystemExit) as exit_info:
            main(
                ["animate", "--backend", "tiny", "--ref", "a.png", "--motion", "m.npz", "--out", "o.mp4", option, value]
            )
        assert exit_info.value.code == 2
        assert option in capsys.readouterr().err


def test_a_damaged_config_is_named_with_its_file(model_dir, tmp_path):
    import json

    folder = tmp_path / "t"
    shutil.copytree(model_dir / "MV-DiT" / "CogVideoX", folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "activation_fn": "nope"}))
    with pytest.raises(ModelFileError, match=r"config\.json.*not a usable MV-DiT-7B configuration"):
        type(tiny_pipeline().transformer).from_pretrained(folder)


def test_bin_weights_legacy_format_load_and_foreign_pickles_need_trust(tmp_path):
    model = tiny_pipeline().transformer
    cls = type(model)
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    model.save_config(legacy)
    torch.save(model.state_dict(), legacy / "diffusion_pytorch_model.bin", _use_new_zipfile_serialization=False)
    loaded = cls.from_pretrained(legacy)
    assert all(
        torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values(), strict=True)
    )

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    model.save_config(foreign)
    torch.save({**model.state_dict(), "extra": replace}, foreign / "diffusion_pytorch_model.bin")
    with pytest.raises(ModelFileError, match="weights_only"):
        cls.from_pretrained(foreign)
    with pytest.raises(ModelFileError, match="'extra' is not a tensor"):
        cls.from_pretrained(foreign, trust_checkpoint=True)
