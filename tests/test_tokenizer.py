"""4DMoT as a user drives it: loading checkpoints, lengths and windows, tokens, training, the CLI.

Numerical fidelity to the specification is checked separately against an independent float64
re-computation (test_tokenizer_reference.py).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import OrderedDict

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mtvcrafter.tokenizer import (  # noqa: E402
    FourDMoT,
    MotionTokenizer,
    TokenizerConfig,
    TokenizerError,
    padded_length,
    window_ranges,
)
from mtvcrafter.tokenizer.train import TrainConfig, train_tokenizer  # noqa: E402


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A tiny-configuration model with random weights, saved in the official DeepSpeed layout."""
    torch.manual_seed(0)
    model = FourDMoT(TokenizerConfig.tiny())
    path = tmp_path_factory.mktemp("tiny") / "mp_rank_00_model_states.pt"
    torch.save({"module": model.state_dict(), "ds_version": "0.14.4", "global_steps": 7}, path)
    return path


@pytest.fixture(scope="module")
def full_checkpoint(tmp_path_factory):
    torch.manual_seed(1)
    model = FourDMoT()
    folder = tmp_path_factory.mktemp("full") / "4DMoT"
    folder.mkdir()
    state = model.state_dict()
    shapes = [OrderedDict((k, v.shape) for k, v in state.items())]
    torch.save(
        {"module": state, "param_shapes": shapes, "ds_config": {"train_batch_size": 32}},
        folder / "mp_rank_00_model_states.pt",
    )
    return folder.parent


def test_official_layout_loads_at_full_size_and_gives_mv_dit_tokens(full_checkpoint, sample_motions):
    tokenizer = MotionTokenizer.from_pretrained(full_checkpoint)  # the downloaded folder: MTVCrafter/4DMoT/…
    assert sum(p.numel() for p in tokenizer.model.parameters()) == 73_488_899
    joints = sample_motions[0].joints[:49]
    codes = tokenizer.encode(joints)
    assert codes.shape == (13, 24) and codes.dtype == np.int64
    tokens = tokenizer.tokens(codes)
    assert tuple(tokens.shape) == (312, 3072)
    # Frame-major: token frame·24 + joint is that cell's codebook row.
    assert torch.equal(tokens[5 * 24 + 7], tokenizer.model.vq.codebook[codes[5, 7]])
    assert tokenizer.decode(codes).shape == (49, 24, 3)


def test_strict_loading_names_what_is_wrong(tmp_path, tiny_checkpoint):
    state = torch.load(tiny_checkpoint, weights_only=True)["module"]
    broken = dict(state)
    broken.pop("decoder.conv_out.bias")
    broken["decoder.extra.weight"] = torch.zeros(3)
    broken["encoder.conv_in.bias"] = torch.zeros(5)
    torch.save({"module": broken}, tmp_path / "broken.pt")
    with pytest.raises(TokenizerError) as info:
        MotionTokenizer.from_pretrained(tmp_path / "broken.pt")
    message = str(info.value)
    assert "broken.pt" in message and "decoder.conv_out.bias" in message and "decoder.extra.weight" in message
    assert "encoder.conv_in.bias torch.float32 (5,)" in message
    torch.save({"module": {"transformer.proj.weight": torch.zeros(2, 2)}}, tmp_path / "other.pt")
    with pytest.raises(TokenizerError, match=r"other\.pt: not a 4DMoT checkpoint .*transformer\.proj\.weight"):
        MotionTokenizer.from_pretrained(tmp_path / "other.pt")
    with pytest.raises(TokenizerError, match="yanboding/MTVCrafter"):
        MotionTokenizer.from_pretrained(tmp_path / "missing")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(TokenizerError, match=r"junk\.pt: not a readable PyTorch checkpoint"):
        MotionTokenizer.from_pretrained(tmp_path / "junk.pt")


def test_unsafe_checkpoints_need_an_explicit_opt_in(tmp_path, tiny_checkpoint):
    state = torch.load(tiny_checkpoint, weights_only=True)["module"]
    torch.save({"module": state, "args": argparse.Namespace(lr=1)}, tmp_path / "namespace.pt")
    with pytest.raises(TokenizerError, match=r"argparse\.Namespace.*trust_checkpoint=True"):
        MotionTokenizer.from_pretrained(tmp_path / "namespace.pt")
    trusted = MotionTokenizer.from_pretrained(tmp_path / "namespace.pt", trust_checkpoint=True)
    assert trusted.config == TokenizerConfig.tiny()


def test_any_length_round_trips_to_its_own_frame_count(tiny_checkpoint, sample_motions):
    tokenizer = MotionTokenizer.from_pretrained(tiny_checkpoint)
    clip = sample_motions[1].joints
    for frames in (1, 5, 8, 9, 16, 17, 48, 49, 50, 127, 299):
        result = tokenizer.reconstruct(clip[:frames])
        assert result.reconstruction_mm.shape == (frames, 24, 3), frames
        assert result.error_mm.shape == (frames, 24) and np.isfinite(result.vq_loss)
        assert result.padded_frames == padded_length(frames) >= frames
        decoded = tokenizer.decode(result.codes, num_frames=frames)
        np.testing.assert_allclose(decoded, result.reconstruction_mm, atol=1e-3)
    assert [padded_length(n) for n in (1, 8, 9, 10, 16, 17, 18, 49, 50)] == [9, 8, 9, 17, 16, 17, 25, 49, 57]


def test_windows_cover_long_motions_with_overlap(tiny_checkpoint, sample_motions):
    assert window_ranges(30) == [(0, 30)]
    assert window_ranges(49) == [(0, 49)]
    assert window_ranges(100) == [(0, 49), (40, 89), (51, 100)]
    for frames in (50, 127, 299, 653):
        windows = window_ranges(frames)
        assert windows[0][0] == 0 and windows[-1][1] == frames
        assert all(stop - start == 49 for start, stop in windows)
        assert all(b[0] < a[1] - 8 for a, b in zip(windows, windows[1:], strict=False))  # ≥ 9 shared frames
    tokenizer = MotionTokenizer.from_pretrained(tiny_checkpoint)
    encoded = tokenizer.encode_windows(sample_motions[0].joints)
    assert [(s, e) for s, e, _ in encoded] == window_ranges(127)
    assert all(codes.shape == (13, 24) for _, _, codes in encoded)
    short = tokenizer.encode_windows(sample_motions[0].joints[:20])
    assert short[0][:2] == (0, 20) and short[0][2].shape == (13, 24)


def test_batches_and_our_own_format(tmp_path, tiny_checkpoint, sample_motions):
    tokenizer = MotionTokenizer.from_pretrained(tiny_checkpoint)
    batch = np.stack([m.joints[:49] for m in sample_motions])
    codes = tokenizer.encode(batch)
    assert codes.shape == (5, 13, 24)
    for i, motion in enumerate(sample_motions):
        np.testing.assert_array_equal(codes[i], tokenizer.encode(motion.joints[:49]))
    folder = tokenizer.save_pretrained(tmp_path / "saved")
    assert {p.name for p in folder.iterdir()} == {"model.safetensors", "config.json", "mean.npy", "std.npy"}
    again = MotionTokenizer.from_pretrained(folder)
    np.testing.assert_array_equal(again.encode(batch), codes)
    assert json.loads((folder / "config.json").read_text())["channels"] == [16, 64]
    half = MotionTokenizer.from_pretrained(folder, dtype=torch.bfloat16)
    half_codes = half.encode(batch)
    assert half_codes.shape == codes.shape
    assert (half_codes == codes).mean() > 0.9  # bf16 network, float32 distances: nearly the same choices
    with pytest.raises(TokenizerError, match="no CUDA GPU|unknown device"):
        MotionTokenizer.from_pretrained(folder, device="cuda" if not torch.cuda.is_available() else "bogus")
    with pytest.raises(TokenizerError, match=r"\(T, 24, 3\)"):
        tokenizer.encode(np.zeros((10, 23, 3), np.float32))
    with pytest.raises(TokenizerError, match="codebook"):
        tokenizer.decode(np.full((3, 24), 10_000))


def test_tiny_training_lowers_the_loss_and_resumes_exactly(tmp_path, sample_pkl):
    def config(steps: int) -> TrainConfig:
        return TrainConfig(
            steps=steps,
            batch_size=8,
            warmup_steps=5,
            learning_rate=2e-3,
            save_every=15,
            model=json.loads(TokenizerConfig.tiny().to_json()),
        )

    logs: list[dict] = []
    saved = train_tokenizer(
        [sample_pkl],
        tmp_path / "whole",
        config(30),
        cpu=True,
        progress=False,
        on_step=lambda step, entry: logs.append({"step": step, **entry}),
    )
    assert [entry["step"] for entry in logs] == list(range(1, 31))
    first, last = np.mean([e["loss"] for e in logs[:5]]), np.mean([e["loss"] for e in logs[-10:]])
    assert last < 0.8 * first, (first, last)
    assert all(0 < e["usage"] <= 1 and e["perplexity"] >= 1 for e in logs)
    assert sum(e["reseeded"] for e in logs) > 0  # unused codes were given new rows
    whole = MotionTokenizer.from_pretrained(saved)
    assert whole.config == TokenizerConfig.tiny()

    # The same 30 steps stopped at 15 and resumed: model, optimiser, schedule, codebook averages
    # and the crops drawn all continue where they were, so the result is the same.
    train_tokenizer([sample_pkl], tmp_path / "split", config(15), cpu=True, progress=False)
    resumed: list[int] = []
    split_saved = train_tokenizer(
        [sample_pkl],
        tmp_path / "split",
        config(30),
        resume=True,
        cpu=True,
        progress=False,
        on_step=lambda step, _: resumed.append(step),
    )
    assert resumed == list(range(16, 31))
    split = MotionTokenizer.from_pretrained(split_saved)
    for name, value in whole.model.state_dict().items():
        torch.testing.assert_close(split.model.state_dict()[name], value, rtol=1e-5, atol=1e-6, msg=name)
    with pytest.raises(TokenizerError, match="8k or 8k\\+1"):
        train_tokenizer([sample_pkl], tmp_path / "bad", TrainConfig(clip_frames=50), cpu=True, progress=False)


def test_full_size_model_trains_a_step_on_the_cpu(tmp_path, sample_pkl):
    logs: list[dict] = []
    config = TrainConfig(steps=1, batch_size=1, save_every=1)
    saved = train_tokenizer(
        [sample_pkl],
        tmp_path / "full",
        config,
        cpu=True,
        progress=False,
        on_step=lambda step, entry: logs.append(entry),
    )
    assert len(logs) == 1 and np.isfinite(logs[0]["loss"])
    assert MotionTokenizer.from_pretrained(saved).config == TokenizerConfig()


def test_tokenize_command(tmp_path, tiny_checkpoint, sample_pkl):
    out = tmp_path / "codes.npz"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mtvcrafter",
            "tokenize",
            str(sample_pkl),
            "--clip",
            "4",
            "--checkpoint",
            str(tiny_checkpoint),
            "--out",
            str(out),
            "--eval",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "MPJPE" in result.stdout and "vq loss" in result.stdout and "codes used" in result.stdout
    data = np.load(out)
    assert data["reconstruction"].shape == (179, 24, 3) and data["codes"].shape[1] == 24
    missing = subprocess.run(
        [sys.executable, "-m", "mtvcrafter", "tokenize", str(sample_pkl), "--checkpoint", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert missing.returncode == 1 and missing.stderr.startswith("error: ") and "Traceback" not in missing.stderr


def test_train_tokenizer_command_trains_resumes_and_saves(tmp_path, sample_pkl):
    def train(*extra: str) -> subprocess.CompletedProcess:
        command = [
            sys.executable,
            "-m",
            "mtvcrafter",
            "train-tokenizer",
            str(sample_pkl),
            "--out",
            str(tmp_path),
            "--size",
            "tiny",
            "--batch-size",
            "2",
            "--save-every",
            "2",
            *extra,
        ]
        return subprocess.run(command, capture_output=True, text=True, timeout=300)

    first = train("--steps", "2")
    assert first.returncode == 0, first.stderr
    assert f"tokenizer saved in {tmp_path / 'tokenizer'}" in first.stdout
    resumed = train("--steps", "4", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-2", "step-4"]
    assert MotionTokenizer.from_pretrained(tmp_path / "tokenizer").config == TokenizerConfig.tiny()
    nothing = subprocess.run(
        [sys.executable, "-m", "mtvcrafter", "train-tokenizer", str(tmp_path / "none.pkl"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert nothing.returncode == 1 and "no such file or folder" in nothing.stderr
