"""The official pickle in the extraction script's layout (a ``(1, 24, 3)`` array per frame): a plain numpy file
that MTVCrafter's own scripts load without torch, and that we read back as written."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import numpy as np
import pytest

from mtvcrafter.motion import Motion, MotionError, load_motion, load_motions, save_motion, save_motions

LOAD_WITHOUT_TORCH = """
import json, pickle, sys
sys.modules["torch"] = None  # any attempt to import torch while unpickling fails
sys.modules["mtvcrafter"] = None
import numpy as np
with open(sys.argv[1], "rb") as handle:
    clips = pickle.load(handle)
summary = []
for i, clip in enumerate(clips):
    frames = clip["pose"]["joints3d_nonparam"]
    assert all(type(f) is np.ndarray and f.shape == (1, 24, 3) and f.dtype == np.float32 for f in frames)
    np.save(f"{sys.argv[2]}_{i}.npy", np.concatenate(frames))
    summary.append({k: v for k, v in clip.items() if k != "pose"} | {"frames": len(frames), "keys": list(clip)})
print(json.dumps(summary))
"""


def load_like_the_official_scripts(path, tmp_path) -> list[dict]:
    result = subprocess.run(
        [sys.executable, "-I", "-c", LOAD_WITHOUT_TORCH, str(path), str(tmp_path / "frames")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def globals_used(path) -> set[str]:
    """Every ``module.name`` the pickle asks for while it loads (what it would import)."""
    found: set[str] = set()

    class Recording(pickle.Unpickler):
        def find_class(self, module: str, name: str):
            found.add(f"{module}.{name}")
            return super().find_class(module, name)

    with open(path, "rb") as handle:
        Recording(handle).load()
    return found


def test_per_frame_layout_loads_with_numpy_and_pickle_only_and_reads_back_equal(tmp_path, sample_motions):
    motion = sample_motions[4]
    path = tmp_path / "extracted.pkl"
    save_motion(motion, path, layout="per-frame")
    clips = load_like_the_official_scripts(path, tmp_path)
    assert len(clips) == 1
    clip = clips[0]
    assert clip["keys"] == ["file_path", "video_path", "pose", "video_length", "video_height", "video_width"]
    assert clip["frames"] == clip["video_length"] == motion.num_frames
    assert (clip["video_height"], clip["video_width"]) == motion.image_size
    assert clip["video_path"] == motion.metadata["video_path"]
    assert np.array_equal(np.load(tmp_path / "frames_0.npy"), motion.joints)
    assert all(name.startswith("numpy.") for name in globals_used(path)), globals_used(path)

    back = load_motion(path)
    assert np.array_equal(back.joints, motion.joints)
    assert (back.name, back.image_size, back.num_frames) == (motion.name, motion.image_size, motion.num_frames)


def test_per_frame_layout_of_a_new_motion_and_of_several_clips(tmp_path, sample_motions):
    rng = np.random.default_rng(0)
    made = Motion(
        sample_motions[0].joints[:40] + rng.normal(0, 1, size=(40, 24, 3)).astype(np.float32),
        fps=25.0,
        image_size=(1080, 608),
        name="dance",
    )
    path = tmp_path / "two.pkl"
    save_motions([made, sample_motions[1]], path, layout="per-frame")
    clips = load_like_the_official_scripts(path, tmp_path)
    assert [c["frames"] for c in clips] == [40, sample_motions[1].num_frames]
    assert clips[0]["video_path"] == "./data/videos/dance.mp4"
    assert (clips[0]["video_height"], clips[0]["video_width"]) == (1080, 608)
    back = load_motions(path, fps=25.0)
    assert np.array_equal(back[0].joints, made.joints) and back[0].name == "dance" and back[0].fps == 25.0
    assert np.array_equal(back[1].joints, sample_motions[1].joints)


def test_the_array_layout_is_still_the_default_and_byte_identical(tmp_path, sample_motions):
    default, explicit = tmp_path / "default.pkl", tmp_path / "array.pkl"
    save_motions(sample_motions, default)
    save_motions(sample_motions, explicit, layout="array")
    assert default.read_bytes() == explicit.read_bytes()
    again = tmp_path / "again.pkl"
    save_motions(load_motions(explicit), again)
    assert again.read_bytes() == explicit.read_bytes()
    with open(explicit, "rb") as handle:
        assert isinstance(pickle.load(handle)[0]["pose"], np.ndarray)


def test_layout_mistakes_are_one_line_errors(tmp_path, sample_motions):
    with pytest.raises(MotionError, match="unknown layout 'frames'"):
        save_motion(sample_motions[0], tmp_path / "m.pkl", layout="frames")
    with pytest.raises(MotionError, match="write a .pkl"):
        save_motion(sample_motions[0], tmp_path / "m.npz", layout="per-frame")
    assert not list(tmp_path.iterdir())
