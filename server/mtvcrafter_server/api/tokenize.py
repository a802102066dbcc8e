"""``POST /v1/tokenize``: what 4DMoT makes of a motion (codes, vq loss, per-joint error) before a render, computed by
the executor (in this process, or on a Ray replica)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, UploadFile

from ..jobs.executor import ExecutorUnavailable
from ..jobs.running import NO_TOKENIZER, TokenizerUnavailable
from .deps import BackendsDep, ExecutorDep, FilesDep, SettingsDep
from .errors import COMMON_ERRORS, ApiError, error_responses
from .models import TokenizeResult
from .uploads import read_motion

router = APIRouter(prefix="/v1/tokenize", tags=["tokenize"], responses=error_responses(*COMMON_ERRORS))


@router.post(
    "",
    response_model=TokenizeResult,
    summary="Tokenize a motion",
    description="What 4DMoT makes of a motion: its codes, vq loss and per-joint error (and, with "
    "`reconstruction=true`, the reconstructed joints in mm).",
    responses=error_responses(
        (413, "the upload is over the size limit, or the motion has more frames than this server takes"),
        (415, "the motion is not our .npz or JSON (pickles are refused)"),
        (422, "invalid motion or query: the message names the field"),
        (
            503,
            "no 4DMoT checkpoint is configured on this server, or it cannot be loaded; or no Ray replica answers",
        ),
    ),
)
def tokenize(
    motion: Annotated[UploadFile, File(description="our .npz or JSON motion")],
    settings: SettingsDep,
    files: FilesDep,
    backends: BackendsDep,
    executor: ExecutorDep,
    reconstruction: bool = False,
):
    if backends["preview"].config.tokenizer_path() is None:  # the server's setting: before the upload is read
        raise ApiError(503, "no_tokenizer", NO_TOKENIZER)
    with tempfile.TemporaryDirectory(dir=files.tmp()) as tmp:
        parsed = read_motion(motion.file.read(), motion.filename or "", Path(tmp), settings.max_frames)
    try:
        return executor.tokenize(parsed.joints, reconstruction)
    except TokenizerUnavailable as exc:
        raise ApiError(503, "no_tokenizer", exc.message) from None
    except ExecutorUnavailable as exc:
        raise ApiError(503, "executor_unavailable", str(exc)) from None
