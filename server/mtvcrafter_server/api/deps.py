"""What the routes are handed: the settings, the job store, the data folder, the executor, the backends and
the NLF extractor (``create_app`` puts them on ``app.state``), and the job a ``{job_id}`` path names."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from mtvcrafter.backends import Backend

from ..jobs.executor import Executor
from ..jobs.extraction import Extractor
from ..jobs.files import DataFolder
from ..jobs.store import Job, JobStore
from ..settings import Settings
from .errors import ApiError


# Plain attribute reads: async, so that FastAPI calls them on the event loop rather than in a thread.
async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_store(request: Request) -> JobStore:
    return request.app.state.store


async def get_files(request: Request) -> DataFolder:
    return request.app.state.files


async def get_executor(request: Request) -> Executor:
    return request.app.state.executor


async def get_backends(request: Request) -> dict[str, Backend]:
    return request.app.state.backends


async def get_extractor(request: Request) -> Extractor:
    return request.app.state.extractor


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[JobStore, Depends(get_store)]
FilesDep = Annotated[DataFolder, Depends(get_files)]
ExecutorDep = Annotated[Executor, Depends(get_executor)]
BackendsDep = Annotated[dict[str, Backend], Depends(get_backends)]
ExtractorDep = Annotated[Extractor, Depends(get_extractor)]


def get_job(job_id: str, store: StoreDep) -> Job:
    job = store.get(job_id)
    if job is None:
        raise ApiError(404, "job_not_found", f"no job {job_id[:64]!r}")
    return job


JobDep = Annotated[Job, Depends(get_job)]
