"""Keeping this server's own paths out of what clients read (API errors, job messages)."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path, PurePath
from typing import Any


def server_folders(settings: Any) -> list[str]:
    """The absolute paths of this server's own folders and files (data, models, checkpoint, NLF model,
    LoRA folder, temporary files, home), each as written and as resolved, longest first."""
    given = [getattr(settings, name, None) for name in ("data_dir", "model_dir", "base_model_dir", "lora_dir")]
    given += [getattr(settings, "tokenizer", None), getattr(settings, "nlf", None), tempfile.gettempdir(), Path.home()]
    folders: set[str] = set()
    for path in filter(None, given):
        for form in (Path(path).expanduser(), Path(path).expanduser().resolve()):
            if form.is_absolute() and len(form.parts) > 1:
                folders.add(str(form))
    return sorted(folders, key=len, reverse=True)


def hide_server_paths(message: str, folders: list[str]) -> str:
    """``message`` with every path inside one of ``folders`` shortened to its last part (a file's name)."""
    for folder in folders:
        pattern = re.escape(folder) + r"(?:[/\\][^\s'\"(),;]*[^\s'\"(),;:.])?"
        message = re.sub(pattern, lambda m: PurePath(m.group(0)).name or "…", message)
    return message
