"""The settings of a job: what a client sends as ``params``, what the store keeps, what a backend runs with."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class JobParams(BaseModel):
    """Settings of a job (the ``params`` JSON part of ``POST /v1/jobs``)."""

    model_config = ConfigDict(extra="forbid")

    backend: str | None = Field(None, description="preview, tiny or mvdit-7b (default: the server's)")
    width: int = Field(512, ge=16, le=8192, description="output width, pixels (multiple of 16 for the models)")
    height: int = Field(512, ge=16, le=8192)
    steps: int | None = Field(None, ge=1, le=1000, description="denoising steps (default 50; tiny 4)")
    guidance: float = Field(3.0, ge=0, le=50, allow_inf_nan=False, description="motion guidance scale")
    seed: int = Field(6666, ge=0, le=2**63 - 2)
    scheduler: str = Field("dpm", max_length=64, pattern=r"^[A-Za-z0-9_]+$")
    reference_encoding: Literal["image", "video"] = "image"
    placement: Literal["fit", "camera"] = Field("fit", description="preview: where the skeleton is drawn")
    num_frames: int | None = Field(None, ge=1, description="render only the first N frames")

    @field_validator("backend")
    @classmethod
    def _backend(cls, value: str | None) -> str | None:
        if value is not None and value not in ("preview", "tiny", "mvdit-7b"):
            raise ValueError("unknown backend; use preview, tiny or mvdit-7b")
        return value
