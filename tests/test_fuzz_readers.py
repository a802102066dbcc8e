"""Property-based fuzzing (hypothesis) of every reader of outside bytes: BVH, our .npz, AMASS .npz, the official
pickle (restricted unpickler), JSON motion, reference images, and the server's uploads (motion and image).

Real files (the official sample, real-world BVH, pickles and images) and files built by
:mod:`mtvcrafter.bench.fuzz` are changed at random and generated from scratch; each input must be read or
refused with the reader's own error (one line naming the file; from the server a 4xx naming the field and
no path of its own), within a second and 256 MB. The budget here is small and fixed (``derandomize``: the same
inputs on every run); ``mtvcrafter bench fuzz --examples N`` runs a larger one.
"""

from __future__ import annotations

import functools
from datetime import timedelta
from pathlib import Path

import pytest

pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from mtvcrafter.bench.fuzz import Reader, crop_bvh, inputs, readers, run_one  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
REALWORLD = SHARED / "realworld"
SAMPLE = SHARED / "mtvcrafter-sample"
#: Inputs per reader in `make test` (the whole module stays well under 30 s on two cores).
EXAMPLES = {
    "bvh": 250,
    "npz": 300,
    "amass": 250,
    "pickle": 300,
    "json": 300,
    "image": 250,
    "upload-motion": 300,
    "upload-image": 250,
}


def _files(folder: Path, pattern: str) -> list[Path]:
    return sorted(folder.glob(pattern)) if folder.is_dir() else []


def shared_seeds() -> dict[str, list[bytes]]:
    """Real files to mutate, where the shared data sits beside the checkout: BVH from several tools (cut to
    30 frames, so that an input reads in milliseconds), the official sample pickle and an AIST++ one, and
    reference images (PNG, JPEG). (The torch-saved pickles among the built seeds need torch, where installed.)"""
    bvh = [crop_bvh(p.read_bytes(), 30) for p in _files(REALWORLD, "*.bvh")]
    pickles = [p.read_bytes() for p in _files(SAMPLE, "sampled_data.pkl") + _files(REALWORLD, "*.pkl")]
    images = [p.read_bytes() for p in _files(SAMPLE, "woman.png") + _files(REALWORLD, "*.jpg")]
    return {"bvh": bvh, "pickle": pickles, "image": images, "upload-image": images}


@functools.cache
def all_readers() -> dict[str, Reader]:
    return {reader.name: reader for reader in readers(extra_seeds=shared_seeds(), torch_seeds=True)}


def reader_inputs(name: str):
    """The reader's inputs, built when first drawn (a reader whose extra is not installed: none)."""
    return st.deferred(lambda: inputs(all_readers()[name]) if name in all_readers() else st.just(b""))


def test_every_reader_of_outside_bytes_is_fuzzed():
    names = set(all_readers())
    assert {"bvh", "npz", "amass", "pickle", "json", "image"} <= names
    assert set(EXAMPLES) >= names


def test_the_real_world_files_are_among_the_seeds():
    if not REALWORLD.is_dir():
        pytest.skip("no shared real-world data beside the checkout")
    assert len(all_readers()["bvh"].seeds) >= 6 and len(all_readers()["pickle"].seeds) >= 5


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_the_seeds_themselves_are_read(name, tmp_path):
    """Mutations of files that do not read would test only the first check a reader makes."""
    reader = all_readers().get(name)
    if reader is None:
        pytest.skip(f"{name}: not installed here")
    outcomes = [run_one(reader, seed, tmp_path / f"seed{reader.suffix}")[0] for seed in reader.seeds]
    # two real-world BVH rigs need a bone map of their own, the AIST++ pickle is not the official layout
    assert outcomes.count("read") > len(outcomes) // 2, outcomes


def _fuzz(name: str):
    @settings(
        max_examples=EXAMPLES[name],
        deadline=timedelta(seconds=1),
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
    )
    @given(data=reader_inputs(name))
    def test(tmp_path, data):
        reader = all_readers().get(name)
        if reader is None:
            pytest.skip(f"{name}: not installed here")
        run_one(reader, data, tmp_path / f"input{reader.suffix}")

    test.__name__ = f"test_fuzz_{name.replace('-', '_')}"
    test.__doc__ = f"Fuzzing the {name} reader: only its documented error, within time and memory."
    return test


test_fuzz_bvh = _fuzz("bvh")
test_fuzz_npz = _fuzz("npz")
test_fuzz_amass = _fuzz("amass")
test_fuzz_pickle = _fuzz("pickle")
test_fuzz_json = _fuzz("json")
test_fuzz_image = _fuzz("image")
test_fuzz_upload_motion = _fuzz("upload-motion")
test_fuzz_upload_image = _fuzz("upload-image")


# -- what the fuzzing found: each input as the fuzzing found it, reduced ------------------------------------


def _npy(descr: str, shape: tuple, body: bytes) -> bytes:
    from mtvcrafter.bench.fuzz import npy_header

    return npy_header(descr, shape, False) + body


def _zip(members: dict[str, bytes]) -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _found() -> dict[str, tuple[str, bytes]]:
    import io
    import pickle

    import numpy as np

    from mtvcrafter.bench.fuzz import amass_seed

    amass = dict(np.load(io.BytesIO(amass_seed())))
    members = {}
    for name, value in amass.items():
        buffer = io.BytesIO()
        np.save(buffer, value)
        members[f"{name}.npy"] = buffer.getvalue()
    beyond_unicode = _zip({**members, "gender.npy": _npy("<U1", (), b"\xff\xff\xff\xff")})
    unbalanced_header = _zip({**members, "poses.npy": b"\x93NUMPY\x01\x00\x1f\x00{'descr': '<f8', 'shape': ((( \n"})
    joints = np.full((2, 24, 3), 100.0, dtype=np.float32)
    return {
        # numpy's header parser raised tokenize.TokenError (a traceback on the command line, a 500 on the server)
        "an .npy header with unbalanced brackets": ("amass", unbalanced_header),
        # a '<U' array holding a code point beyond Unicode: numpy raised SystemError building the str
        "text beyond Unicode in an .npz": ("amass", beyond_unicode),
        # `clip.get("video_path") or …` on an array raised "the truth value of an array … is ambiguous"
        "an official clip whose video_path is an array": (
            "pickle",
            pickle.dumps({"pose": joints, "video_path": np.zeros(0)}),
        ),
        # pickle's memo is an array as long as the largest index: 5 bytes asked for a gigabyte (the fuzzing's
        # asked for 12 GB: minutes of swapping, then the machine's memory ran out)
        "a pickle with a memo index of 134 million": ("pickle", b"\x80\x02]r\x00\x00\x00\x08."),
        # the message showed the repr of the unpickler's own object (<… object at 0x…>)
        "a pickle asking for an unknown persistent id": ("pickle", b"\x80\x02ctorch._utils\n_rebuild_tensor\n\x85Q."),
        # an unknown JSON field named "\n" was quoted raw: a message of two lines
        "a JSON field whose name is a line break": ("json", b'{"\\n": 1, "joints": []}'),
        "the same through the server": ("upload-motion", b'{"\\n": 1, "joints": []}'),
    }


@pytest.mark.parametrize("case", sorted(_found()))
def test_inputs_the_fuzzing_found_are_refused_with_the_readers_error(case, tmp_path):
    name, data = _found()[case]
    reader = all_readers().get(name)
    if reader is None:
        pytest.skip(f"{name}: not installed here")
    outcome, _, _ = run_one(reader, data, tmp_path / f"found{reader.suffix}")
    assert outcome in ("MotionError", "ObjectArrayError", "ApiError"), outcome
