"""``GET /v1/health``: the server is up; its version, default backend and queue, the job worker's state and
whether the data folder takes writes; whether it extracts motion from videos (``extract``: available, or why
not). ``200`` with ``status: ok`` when jobs can run; ``503`` with
``status: degraded`` when the worker is dead, stalled, waiting for storage, restarting (after a wait: it stopped
repeatedly) or (Ray) waiting for a replica, or the data folder refuses writes (``worker_error``, ``storage``: why,
and the fix). ``worker_restarts`` counts the worker threads replaced since the server started, and
``worker_restart_reason`` says why the last one stopped."""

from __future__ import annotations

import os
import time

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from mtvcrafter import __version__

from ..jobs.files import DataFolder, StorageError
from ..jobs.store import JobStore
from .backends import default_backend
from .deps import BackendsDep, ExecutorDep, ExtractorDep, FilesDep, SettingsDep, StoreDep
from .errors import COMMON_ERRORS, error_responses
from .models import Health

router = APIRouter(prefix="/v1/health", tags=["health"], responses=error_responses(*COMMON_ERRORS))


#: worker states in which jobs run
WORKING = ("idle", "running")
#: at most one write check of a failing store per this many seconds
RECHECK_S = 1.0
_last_check = [0.0]


@router.get(
    "",
    response_model=Health,
    summary="Server status",
    description="The version, default backend and queue; the job worker's state (`worker`: idle, running, "
    "stalled, waiting for storage, waiting for a replica (Ray), restarting, dead; `worker_restarts`: workers "
    "replaced since the server started, `worker_restart_reason`: why the last one stopped), the data folder's "
    "(`storage`: null when it "
    "takes writes, `free_gb`) and whether videos can be turned into motion here (`extract`: `available`, else the "
    "`reason` and the fix; the largest and longest video taken).",
    responses={503: {"model": Health, "description": "jobs cannot run now: the body says why (status degraded)"}},
)
def health(
    settings: SettingsDep,
    store: StoreDep,
    files: FilesDep,
    executor: ExecutorDep,
    backends: BackendsDep,
    extractor: ExtractorDep,
):
    storage = storage_state(store, files)
    try:
        queued = len(store.queued_ids())
    except StorageError as exc:
        queued, storage = 0, storage or exc.message
    worker = executor.health()
    extract_available, extract_reason = extractor.status()
    ok = worker["worker"] in WORKING and storage is None
    body = {
        "status": "ok" if ok else "degraded",
        "version": __version__,
        "default_backend": default_backend(settings, backends),
        "queued": queued,
        "running": executor.current,
        **worker,
        "storage": storage,
        "free_gb": round(files.free_bytes() / 1e9, 3),
        "extract": {
            "available": extract_available,
            "reason": extract_reason,
            "max_video_mb": settings.max_video_mb,
            "max_video_s": settings.max_video_s,
        },
    }
    if not ok:  # the API's error shape too, for clients that show an error's message
        reason = worker["worker_error"] or storage or f"the job worker is {worker['worker']}"
        body["error"] = {"code": "degraded", "message": reason}
    return JSONResponse(body, status_code=200 if ok else 503)


def storage_state(store: JobStore, files: DataFolder) -> str | None:
    """None when the data folder takes writes, else why not (with the fix)."""
    if store.write_error is not None and time.monotonic() - _last_check[0] > RECHECK_S:
        _last_check[0] = time.monotonic()
        store.check_writable()  # the store may work again with no write to show it yet
    if store.write_error is not None:
        return store.write_error.message
    for sub in ("jobs", "results", "tmp"):
        folder = files.root / sub
        if not os.access(folder, os.W_OK | os.X_OK):
            return (
                f"the server may not write in {folder}: make the data folder writable by the user the server runs "
                "as, or start the server with another --data-dir"
            )
    return None
