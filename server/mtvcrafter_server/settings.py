"""Server settings (``mtvcrafter serve`` options)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mtvcrafter.client import is_loopback


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    data_dir: Path = Path("mtvcrafter-data")
    #: the backend jobs use when they name none (None: the best available)
    backend: str | None = None
    #: a download of yanboding/MTVCrafter (mvdit-7b; its 4DMoT also gives the preview's reconstruction)
    model_dir: Path | None = None
    base_model_dir: Path | None = None
    #: 4DMoT checkpoint for /v1/tokenize and the preview overlay (default: MODEL_DIR/4DMoT if present)
    tokenizer: Path | None = None
    #: bearer token; required when binding anything but loopback
    token: str | None = None
    #: browser origins allowed to call the API (none by default: no CORS, cross-site requests refused)
    allowed_origins: list[str] = field(default_factory=list)
    max_upload_bytes: int = 64 * 2**20
    max_frames: int = 20_000
    max_image_pixels: int = 40_000_000
    max_output_side: int = 2048
    device: str | None = None

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        if not is_loopback(self.host) and not self.token:
            raise ValueError(
                f"binding {self.host} exposes the server beyond this machine: set an access token "
                "(--token or MTVCRAFTER_TOKEN); clients then send 'Authorization: Bearer <token>'"
            )
