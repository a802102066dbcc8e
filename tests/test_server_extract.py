"""Video → motion through the HTTP server: real ``mtvcrafter serve`` processes on loopback, the stand-in NLF model
(a real TorchScript file, :func:`mtvcrafter.extract.write_standin_model`) and real video files written by the
bundled ffmpeg.

What a client sees: ``POST /v1/extract`` and the job routes (events, cancel, the motion .npz), the refusals of
hostile uploads with nothing left in the data folder, the jobs kept across a restart, and extraction offered only
where the server has a model (with the reason where it has none)."""

from __future__ import annotations

import json
import os
import sqlite3
import struct
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("torch")
imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")

from conftest import TERMINAL, ServeProcess, declared_body_answer  # noqa: E402

from mtvcrafter.client import Client, ServerError  # noqa: E402
from mtvcrafter.extract import figure_video, write_standin_model, write_test_video  # noqa: E402
from mtvcrafter.motion import load_motion  # noqa: E402

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
#: the main server's video size limit: small, so that a refused upload is quick to make
MAX_VIDEO_MB = 1
#: seconds of the long video: the stand-in needs about 25 ms a 1280x720 frame here, so an extraction of it runs for
#: many seconds (it is always cancelled or its server killed)
LONG_S = 40


# -- servers -----------------------------------------------------------------------------------------------


class Server(ServeProcess):
    """One ``mtvcrafter serve`` subprocess, with what the extraction tests ask of it."""

    def job(self, job_id: str) -> dict:
        return self.client.get(f"/v1/jobs/{job_id}").json()

    def wait(self, job_id: str, check, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while not check(job := self.job(job_id)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert check(job), f"job not as expected after {timeout} s: {job}\n{self.output()}"
        return job

    def extract(self, video: Path, params: dict | None = None, name: str | None = None) -> httpx.Response:
        data = {"params": json.dumps(params)} if params is not None else {}
        return self.client.post("/v1/extract", files={"video": (name or video.name, video.read_bytes())}, data=data)

    def leftovers(self) -> tuple[list[str], list[str]]:
        """What the data folder's scratch folder holds, and the job folders."""
        return sorted(p.name for p in (self.data_dir / "tmp").iterdir()), sorted(
            p.name for p in (self.data_dir / "jobs").iterdir()
        )


# -- inputs ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """The stand-in model and the videos: two crossing figures (48 frames at 25 fps) and a long plain one."""
    folder = tmp_path_factory.mktemp("extract-inputs")
    figures = figure_video(frames=48, size=(64, 64), fps=25)
    long = folder / "long.mp4"
    subprocess.run(
        [FFMPEG, "-v", "error", "-f", "lavfi", "-i", "color=gray:size=1280x720:rate=25", "-t", str(LONG_S)]
        + ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(long)],
        check=True,
    )
    return {
        "model": write_standin_model(folder / "nlf-standin.torchscript", mode="figures"),
        "dance": write_test_video(folder / "dance.mp4", figures.frames, figures.fps),
        "long": long,
    }


@pytest.fixture(scope="module")
def server(inputs, tmp_path_factory):
    folder = tmp_path_factory.mktemp("extract-server")
    srv = (
        Server(folder / "data", folder / "server.log", "--nlf", str(inputs["model"]), "--max-video-mb", "1")
        .start()
        .wait_ready()
    )
    yield srv
    srv.stop()


def assert_error(response, status: int, code: str, field: str | None = None) -> str:
    assert response.status_code == status, f"expected {status}, got {response.status_code}: {response.text}"
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code, error
    if field is not None:
        assert error.get("field") == field, error
    assert "\n" not in error["message"], error
    return error["message"]


def mkv(folder: Path, name: str, size: int, codec: str = "libx264") -> bytearray:
    """A 0.2 s gray Matroska video, as bytes to edit."""
    path = folder / name
    subprocess.run(
        [FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i", f"color=gray:size={size}x{size}:rate=25", "-t", "0.2"]
        + ["-c:v", codec, "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )
    return bytearray(path.read_bytes())


def ten_hour_header(folder: Path) -> bytes:
    """A 0.2 s Matroska file whose header declares 10 hours (its Duration element, in ms, rewritten)."""
    data = mkv(folder, "short.mkv", 32)
    at = data.index(b"\x44\x89\x88") + 3
    data[at : at + 8] = struct.pack(">d", 10 * 3600 * 1000.0)
    return bytes(data)


def huge_frame_header(folder: Path) -> bytes:
    """A 2 kB FFV1 Matroska file whose header declares 16000x16000 frames (FFV1 keeps the size in the container)."""
    data = mkv(folder, "small.mkv", 256, codec="ffv1")
    for element in (b"\xb0\x82\x01\x00", b"\xba\x82\x01\x00"):  # PixelWidth, PixelHeight: 256
        at = data.index(element)
        data[at + 2 : at + 4] = (16000).to_bytes(2, "big")
    return bytes(data)


# -- an extraction, end to end -----------------------------------------------------------------------------


def test_a_video_becomes_a_motion_job_with_progress_and_an_npz_result(server, inputs, tmp_path):
    events: list[dict] = []
    with Client(server.url) as client:
        path, final = client.extract_motion(inputs["dance"], tmp_path / "dance.npz", on_event=events.append)
    assert final["kind"] == "extract" and final["backend"] == "nlf" and final["status"] == "succeeded"
    assert (final["frames"], final["fps"], final["width"], final["height"]) == (48, 25.0, 64, 64)
    assert final["message"] == "done: the performer was found in 48 of 48 frames"

    # the events: queued, then running through the extraction's phases with growing progress, then succeeded
    statuses = [e["status"] for e in events]
    assert (
        statuses[0] == "queued" and statuses[-1] == "succeeded" and set(statuses) == {"queued", "running", "succeeded"}
    )
    running = [e for e in events if e["status"] == "running"]
    phases = list(dict.fromkeys(e["phase"] for e in running))
    assert phases[-3:] == ["decoding+detecting", "tracking", "smoothing"], phases
    progress = [e["progress"] for e in running]
    assert progress == sorted(progress) and progress[-1] == 1.0, progress
    assert any(0 < p < 0.9 for p in progress), "no progress reported while decoding and detecting"

    motion = load_motion(path)
    assert motion.num_frames == 48 and motion.fps == 25.0
    assert motion.frame_valid is not None and motion.frame_valid.shape == (48,) and motion.frame_valid.all()
    assert motion.joint_uncertainty is not None and motion.joint_uncertainty.shape == (48, 24)
    assert motion.image_size == (64, 64) and motion.name == "dance"
    assert motion.metadata["video_path"] == "dance.mp4"
    assert np.isfinite(motion.joints).all()

    result = server.client.get(f"/v1/jobs/{final['id']}/result")
    assert result.status_code == 200 and result.content == path.read_bytes()
    assert result.headers["content-type"] == "application/octet-stream"
    assert f'filename="mtvcrafter-{final["id"]}.npz"' in result.headers["content-disposition"]
    # what the schema declares for these answers
    schema = server.client.get("/openapi.json").json()
    assert "202" in schema["paths"]["/v1/extract"]["post"]["responses"]
    declared = schema["paths"]["/v1/jobs/{job_id}/result"]["get"]["responses"]["200"]["content"]
    assert "application/octet-stream" in declared and "video/mp4" in declared
    listed = {job["id"]: job for job in server.client.get("/v1/jobs").json()}
    assert listed[final["id"]]["kind"] == "extract"


def test_cancel_stops_a_running_extraction_and_identical_videos_share_one_job(server, inputs, tmp_path):
    long = server.extract(inputs["long"], {"batch_size": 1})
    assert long.status_code == 202, long.text
    long_id = long.json()["id"]
    # the same video with the same params while the worker is busy: one queued job, joined
    first = server.extract(inputs["dance"], {"smooth": "one-euro"})
    again = server.extract(inputs["dance"], {"smooth": "one-euro"})
    assert first.status_code == again.status_code == 202, again.text
    assert first.json()["id"] == again.json()["id"] and again.json()["status"] == "queued"
    dance_id = first.json()["id"]

    server.wait(long_id, lambda j: j["phase"] == "decoding+detecting" and j["progress"] > 0)
    asked = time.monotonic()
    cancelling = server.client.delete(f"/v1/jobs/{long_id}")
    assert cancelling.status_code == 200 and cancelling.json()["status"] == "running", cancelling.text
    ended = server.wait(long_id, lambda j: j["status"] in TERMINAL, timeout=20)
    assert ended["status"] == "cancelled" and ended["progress"] < 0.9, ended
    assert time.monotonic() - asked < 10, "the cancel did not land at the next batch"
    assert_error(server.client.get(f"/v1/jobs/{long_id}/result"), 409, "no_result")

    done = server.wait(dance_id, lambda j: j["status"] in TERMINAL)
    assert done["status"] == "succeeded" and not done["cached"], done
    # submitted again once it is done: its result at once, as a job of its own
    reused = server.extract(inputs["dance"], {"smooth": "one-euro"})
    assert reused.status_code == 202 and reused.json()["id"] != dance_id
    assert reused.json()["status"] == "succeeded" and reused.json()["cached"], reused.text
    a = server.client.get(f"/v1/jobs/{dance_id}/result").content
    assert a[:2] == b"PK" and server.client.get(f"/v1/jobs/{reused.json()['id']}/result").content == a
    # other params: another motion, as asked
    other = server.extract(inputs["dance"], {"smooth": "none", "fov_deg": 40})
    assert other.status_code == 202 and other.json()["id"] != dance_id and not other.json()["cached"]
    assert server.wait(other.json()["id"], lambda j: j["status"] in TERMINAL)["status"] == "succeeded"
    with Client(server.url) as client:
        narrow = load_motion(client.download(other.json()["id"], tmp_path / "narrow.npz"))
    assert narrow.fov_deg == pytest.approx(40) and "not smoothed" in " ".join(narrow.notes)


def test_the_clients_extraction_cancels_the_job_when_asked(server, inputs, tmp_path):
    seen: list[dict] = []

    def cancelled() -> bool:  # e.g. a Cancel button: pressed once the frames are being read
        return any(e["phase"] == "decoding+detecting" for e in seen)

    with Client(server.url) as client, pytest.raises(ServerError, match=r"job \w+ cancelled: cancelled"):
        client.extract_motion(inputs["long"], tmp_path / "long.npz", {"batch_size": 2}, seen.append, cancelled)
    assert seen[-1]["status"] == "cancelled" and not (tmp_path / "long.npz").exists()


def test_clean_cleans_the_motion_as_clean_motion_does_and_is_part_of_the_cache_key(server, inputs, tmp_path):
    from mtvcrafter.motion.clean import clean_motion

    with Client(server.url) as client:
        plain_path, plain_job = client.extract_motion(inputs["dance"], tmp_path / "plain.npz", {"smooth": "none"})
        events: list[dict] = []
        clean_path, clean_job = client.extract_motion(
            inputs["dance"], tmp_path / "clean.npz", {"smooth": "none"}, events.append, clean=0.7
        )
    # only clean differs: another job, not the plain one's cache entry, another motion
    assert clean_job["id"] != plain_job["id"] and not clean_job["cached"], clean_job
    assert clean_job["params"]["clean"] == 0.7 and plain_job["params"]["clean"] is None
    plain, cleaned = load_motion(plain_path), load_motion(clean_path)
    assert np.abs(cleaned.joints - plain.joints).max() > 1.0  # mm

    # what the library makes of the plain motion, with the feet planted as `motion extract --clean` plants them
    expected, report = clean_motion(plain, smooth=0.7)
    np.testing.assert_allclose(cleaned.joints, expected.joints, rtol=0, atol=1e-3)
    assert (cleaned.num_frames, cleaned.fps, cleaned.name) == (plain.num_frames, plain.fps, plain.name)
    # reported as the command line reports it: the motion's note, and the job's last progress event
    note = f"cleaned: {report.summary()}"
    assert any(n.endswith(note) for n in cleaned.notes), cleaned.notes
    running = [e for e in events if e["status"] == "running"]
    assert (running[-1]["phase"], running[-1]["message"], running[-1]["progress"]) == ("cleaning", note, 1.0)

    # the same clean again: that cache entry; another strength: another job and motion
    again = server.extract(inputs["dance"], {"smooth": "none", "clean": 0.7}).json()
    assert again["cached"] and server.client.get(f"/v1/jobs/{again['id']}/result").content == clean_path.read_bytes()
    softer = server.extract(inputs["dance"], {"smooth": "none", "clean": 0.2}).json()
    assert not softer["cached"], softer
    softer = server.wait(softer["id"], lambda j: j["status"] in TERMINAL)
    assert softer["status"] == "succeeded", softer
    with Client(server.url) as client:
        soft = load_motion(client.download(softer["id"], tmp_path / "soft.npz"))
    np.testing.assert_allclose(soft.joints, clean_motion(plain, smooth=0.2)[0].joints, rtol=0, atol=1e-3)
    assert np.abs(soft.joints - cleaned.joints).max() > 0.1
    # and the plain params still find the plain motion (clean left out of the key when not asked)
    assert server.extract(inputs["dance"], {"smooth": "none"}).json()["cached"]


# -- refusals ----------------------------------------------------------------------------------------------


def declaring(server: Server, length: int) -> httpx.Response:
    """The answer to a request that declares a ``length`` byte body and sends none (httpx would not send it)."""
    headers = {"Content-Length": length, "Content-Type": "multipart/form-data; boundary=b"}
    return declared_body_answer(server.url, "POST", "/v1/extract", headers)


def chunked(parts: list[bytes]):
    """A multipart body sent without a Content-Length (chunked), as a generator."""
    yield from parts


HOSTILE = {
    "not a video": (415, "unsupported_video", "video"),
    "a 10-hour duration in the header": (413, "video_too_long", "video"),
    "16000x16000 frames in the header": (413, "video_too_large", "video"),
    "over the size limit": (413, "upload_too_large", "video"),
    "over the size limit, sent without a length": (413, "upload_too_large", "video"),
    "a declared body beyond the limit": (413, "upload_too_large", None),
    "an empty video": (422, "invalid_video", "video"),
    "no video part": (422, "invalid_request", "video"),
    "not multipart": (422, "invalid_request", "video"),
    "a broken multipart body": (400, "bad_request", None),
    "unknown smoothing": (422, "invalid_params", "params.smooth"),
    "a person and a box": (422, "invalid_params", "params"),
    "params that are not JSON": (422, "invalid_params", "params"),
    "a clean strength above 1": (422, "invalid_params", "params.clean"),
    "a negative clean strength": (422, "invalid_params", "params.clean"),
    "clean as true": (422, "invalid_params", "params.clean"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_uploads_are_refused_in_one_line_and_leave_nothing(server, inputs, tmp_path, case):
    before = server.leftovers()
    jobs_before = len(server.client.get("/v1/jobs", params={"limit": 500}).json())
    dance = inputs["dance"].read_bytes()
    big = os.urandom(MAX_VIDEO_MB * 2**20 + 1)
    post = server.client.post
    if case == "not a video":
        response = post("/v1/extract", files={"video": ("notes.mp4", b"these are my notes, not a video\n" * 20)})
    elif case == "a 10-hour duration in the header":
        response = post("/v1/extract", files={"video": ("long.mkv", ten_hour_header(tmp_path))})
    elif case == "16000x16000 frames in the header":
        response = post("/v1/extract", files={"video": ("huge.mkv", huge_frame_header(tmp_path))})
    elif case == "over the size limit":
        response = post("/v1/extract", files={"video": ("big.mp4", big)})
    elif case == "over the size limit, sent without a length":
        head = b'--b\r\nContent-Disposition: form-data; name="video"; filename="big.mp4"\r\n\r\n'
        body = chunked([head, big[: 2**19], big[2**19 :], b"\r\n--b--\r\n"])
        response = post("/v1/extract", content=body, headers={"Content-Type": "multipart/form-data; boundary=b"})
        assert "content-length" not in response.request.headers
    elif case == "a declared body beyond the limit":
        response = declaring(server, 2**30)
    elif case == "an empty video":
        response = post("/v1/extract", files={"video": ("empty.mp4", b"")})
    elif case == "no video part":
        response = post("/v1/extract", files={"clip": ("dance.mp4", dance)})
    elif case == "not multipart":
        response = post("/v1/extract", content=dance, headers={"Content-Type": "video/mp4"})
    elif case == "a broken multipart body":
        response = post("/v1/extract", content=b"--y\r\n", headers={"Content-Type": "multipart/form-data; boundary=x"})
    else:
        params = {
            "unknown smoothing": json.dumps({"smooth": "wobbly"}),
            "a person and a box": json.dumps({"person": 1, "box": [1, 2, 30, 40]}),
            "params that are not JSON": "{smooth: savgol",
            "a clean strength above 1": json.dumps({"clean": 1.5}),
            "a negative clean strength": json.dumps({"clean": -0.1}),
            "clean as true": json.dumps({"clean": True}),
        }[case]
        response = post("/v1/extract", files={"video": ("dance.mp4", dance)}, data={"params": params})
    status, code, field = HOSTILE[case]
    message = assert_error(response, status, code, field)
    assert str(server.data_dir) not in message and "upload-" not in message, message  # no path of the server
    if case == "a 10-hour duration in the header":
        assert message.startswith("long.mkv: lasts 36,000.0 s") and "600 s" in message, message
    if case == "16000x16000 frames in the header":
        assert message.startswith("huge.mkv:") and "16000x16000" in message, message
    if case.startswith("over the size limit"):
        assert f"({MAX_VIDEO_MB} MB)" in message, message
    if case == "a declared body beyond the limit":
        assert f"videos of at most {MAX_VIDEO_MB} MB (--max-video-mb)" in message, message
    if "clean" in case:
        assert message.startswith("params.clean: "), message
    assert server.leftovers() == before, "the refused upload left files in the data folder"
    assert len(server.client.get("/v1/jobs", params={"limit": 500}).json()) == jobs_before
    assert server.client.get("/v1/health").json()["status"] == "ok"


# -- restarts ----------------------------------------------------------------------------------------------


#: the jobs table as servers before job kinds wrote it
OLD_JOBS_TABLE = """
CREATE TABLE jobs (
    id TEXT PRIMARY KEY, status TEXT NOT NULL, backend TEXT NOT NULL, params TEXT NOT NULL, cache_key TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0, phase TEXT NOT NULL DEFAULT 'queued', message TEXT NOT NULL DEFAULT '',
    eta_s REAL, frames INTEGER NOT NULL DEFAULT 0, fps REAL NOT NULL DEFAULT 0, width INTEGER NOT NULL DEFAULT 0,
    height INTEGER NOT NULL DEFAULT 0, result TEXT, cached INTEGER NOT NULL DEFAULT 0,
    warnings TEXT NOT NULL DEFAULT '[]', created REAL NOT NULL, started REAL, finished REAL
);
CREATE TABLE events (job_id TEXT NOT NULL, seq INTEGER NOT NULL, data TEXT NOT NULL, PRIMARY KEY (job_id, seq));
"""


def old_data_folder(data: Path) -> tuple[str, bytes]:
    """A data folder as an earlier server left it: one finished render (its id and its video's bytes)."""
    (data / "results").mkdir(parents=True)
    (data / "jobs" / ("a" * 32)).mkdir(parents=True)
    video = b"\x00\x00\x00\x18ftypmp42" + bytes(64)
    (data / "results" / ("b" * 64 + ".mp4")).write_bytes(video)
    db = sqlite3.connect(data / "jobs.sqlite3")
    db.executescript(OLD_JOBS_TABLE)
    db.execute(
        "INSERT INTO jobs (id, status, backend, params, cache_key, progress, phase, message, frames, fps, width, "
        "height, result, created, started, finished) VALUES (?, 'succeeded', 'preview', '{}', ?, 1, 'succeeded', "
        "'done', 20, 30, 64, 64, ?, 1.0, 2.0, 3.0)",
        ("a" * 32, "b" * 64, "b" * 64 + ".mp4"),
    )
    db.commit()
    db.close()
    return "a" * 32, video


def test_jobs_survive_a_restart_finished_results_stay_queued_ones_run_running_ones_fail(inputs, tmp_path):
    """On a data folder an earlier server (before job kinds) left, with a finished render in it."""
    old_id, old_video = old_data_folder(tmp_path / "data")
    args = ("--nlf", str(inputs["model"]))
    first = Server(tmp_path / "data", tmp_path / "server.log", *args).start().wait_ready()
    try:
        done = first.extract(inputs["dance"]).json()
        done = first.wait(done["id"], lambda j: j["status"] in TERMINAL)
        assert done["status"] == "succeeded", done
        motion = first.client.get(f"/v1/jobs/{done['id']}/result").content
        running = first.extract(inputs["long"], {"batch_size": 1}).json()
        queued = first.extract(inputs["dance"], {"smooth": "none"}, name="again.mp4").json()
        first.wait(running["id"], lambda j: j["phase"] == "decoding+detecting" and j["progress"] > 0)
        assert first.job(queued["id"])["status"] == "queued"
        first.kill9()
    finally:
        first.stop()
    second = Server(tmp_path / "data", tmp_path / "server.log", *args).start().wait_ready()
    try:
        assert second.client.get(f"/v1/jobs/{done['id']}/result").content == motion
        lost = second.job(running["id"])
        assert lost["status"] == "failed" and "submit it again" in lost["message"], lost
        rerun = second.wait(queued["id"], lambda j: j["status"] in TERMINAL)
        assert rerun["status"] == "succeeded" and rerun["kind"] == "extract", rerun
        with Client(second.url) as client:
            again = load_motion(client.download(queued["id"], tmp_path / "again.npz"))
        assert again.num_frames == 48 and again.name == "again"
        # the earlier server's job: a render, its video still served
        old = second.job(old_id)
        assert old["kind"] == "render" and old["status"] == "succeeded", old
        result = second.client.get(f"/v1/jobs/{old_id}/result")
        assert result.status_code == 200 and result.content == old_video
        assert result.headers["content-type"] == "video/mp4"
    finally:
        second.stop()


# -- where extraction is not offered -----------------------------------------------------------------------


def test_without_a_model_extraction_is_refused_with_the_reason(inputs, tmp_path):
    server = Server(tmp_path / "data", tmp_path / "server.log").start().wait_ready()
    try:
        extract = server.client.get("/v1/health").json()["extract"]
        assert extract["available"] is False and extract["reason"].startswith(
            "no NLF model: start the server with --nlf"
        )
        assert (extract["max_video_mb"], extract["max_video_s"]) == (500, 600)  # the defaults
        message = assert_error(server.extract(inputs["dance"]), 409, "extract_unavailable")
        assert extract["reason"] in message
        assert not any((tmp_path / "data" / "tmp").iterdir())
        listed = server.client.get("/v1/backends", params={"kind": "extract"}).json()
        assert [(b["name"], b["available"], b["reason"], b["kind"]) for b in listed] == [
            ("nlf", False, extract["reason"], "extract")
        ]
        assert "smooth" in listed[0]["settings"] and listed[0]["defaults"]["batch_size"] == 8
        render = server.client.get("/v1/backends").json()  # as before: the render backends only
        assert render and all(b["kind"] == "render" for b in render) and "nlf" not in {b["name"] for b in render}
    finally:
        server.stop()

    missing = tmp_path / "models" / "nlf_l_multi.torchscript"
    server = (
        Server(tmp_path / "data2", tmp_path / "server2.log", env={"MTVCRAFTER_NLF": str(missing)}).start().wait_ready()
    )
    try:
        reason = server.client.get("/v1/health").json()["extract"]["reason"]
        assert reason.startswith("the NLF model file nlf_l_multi.torchscript does not exist"), reason
        assert str(tmp_path) not in reason
        assert reason in assert_error(server.extract(inputs["dance"]), 409, "extract_unavailable")
    finally:
        server.stop()


def test_a_model_that_cannot_be_loaded_fails_the_job_and_then_is_the_reason(inputs, tmp_path):
    broken = tmp_path / "models" / "nlf_l_multi.torchscript"
    broken.parent.mkdir()
    broken.write_bytes(b"<html>not found</html>")  # what a failed download leaves
    server = Server(tmp_path / "data", tmp_path / "server.log", "--nlf", str(broken)).start().wait_ready()
    try:
        extract = server.client.get("/v1/health").json()["extract"]
        assert extract == {"available": True, "reason": "", "max_video_mb": 500, "max_video_s": 600}
        job = server.extract(inputs["dance"]).json()
        failed = server.wait(job["id"], lambda j: j["status"] in TERMINAL)
        assert failed["status"] == "failed" and "nlf_l_multi.torchscript" in failed["message"], failed
        assert str(tmp_path) not in failed["message"]
        extract = server.client.get("/v1/health").json()["extract"]
        assert extract["available"] is False and extract["reason"].startswith("the NLF model cannot be loaded")
        with Client(server.url) as client, pytest.raises(ServerError, match="extract_unavailable, HTTP 409"):
            client.extract(inputs["dance"])
    finally:
        server.stop()
