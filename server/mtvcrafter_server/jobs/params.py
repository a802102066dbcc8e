"""The settings of a job: what a client sends as ``params``, what the store keeps, what a backend runs with.

The pydantic model is generated from :data:`mtvcrafter.backends.SETTINGS` (the bounds, choices and help
the command line's options come from too) plus ``backend``, whose choices are the registry's names.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

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
