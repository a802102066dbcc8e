"""Render presets: JSON files (backend, size, steps, guidance, seed, prompt, LoRA …) from ``presets/render``.

The built extension carries them in its own ``presets/render`` folder; run from a checkout, the add-on
reads the repository's.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
FOLDERS = (HERE / "presets" / "render", HERE.parents[1] / "presets" / "render")
#: Keys a preset may set (the job parameters the server takes), and name/description. A key left out is left to
#: the backend (its official default: the 17B's size follows the reference image's aspect).
JOB_KEYS = {
    "backend",
    "width",
    "height",
    "num_frames",
    "steps",
    "guidance",
    "seed",
    "scheduler",
    "prompt",
    "negative_prompt",
    "lora",
    "reference_encoding",
    "placement",
    "dtype",
    "offload",
    "fast",
}


def load_presets() -> dict[str, dict]:
    """Presets by id (file name without .json); files that are not valid presets are skipped."""
    presets: dict[str, dict] = {}
    for folder in FOLDERS:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.json")):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if not isinstance(data, dict) or not set(data) <= JOB_KEYS | {"name", "description"}:
                continue
            presets.setdefault(path.stem, data)
        if presets:
            break
    return presets


def job_params(preset: dict) -> dict:
    return {k: v for k, v in preset.items() if k in JOB_KEYS}
