"""``POST /v1/tokenize``: what 4DMoT makes of a motion (codes, vq loss, per-joint error) before a render."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, UploadFile

from .deps import BackendsDep, FilesDep, SettingsDep
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
        (503, "no 4DMoT checkpoint is configured on this server, or it cannot be loaded"),
    ),
)
def tokenize(
    motion: Annotated[UploadFile, File(description="our .npz or JSON motion")],
    settings: SettingsDep,
    files: FilesDep,
    backends: BackendsDep,
    reconstruction: bool = False,
):
    try:
        tokenizer = backends["preview"].tokenizer()
    except Exception as exc:  # a missing or unreadable checkpoint: the server's setting, not the request
        raise ApiError(503, "no_tokenizer", f"the configured 4DMoT checkpoint cannot be loaded: {exc}") from None
    if tokenizer is None:
        raise ApiError(
            503, "no_tokenizer", "no 4DMoT checkpoint configured: start the server with --tokenizer or --model-dir"
        )
    with tempfile.TemporaryDirectory(dir=files.tmp()) as tmp:
        parsed = read_motion(motion.file.read(), motion.filename or "", Path(tmp), settings.max_frames)
    result = tokenizer.reconstruct(parsed.joints)
    return {
        "frames": parsed.num_frames,
        "latent_frames": int(result.codes.shape[0]),
        "codes": result.codes.tolist(),
        "vq_loss": result.vq_loss,
        "mpjpe_mm": result.mpjpe_mm,
        "joint_error_mm": [float(v) for v in result.joint_error_mm],
        "warning": result.warning,
        "reconstruction_mm": result.reconstruction_mm.round(2).tolist() if reconstruction else None,
    }
