"""The client of the server's HTTP API (httpx): submit a render or an extraction (video → motion), follow
events, cancel, download.

The one client: ``mtvcrafter animate --server URL`` and the Blender add-on both use it. It imports only
httpx and :mod:`mtvcrafter.motion`, so it runs inside Blender. Motion is always uploaded as our ``.npz``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from mtvcrafter.motion import Motion, save_motion

TERMINAL = ("succeeded", "failed", "cancelled")
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) stays on this machine."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ServerError(Exception):
    """The server refused a request or could not be reached; the message says why."""


class Client:
    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0):
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServerError(
                f"cannot reach the server at {self.url} ({exc}); is `mtvcrafter serve` running?"
            ) from None
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                message = f"{error['message']} ({error['code']}, HTTP {response.status_code})"
            except (ValueError, KeyError, TypeError):
                message = f"HTTP {response.status_code}: {response.text[:200]}"
            raise ServerError(f"the server refused the request: {message}")
        return response

    def _json(self, method: str, path: str, **kwargs):
        response = self._request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise ServerError(
                f"{self.url} answered {path} with something that is not JSON: is it an MTVCrafter server?"
            ) from None

    def health(self) -> dict:
        return self._json("GET", "/v1/health")

    def backends(self) -> list[dict]:
        return self._json("GET", "/v1/backends")

    @staticmethod
    def _npz(motion: Motion) -> tuple[str, bytes, str]:
        """The motion as our .npz upload part (the only motion format the server takes)."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "motion.npz"
            save_motion(motion, path)
            return "motion.npz", path.read_bytes(), "application/octet-stream"

    def submit(self, motion: Motion, reference: str | Path, params: dict) -> dict:
        with open(reference, "rb") as r:
            files = {"motion": self._npz(motion), "reference": (Path(reference).name, r, "application/octet-stream")}
            return self._json("POST", "/v1/jobs", files=files, data={"params": json.dumps(params)})

    def extract(self, video: str | Path, params: dict | None = None, *, clean: float | None = None) -> dict:
        """Submit a video for motion extraction (``POST /v1/extract``; the file is streamed, not read into memory):
        the job (``kind`` extract). ``params``: who to follow and how to smooth (``person``, ``box``, ``smooth``,
        ``batch_size`` …; the server's ``GET /v1/backends?kind=extract`` lists them). ``clean``: clean the motion
        too, as ``motion extract --clean`` does (smoothing of this strength, 0 to 1, and the feet planted); the
        params' ``clean``, which it replaces when given."""
        video = Path(video)
        if clean is not None:
            params = {**(params or {}), "clean": clean}
        data = {"params": json.dumps(params)} if params else {}
        try:
            with open(video, "rb") as f:
                files = {"video": (video.name, f, "application/octet-stream")}
                # the upload's time grows with the video: no deadline on writing it, the usual one on the answer
                timeout = httpx.Timeout(self.http.timeout.read, write=None)
                return self._json("POST", "/v1/extract", files=files, data=data, timeout=timeout)
        except OSError as exc:
            raise ServerError(f"cannot read the video {video}: {exc.strerror or exc}") from None

    def tokenize(self, motion: Motion, reconstruction: bool = False) -> dict:
        """4DMoT codes, vq loss and per-joint error of a motion (and its reconstruction, if asked)."""
        params = {"reconstruction": "true"} if reconstruction else {}
        return self._json("POST", "/v1/tokenize", files={"motion": self._npz(motion)}, params=params)

    def job(self, job_id: str) -> dict:
        return self._json("GET", f"/v1/jobs/{job_id}")

    def cancel(self, job_id: str) -> dict:
        return self._json("DELETE", f"/v1/jobs/{job_id}")

    def events(self, job_id: str, last_event_id: int = 0, retries: int = 5) -> Iterator[dict]:
        """The job's events until it ends; reconnects (resuming from the last event) if the stream drops."""
        failures = 0
        while True:
            headers = {"Last-Event-ID": str(last_event_id)} if last_event_id else {}
            try:
                with self.http.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers, timeout=None) as response:
                    if response.status_code >= 400:
                        self._request("GET", f"/v1/jobs/{job_id}")  # raises with the server's message
                    seq, data = None, None
                    for line in response.iter_lines():
                        try:
                            if line.startswith("id:"):
                                seq = int(line[3:].strip())
                            elif line.startswith("data:"):
                                data = json.loads(line[5:].strip())
                        except ValueError:
                            raise ServerError(f"the event stream of job {job_id} is malformed: {line[:80]!r}") from None
                        if line == "" and data is not None:
                            last_event_id = seq or last_event_id
                            failures = 0
                            yield data
                            if data.get("status") in TERMINAL:
                                return
                            seq, data = None, None
            except httpx.HTTPError:
                failures += 1
                if failures > retries:
                    raise ServerError(f"lost the event stream of job {job_id} ({retries} retries)") from None
                time.sleep(min(2.0 * failures, 10))
                continue
            status = self.job(job_id)
            if status["status"] in TERMINAL:
                yield status
                return
            time.sleep(0.5)  # the stream closed early: reconnect without spinning

    def download(self, job_id: str, out: str | Path) -> Path:
        """The job's result (a render's mp4, an extraction's motion .npz), written atomically to ``out``."""
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(f".{out.name}.part")
        try:
            with self.http.stream("GET", f"/v1/jobs/{job_id}/result") as response:
                if response.status_code >= 400:
                    response.read()
                    self._request("GET", f"/v1/jobs/{job_id}/result")
                with open(partial, "wb") as f:
                    for chunk in response.iter_bytes():
                        f.write(chunk)
            os.replace(partial, out)
        except httpx.HTTPError as exc:
            raise ServerError(f"download of job {job_id} failed ({exc})") from None
        finally:
            partial.unlink(missing_ok=True)
        return out

    def render(
        self,
        motion: Motion,
        reference: str | Path,
        out: str | Path,
        params: dict,
        on_event: Callable[[dict], None] | None = None,
    ) -> tuple[Path, dict]:
        """Submit, follow to the end, download. Ctrl-C cancels the job on the server."""
        return self.follow(self.submit(motion, reference, params), out, on_event)

    def extract_motion(
        self,
        video: str | Path,
        out: str | Path,
        params: dict | None = None,
        on_event: Callable[[dict], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
        *,
        clean: float | None = None,
    ) -> tuple[Path, dict]:
        """Submit a video, follow the extraction to the end, download the motion (our .npz) to ``out``: its path
        and the job's final state. ``cancelled()`` answering true (asked at each event) or Ctrl-C cancels the job
        on the server; a job that does not succeed is a :class:`ServerError` with the server's message. ``clean``:
        as for :meth:`extract`."""
        return self.follow(self.extract(video, params, clean=clean), out, on_event, cancelled)

    def follow(
        self,
        job: dict,
        out: str | Path,
        on_event: Callable[[dict], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> tuple[Path, dict]:
        """Follow a submitted job to its end and download its result to ``out``: the path and the job's final
        state. ``cancelled()`` answering true (asked at each event) or Ctrl-C cancels the job on the server; a job
        that does not succeed is a :class:`ServerError` with the server's message."""
        try:
            if job["status"] not in TERMINAL:
                asked = False
                for event in self.events(job["id"]):
                    if on_event is not None:
                        on_event(event)
                    if not asked and cancelled is not None and cancelled():
                        self.cancel(job["id"])
                        asked = True
        except KeyboardInterrupt:
            self.cancel(job["id"])
            raise
        final = self.job(job["id"])
        if final["status"] != "succeeded":
            raise ServerError(f"job {job['id']} {final['status']}: {final['message']}")
        return self.download(job["id"], out), final
