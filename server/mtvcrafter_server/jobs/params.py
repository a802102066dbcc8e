"""The settings of a job: what a client sends as ``params``, what the store keeps, what a backend runs with
(:data:`JobParams`, a render's) or what an extraction runs with (:class:`ExtractParams`).

:data:`JobParams` is generated from :data:`mtvcrafter.backends.SETTINGS` (the bounds, choices and help
the command line's options come from too) plus ``backend``, whose choices are the registry's names.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from mtvcrafter.backends import BACKENDS, SETTINGS, RenderSettings, Setting


def _field(setting: Setting) -> tuple[Any, Any]:
    annotation: Any = Literal[setting.choices] if setting.choices else setting.type
    if setting.optional:
        annotation = annotation | None
    rules: dict[str, Any] = {"description": setting.help}
    if setting.ge is not None:
        rules["ge"] = setting.ge
    if setting.le is not None:
        rules["le"] = setting.le
    if setting.pattern is not None:
        rules["pattern"] = f"^{setting.pattern}$"
    if setting.max_length is not None:
        rules["max_length"] = setting.max_length
    if setting.type is float:
        rules["allow_inf_nan"] = False
    return annotation, Field(setting.default, **rules)


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def render_settings(self) -> RenderSettings:
        """The render settings these params hold (everything but ``backend``)."""
        return RenderSettings(**self.model_dump(exclude={"backend"}))


_BACKEND_HELP = "; ".join(f"{n}: {c.description}" for n, c in BACKENDS.items()) + " (default: the server's)"

#: Settings of a job (the ``params`` JSON part of ``POST /v1/jobs``).
JobParams: type[_Params] = create_model(
    "JobParams",
    __base__=_Params,
    __doc__="Settings of a job (the params JSON part of POST /v1/jobs): the backend and the render settings.",
    backend=(
        Literal[tuple(BACKENDS)] | None,
        Field(
            None,
            description="; ".join(f"{n}: {c.description}" for n, c in BACKENDS.items()) + " (default: the server's)",
        ),
    ),
    **{setting.name: _field(setting) for setting in SETTINGS},
)


FiniteFloat = Annotated[float, Field(allow_inf_nan=False, ge=-65536, le=65536)]
Side = Annotated[float, Field(allow_inf_nan=False, gt=0, le=65536)]


class ExtractParams(BaseModel):
    """Settings of an extraction (the params JSON part of POST /v1/extract): who to follow, how to smooth, whether
    to clean. The device is the server's."""

    model_config = ConfigDict(extra="forbid")

    person: int | None = Field(
        None, ge=0, le=99, description="follow the N-th largest person of the first frames (default 0: the largest)"
    )
    box: tuple[FiniteFloat, FiniteFloat, Side, Side] | None = Field(
        None, description="follow the person in this box of the first frames: [x, y, width, height] in pixels"
    )
    smooth: Literal["savgol", "one-euro", "none"] = Field(
        "savgol",
        description="savgol: Savitzky-Golay over a third of a second; one-euro: One-Euro run both ways (both without "
        "lag); none",
    )
    batch_size: int = Field(8, ge=1, le=64, description="frames per model call")
    max_gap_s: float = Field(
        0.5,
        ge=0,
        le=10,
        allow_inf_nan=False,
        description="gaps where the performer is not found are filled up to this long (seconds)",
    )
    min_valid: float = Field(
        0.5,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="the job fails when the performer is found in fewer of the frames than this fraction",
    )
    fov_deg: float | None = Field(
        None,
        ge=1,
        le=179,
        allow_inf_nan=False,
        description="the camera's field of view across the larger side, degrees (default 55, NLF's)",
    )
    detector_threshold: float = Field(
        0.3, gt=0, le=1, allow_inf_nan=False, description="the person detector's score threshold"
    )
    clean: float | None = Field(
        None,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="then clean the motion (mtvcrafter.motion.clean.clean_motion, as motion extract --clean does): "
        "more smoothing of this strength, 0 (none) to 1 (strong; 0.5 as the command line's default), and the feet "
        "planted while they touch the ground; the motion's notes say what it did (default: not cleaned)",
    )

    @field_validator("clean", mode="before")
    @classmethod
    def _a_strength(cls, value: Any) -> Any:
        if isinstance(value, bool):  # not 1.0 for true: a strength is asked for, as the command line's --clean S
            raise ValueError("a strength from 0 (none) to 1 (strong), e.g. 0.5, not true or false")
        return value

    @model_validator(mode="after")
    def _one_way_to_choose(self) -> ExtractParams:
        if self.person is not None and self.box is not None:
            raise ValueError("give person or box, not both")
        return self
