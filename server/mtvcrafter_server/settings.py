"""Server settings: one pydantic-settings class, read from keywords (``mtvcrafter serve`` options) and the
environment (``MTVCRAFTER_TOKEN``, ``MTVCRAFTER_DATA_DIR``, ``MTVCRAFTER_MODEL_DIR`` …); a keyword wins."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from mtvcrafter.backends import BACKENDS
from mtvcrafter.client import is_loopback


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MTVCRAFTER_", extra="forbid")

    host: str = "127.0.0.1"
    port: int = 8765
    data_dir: Path = Path("mtvcrafter-data")
    #: the backend jobs use when they name none (None: the best available)
    backend: Literal[tuple(BACKENDS)] | None = None
    #: a download of yanboding/MTVCrafter (mvdit-7b; its 4DMoT also gives the preview's reconstruction)
    model_dir: Path | None = None
    base_model_dir: Path | None = None
    #: where the LoRA files jobs name (params ``lora``: a file name, never a path) are looked up, besides
    #: MODEL_DIR/loras and MODEL_DIR/wan2.1
    lora_dir: Path | None = None
    #: 4DMoT checkpoint for /v1/tokenize and the preview overlay (default: MODEL_DIR/4DMoT if present)
    tokenizer: Path | None = None
    #: bearer token; required when binding anything but loopback
    token: str | None = None
    #: browser origins allowed to call the API (none by default: no CORS, cross-site requests refused)
    allowed_origins: list[str] = Field(default_factory=list)
    max_upload_bytes: int = 64 * 2**20
    max_frames: int = 20_000
    max_image_pixels: int = 40_000_000
    max_output_side: int = 2048
    device: str | None = None
    #: allow full unpickling of .pt/.bin weights that safe loading refuses (``--trust-checkpoint``)
    trust_checkpoint: bool = False

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        # Checked after validation, outside it: a plain ValueError whose message the CLI prints as one line.
        if not is_loopback(self.host) and not self.token:
            raise ValueError(
                f"binding {self.host} exposes the server beyond this machine: set an access token "
                "(--token or MTVCRAFTER_TOKEN); clients then send 'Authorization: Bearer <token>'"
            )
