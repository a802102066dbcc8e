"""Hardened motion and image input, as a client of a real server on loopback and a user of the command line
meet it:

- crafted or damaged ``.npz`` uploads (bad CRC, a broken deflate stream, an unknown compression method, the
  encryption flag, a cut archive, a damaged ``.npy`` header) are refused as 422 naming the motion — never a 500
  or a reset connection;
- a large JSON motion is read in bounded memory (the server's peak resident memory is measured), and one beyond
  the frame limit is refused early;
- every field of a JSON or ``.npz`` motion is checked at submit (name length, fps range, finite joints, frame
  count, frame start, camera, info size), so that an accepted job never fails for its input, and no error
  message shows a path of the server;
- a reference that is not an image is refused in one line naming the accepted formats;
- on the command line the same readers give one line naming the file, never a traceback, and never suggest
  loading a file unsafely.
"""

from __future__ import annotations

import io
import json
import math
import os
import random
import re
import struct
import subprocess
import sys
import threading
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from PIL import Image  # noqa: E402
from reporting import report  # noqa: E402

from mtvcrafter.cli import main  # noqa: E402
from mtvcrafter.motion.npz import motion_to_arrays  # noqa: E402
from mtvcrafter.render import RenderError, open_reference  # noqa: E402
from mtvcrafter_server.local import free_port  # noqa: E402

MAX_FRAMES = 400
PARAMS = {"backend": "preview", "width": 64, "height": 64}
#: An absolute path of this machine in a message (a server must never show one).
ABSOLUTE_PATH = re.compile(r"(^|[\s'\"(=])(/[\w.-]+){2,}")


# -- servers -----------------------------------------------------------------------------------------------


@contextmanager
def serving(folder: Path, **env: str):
    """``mtvcrafter serve`` on loopback (as :func:`mtvcrafter_server.local.local_server`), yielding its URL and
    its process id (whose memory the tests read)."""
    port = free_port()
    command = [sys.executable, "-m", "mtvcrafter", "serve", "--port", str(port), "--data-dir", str(folder / "data")]
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": "", **env}
    environment.pop("MTVCRAFTER_TOKEN", None)
    with open(folder / "server.log", "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log, env=environment)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, (folder / "server.log").read_text()
            try:
                if httpx.get(f"{url}/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        yield url, process.pid, folder / "data"
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server that takes motions of at most 400 frames."""
    with serving(tmp_path_factory.mktemp("hardening"), MTVCRAFTER_MAX_FRAMES=str(MAX_FRAMES)) as running:
        yield running


@pytest.fixture(scope="module")
def clip(sample_motions):
    return sample_motions[0].slice(0, 12)


@pytest.fixture(scope="module")
def reference() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((64, 48, 3), 200, dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def submit(url: str, motion: bytes, reference: bytes, name: str = "motion.npz", timeout: float = 60) -> httpx.Response:
    files = {"motion": (name, motion, "application/octet-stream"), "reference": ("ref.png", reference)}
    return httpx.post(f"{url}/v1/jobs", files=files, data={"params": json.dumps(PARAMS)}, timeout=timeout)


def refused(response: httpx.Response, status: int, field: str | None = None, data_dir: Path | None = None) -> dict:
    """The error of a refused request: its status, its field (or that it starts with ``motion``), a message of
    one line with no path of the server in it."""
    assert response.status_code == status, f"expected {status}, got {response.status_code}: {response.text}"
    error = response.json()["error"]
    message = error["message"]
    assert message and "\n" not in message and len(message) < 1000, message
    assert not ABSOLUTE_PATH.search(message), f"a path of the server in: {message}"
    if data_dir is not None:
        assert str(data_dir.resolve()) not in message and str(data_dir) not in message
    assert not re.search(r"<[^<>]* at 0x[0-9a-fA-F]+>", message), message
    if field is not None:
        assert error.get("field") == field, error
    return error


def healthy(url: str) -> None:
    assert httpx.get(f"{url}/v1/health", timeout=10).status_code == 200


def job_count(url: str) -> int:
    return len(httpx.get(f"{url}/v1/jobs", params={"limit": 500}, timeout=10).json())


# -- crafted .npz ------------------------------------------------------------------------------------------


def npz(arrays: dict, compressed: bool) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


def header_offsets(data: bytes, member: str) -> tuple[int, int]:
    """Where the local header and the central-directory entry of ``member`` start."""
    name = member.encode()
    local = central = -1
    for match in re.finditer(rb"PK\x03\x04", data):
        start = match.start()
        length = struct.unpack_from("<H", data, start + 26)[0]
        if data[start + 30 : start + 30 + length] == name:
            local = start
    for match in re.finditer(rb"PK\x01\x02", data):
        start = match.start()
        length = struct.unpack_from("<H", data, start + 28)[0]
        if data[start + 46 : start + 46 + length] == name:
            central = start
    assert local >= 0 and central >= 0
    return local, central


def patched(data: bytes, member: str, local_offset: int, central_offset: int, fmt: str, value: int) -> bytes:
    """``data`` with one field of ``member``'s headers (local and central) set to ``value``."""
    out = bytearray(data)
    local, central = header_offsets(data, member)
    struct.pack_into(fmt, out, local + local_offset, value)
    struct.pack_into(fmt, out, central + central_offset, value)
    return bytes(out)


def broken_deflate(data: bytes, member: str) -> bytes:
    """The member's deflate stream starting with a reserved block type: inflating it fails (a zlib error)."""
    out = bytearray(data)
    local, _ = header_offsets(data, member)
    name_length, extra_length = struct.unpack_from("<HH", data, local + 26)
    out[local + 30 + name_length + extra_length] = 0xFF
    return bytes(out)


def bad_npy_header(arrays: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, value in arrays.items():
            member = io.BytesIO()
            np.save(member, value)
            raw = member.getvalue()
            if name == "joints":
                raw = raw[:10] + b"{'descr': '<f4', 'shape': ((((" + raw[40:]
            archive.writestr(f"{name}.npy", raw)
    return buffer.getvalue()


def other_method(arrays: dict, method: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, value in arrays.items():
            member = io.BytesIO()
            np.save(member, value)
            archive.writestr(f"{name}.npy", member.getvalue())
    return buffer.getvalue()


def crafted_npz(clip) -> dict[str, bytes]:
    arrays = motion_to_arrays(clip)
    stored, deflated = npz(arrays, False), npz(arrays, True)
    empty = io.BytesIO()
    zipfile.ZipFile(empty, "w").close()
    return {
        "bad CRC": patched(stored, "joints.npy", 14, 16, "<I", 0x12345678),
        "zlib error": broken_deflate(deflated, "joints.npy"),
        "unknown compression method": patched(deflated, "joints.npy", 8, 10, "<H", 99),
        "encrypted flag": patched(deflated, "joints.npy", 6, 8, "<H", 1),
        "bzip2 member": other_method(arrays, zipfile.ZIP_BZIP2),
        "cut in half": stored[: len(stored) // 2],
        "empty archive": empty.getvalue(),
        "damaged .npy header": bad_npy_header(arrays),
    }


CRAFTED = (
    "bad CRC",
    "zlib error",
    "unknown compression method",
    "encrypted flag",
    "bzip2 member",
    "cut in half",
    "empty archive",
    "damaged .npy header",
)


@pytest.mark.parametrize("case", CRAFTED)
def test_crafted_npz_uploads_are_422_naming_the_motion(server, clip, reference, case):
    url, _, data_dir = server
    before = job_count(url)
    error = refused(submit(url, crafted_npz(clip)[case], reference), 422, data_dir=data_dir)
    assert error["code"] == "invalid_motion" and error["field"].split(".")[0] == "motion", error
    assert "motion.npz" in error["message"]
    assert job_count(url) == before
    healthy(url)


def test_mutated_npz_uploads_never_answer_5xx(server, clip, reference):
    """The tester's mutation run, fixed seed: bytes flipped or set, header fields and members cut, in stored
    and deflated archives; each answered 202 or 4xx, never 5xx, and the connection is never reset."""
    url, _, data_dir = server
    arrays = motion_to_arrays(clip)
    seeds = [npz(arrays, False), npz(arrays, True)]
    rng = random.Random(57)
    statuses = []
    for _ in range(60):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(len(data))
            kind = rng.choice(("flip", "byte", "field", "cut"))
            if kind == "flip":
                data[pos] ^= 1 << rng.randrange(8)
            elif kind == "byte":
                data[pos] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))
            elif kind == "field" and pos + 2 <= len(data):
                struct.pack_into("<H", data, pos, rng.choice((1, 8, 9, 12, 14, 99, 0xFFFF)))
            else:
                del data[pos:]
        response = submit(url, bytes(data) or b"PK", reference)
        statuses.append(response.status_code)
        if response.status_code != 202:
            refused(response, response.status_code, data_dir=data_dir)
            assert 400 <= response.status_code < 500
    assert set(statuses) <= {202, 413, 415, 422}, statuses
    healthy(url)


# -- JSON motion: memory and fields ------------------------------------------------------------------------


def json_motion(joints: np.ndarray, **fields) -> bytes:
    return json.dumps({"joints": joints.tolist(), "fps": 30, **fields}).encode()


def big_json(clip, size_mb: float) -> tuple[bytes, int]:
    """A JSON motion of about ``size_mb`` MB, numbers to a tenth of a millimetre (many numbers per MB: what
    costs most in memory when each becomes a Python object)."""
    frame = json.dumps(clip.joints[0].astype(np.float64).round(1).tolist(), separators=(",", ":")).encode()
    count = int(size_mb * 2**20 / (len(frame) + 1))
    return b'{"fps": 30, "joints": [' + b",".join([frame] * count) + b"]}", count


def memory_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key):
                return int(line.split()[1])
    raise AssertionError(f"no {key} for {pid}")


def reset_peak(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads the server's memory from /proc")
def test_a_62_mb_json_motion_is_read_in_bounded_memory(tmp_path, clip):
    """62 MB of JSON (about 110,000 frames) on a server that takes them all: read, then refused for its image
    (so no job runs), with the server's peak resident memory measured — once, then four at once (each as a
    Python object per number, the same upload took 780 MB at its peak)."""
    data, frames = big_json(clip, 62)
    with serving(tmp_path, MTVCRAFTER_MAX_FRAMES="200000") as (url, pid, data_dir):
        refused(submit(url, json_motion(clip.joints), b"not an image"), 415, "reference")  # warm up
        time.sleep(0.5)
        baseline = memory_kb(pid, "VmRSS:")
        exact = reset_peak(pid)
        started = time.monotonic()
        refused(submit(url, data, b"not an image", name="motion.json", timeout=120), 415, "reference", data_dir)
        one_s = time.monotonic() - started
        peak_one = (memory_kb(pid, "VmHWM:") - baseline) / 1024
        time.sleep(0.5)
        left = (memory_kb(pid, "VmRSS:") - baseline) / 1024

        reset_peak(pid)
        answers: list[int] = []

        def post() -> None:
            answers.append(submit(url, data, b"not an image", name="motion.json", timeout=300).status_code)

        threads = [threading.Thread(target=post) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        peak_four = (memory_kb(pid, "VmHWM:") - baseline) / 1024
        healthy(url)
    report(
        "upload hardening",
        f"62 MB JSON motion ({frames:,} frames): read in {one_s:.1f} s; server peak +{peak_one:.0f} MB, "
        f"+{left:.0f} MB left resident; four at once: peak +{peak_four:.0f} MB"
        + ("" if exact else " (peaks since start: /proc/<pid>/clear_refs not writable)"),
    )
    assert answers == [415] * 4
    assert peak_one < 300, f"one 62 MB JSON upload took {peak_one:.0f} MB"
    assert left < 150, f"{left:.0f} MB stayed resident after the upload"
    assert peak_four < 900, f"four 62 MB JSON uploads took {peak_four:.0f} MB"


def test_a_json_motion_beyond_the_frame_limit_is_refused_early(server, clip, reference):
    url, pid, data_dir = server
    data, _ = big_json(clip, 62)
    started = time.monotonic()
    error = refused(submit(url, data, reference, name="motion.json", timeout=120), 413, "motion.joints", data_dir)
    assert error["code"] == "motion_too_long" and f"at most {MAX_FRAMES}" in error["message"]
    assert time.monotonic() - started < 30
    healthy(url)


def _json_cases(clip) -> dict[str, tuple[bytes, int, str]]:
    joints = clip.joints.astype(np.float64)
    huge = joints.copy()
    huge[3, 5, 1] = 1e39  # finite in JSON, infinite as float32
    frame = joints[0].tolist()

    def with_fields(**fields) -> bytes:
        return json.dumps({"joints": joints.tolist(), **fields}).encode()

    return {
        "name of 1,000,000 characters": (with_fields(name="n" * 1_000_000), 422, "motion.name"),
        "fps 0": (with_fields(fps=0), 422, "motion.fps"),
        "fps 5000": (with_fields(fps=5000), 422, "motion.fps"),
        "fps as text": (with_fields(fps="30"), 422, "motion.fps"),
        "fps NaN": (with_fields(fps=float("nan")), 422, "motion.fps"),
        "fps given twice": (with_fields(fps=30).replace(b'"fps": 30', b'"fps": 30, "fps": 20'), 422, "motion.fps"),
        "frame_start 1.5": (with_fields(frame_start=1.5), 422, "motion.frame_start"),
        "frame_start 1e400": (with_fields(frame_start=7).replace(b": 7", b": 1e400"), 422, "motion.frame_start"),
        "fov_deg 500": (with_fields(fov_deg=500), 422, "motion.fov_deg"),
        "image_size 0 high": (with_fields(image_size=[0, 10]), 422, "motion.image_size"),
        "joint beyond float32": (json.dumps({"joints": huge.tolist()}).encode(), 422, "motion.joints"),
        "Infinity in the joints": (
            json.dumps({"joints": [[[math.inf, 0, 0], *frame[1:]]]}).encode(),
            422,
            "motion.joints",
        ),
        "no frames": (json.dumps({"joints": []}).encode(), 422, "motion.joints"),
        "23 joints": (json.dumps({"joints": [frame[:23]]}).encode(), 422, "motion.joints"),
        "an unknown field": (with_fields(extra={"a": 1}), 422, "motion"),
        "text after the object": (with_fields() + b" {}", 422, "motion"),
        "more frames than the server takes": (
            json.dumps({"joints": [frame] * (MAX_FRAMES + 1)}).encode(),
            413,
            "motion.joints",
        ),
    }


JSON_CASES = (
    "name of 1,000,000 characters",
    "fps 0",
    "fps 5000",
    "fps as text",
    "fps NaN",
    "fps given twice",
    "frame_start 1.5",
    "frame_start 1e400",
    "fov_deg 500",
    "image_size 0 high",
    "joint beyond float32",
    "Infinity in the joints",
    "no frames",
    "23 joints",
    "an unknown field",
    "text after the object",
    "more frames than the server takes",
)


@pytest.mark.parametrize("case", JSON_CASES)
def test_every_field_of_a_json_motion_is_checked_at_submit(server, clip, reference, case):
    url, _, data_dir = server
    data, status, field = _json_cases(clip)[case]
    before = job_count(url)
    refused(submit(url, data, reference, name="motion.json"), status, field, data_dir)
    assert job_count(url) == before


@pytest.mark.parametrize(
    ("case", "field"), [("name of 100,000 characters", "motion.name"), ("100 kB of notes", "motion.info")]
)
def test_an_npz_whose_info_could_not_be_stored_is_422(server, clip, reference, case, field):
    url, _, data_dir = server
    arrays = motion_to_arrays(clip)
    info = json.loads(str(arrays["info"]))
    if field == "motion.name":
        info["name"] = "n" * 100_000
    else:
        info["notes"] = ["x" * 1000] * 100
    arrays["info"] = np.array(json.dumps(info))
    refused(submit(url, npz(arrays, True), reference), 422, field, data_dir)


def test_a_motion_at_the_limits_is_accepted_and_its_job_succeeds(server, clip, reference):
    """What submit accepts, the job can read back: a name of 256 characters, fps, start, camera."""
    url, _, _ = server
    data = json_motion(clip.joints, name="é" * 256, fps=24, frame_start=5, fov_deg=40, image_size=[480, 640])
    response = submit(url, data, reference, name="motion.json")
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    deadline = time.monotonic() + 120
    while (job := httpx.get(f"{url}/v1/jobs/{job_id}", timeout=10).json())["status"] not in (
        "succeeded",
        "failed",
        "cancelled",
    ):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    assert job["status"] == "succeeded", job
    assert job["frames"] == clip.num_frames and job["fps"] == 24


def test_no_error_message_shows_a_path_of_the_server(tmp_path, clip):
    """An error passed on from below (here: a checkpoint that cannot be loaded names its file) keeps the file's
    name, not where it lies on the server."""
    junk = tmp_path / "models" / "4DMoT" / "junk.pt"
    junk.parent.mkdir(parents=True)
    junk.write_bytes(b"not a checkpoint")
    with serving(tmp_path, MTVCRAFTER_TOKENIZER=str(junk)) as (url, _, data_dir):
        files = {"motion": ("motion.npz", npz(motion_to_arrays(clip), False))}
        response = httpx.post(f"{url}/v1/tokenize", files=files, timeout=60)
        error = refused(response, 503, data_dir=data_dir)
        assert "junk.pt" in error["message"] and str(junk.parent) not in error["message"], error


# -- reference images --------------------------------------------------------------------------------------


def test_a_reference_that_is_not_an_image_is_one_line_naming_the_formats(server, clip, reference):
    url, _, data_dir = server
    motion = json_motion(clip.joints)
    error = refused(submit(url, motion, b"not an image at all", name="motion.json"), 415, "reference", data_dir)
    assert "not an image" in error["message"] and "PNG, JPEG, WebP or BMP" in error["message"], error
    gif = io.BytesIO()
    Image.new("RGB", (8, 8)).save(gif, "GIF")
    error = refused(submit(url, motion, gif.getvalue(), name="motion.json"), 415, "reference", data_dir)
    assert "PNG, JPEG, WebP or BMP" in error["message"], error
    error = refused(submit(url, motion, reference[: len(reference) // 2], name="motion.json"), 422, "reference")
    assert error["code"] == "invalid_image" and "damaged" in error["message"], error


def test_open_reference_says_in_one_line_that_a_file_is_not_an_image(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(RenderError) as caught:
        open_reference(text)
    message = str(caught.value)
    assert message == f"{text}: not a readable image: not an image file (reference images are PNG, JPEG, WebP, BMP …)"
    cut = tmp_path / "cut.png"
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, "PNG")
    cut.write_bytes(buffer.getvalue()[:400])
    with pytest.raises(RenderError) as caught:
        open_reference(cut)
    assert str(caught.value).startswith(f"{cut}: not a readable image: the image is damaged (")
    assert "\n" not in str(caught.value)


# -- the same readers on the command line ------------------------------------------------------------------


def motion_info(path: Path, capsys) -> tuple[int, str]:
    code = main(["motion", "info", str(path)])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "not a readable .npz file: the file is empty"),
        (b"hello, this is text\n", "not a readable .npz file: it is text, not an .npz archive"),
        (b"\x80\x04\x95", "not a readable .npz file: it is a Python pickle, not an .npz archive"),
        (
            b"\x93NUMPY\x01\x00",
            "not a readable .npz file: it is a single .npy array, not an .npz archive of named arrays",
        ),
    ],
)
def test_a_file_named_npz_that_is_not_one_is_one_line_without_unsafe_advice(tmp_path, capsys, content, expected):
    path = tmp_path / "motion.npz"
    path.write_bytes(content)
    code, err = motion_info(path, capsys)
    assert code == 1
    assert err == f"error: {path}: {expected}\n"
    assert "allow_pickle" not in err and "pickled data" not in err and "Traceback" not in err


@pytest.mark.parametrize("case", CRAFTED)
def test_crafted_npz_files_are_one_line_naming_the_file(tmp_path, capsys, clip, case):
    path = tmp_path / "crafted.npz"
    path.write_bytes(crafted_npz(clip)[case])
    code, err = motion_info(path, capsys)
    assert code == 1, err
    assert err.startswith(f"error: {path}: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and "allow_pickle" not in err
