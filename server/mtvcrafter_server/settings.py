"""Server settings: one pydantic-settings class, read from keywords (``mtvcrafter serve`` options) and the
environment (``MTVCRAFTER_TOKEN``, ``MTVCRAFTER_DATA_DIR``, ``MTVCRAFTER_MODEL_DIR`` …); a keyword wins."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from mtvcrafter.backends import BACKENDS
from mtvcrafter.client import is_loopback


def default_data_dir(platform: str | None = None, env: Mapping[str, str] | None = None) -> Path:
    """The user's data folder by the platform's convention, ``mtvcrafter`` inside it: Linux and other
    Unixes ``$XDG_DATA_HOME/mtvcrafter`` (``~/.local/share/mtvcrafter``), macOS
    ``~/Library/Application Support/mtvcrafter``, Windows ``%LOCALAPPDATA%\\mtvcrafter``."""
    platform = sys.platform if platform is None else platform
    env = os.environ if env is None else env
    home = Path(env.get("HOME") or env.get("USERPROFILE") or Path.home())
    if platform.startswith("win"):
        local = env.get("LOCALAPPDATA")
        return (Path(local) if local else home / "AppData" / "Local") / "mtvcrafter"
    if platform == "darwin":
        return home / "Library" / "Application Support" / "mtvcrafter"
    xdg = env.get("XDG_DATA_HOME", "")
    # the XDG spec: a relative value is invalid and is ignored
    return (Path(xdg) if xdg and Path(xdg).is_absolute() else home / ".local" / "share") / "mtvcrafter"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MTVCRAFTER_", extra="forbid")

    host: str = "127.0.0.1"
    port: int = 8765
    #: jobs database, inputs and results (default: the user's data folder, see :func:`default_data_dir`)
    data_dir: Path = Field(default_factory=default_data_dir)
    #: retention: finished jobs (their inputs, result, events) older than this many days are deleted at
    #: start-up and every ``cleanup_interval_s`` (None: kept)
    keep_days: float | None = Field(None, gt=0)
    #: retention: the oldest finished jobs are deleted while inputs and results take more than this many GB
    keep_gb: float | None = Field(None, ge=0)
    cleanup_interval_s: float = Field(3600.0, gt=0)
    #: a client must send a request's line and headers within this many seconds (from its first byte, or
    #: from the connection), and a request's whole body within ``body_timeout_s``; an idle kept-alive
    #: connection is closed after ``keep_alive_s``
    header_timeout_s: float = Field(10.0, gt=0)
    body_timeout_s: float = Field(300.0, gt=0)
    keep_alive_s: float = Field(5.0, gt=0)
    #: a running job that has reported no progress for this long makes /v1/health say the worker is stalled
    stall_after_s: float = Field(1800.0, gt=0)
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
    #: the NLF pose estimator (a TorchScript file, downloaded separately) that ``POST /v1/extract`` runs; loaded
    #: by the first extraction and kept (None: extraction is not offered)
    nlf: Path | None = None
    #: bounds on a video sent to ``POST /v1/extract``: its size (MB of 2**20 bytes), its duration and its frames'
    #: pixels (the size after rotation)
    max_video_mb: float = Field(500.0, gt=0)
    max_video_s: float = Field(600.0, gt=0)
    max_video_pixels: int = Field(4096 * 2160, gt=0)
    #: allow full unpickling of .pt/.bin weights that safe loading refuses (``--trust-checkpoint``)
    trust_checkpoint: bool = False
    #: where jobs run: ``local``, one worker thread in this process (one GPU); ``ray``, one warm replica per GPU of
    #: a Ray cluster (``pip install 'mtvcrafter[ray]'``)
    executor: Literal["local", "ray"] = "local"
    #: ``--executor ray``: the cluster to join, ``auto`` (the one ``ray start`` runs on this machine) or its head's
    #: ``HOST:PORT``; None: a Ray instance of this server's own on this machine
    ray_address: str | None = None
    #: ``--executor ray``: the GPUs each replica holds (a fraction shares a GPU between replicas)
    gpus_per_replica: float = Field(1.0, gt=0)
    #: ``--executor ray``: how many replicas, or ``auto``: one per ``gpus_per_replica`` GPUs of the cluster (one
    #: CPU replica where it has no GPU); where the cluster has no GPU, N replicas run on its CPUs
    replicas: Annotated[int, Field(ge=1, le=1024)] | Literal["auto"] = "auto"
    #: ``--executor ray`` without ``ray_address``: the GPUs this server's own Ray instance offers (None: those it
    #: finds); on a machine without GPUs, N logical GPUs try the GPU scheduling on CPU replicas
    ray_gpus: int | None = Field(None, ge=0, le=1024)

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        # Checked after validation, outside it: a plain ValueError whose message the CLI prints as one line.
        if not is_loopback(self.host) and not self.token:
            raise ValueError(
                f"binding {self.host} exposes the server beyond this machine: set an access token "
                "(--token or MTVCRAFTER_TOKEN); clients then send 'Authorization: Bearer <token>'"
            )
