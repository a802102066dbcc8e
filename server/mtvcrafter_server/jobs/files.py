"""The server's data folder: job inputs, finished results and scratch files, one server per folder."""

from __future__ import annotations

from pathlib import Path


class DataFolder:
    """Every path the server reads or writes, built from validated ids and checked to lie inside the folder."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        for sub in ("jobs", "results", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def lock(self) -> None:
        """Hold an exclusive lock on the folder for the life of the process (where the OS has flock)."""
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks here; one server per folder is then up to the user
            return
        self._lock_file = open(self.root / ".lock", "w")  # noqa: SIM115 - held open on purpose
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise RuntimeError(
                f"another server is using the data folder {self.root}; stop it, or use another --data-dir"
            ) from None

    def inside(self, path: Path) -> Path:
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root):
            raise PermissionError(f"{path} is outside the data folder")
        return resolved

    def job_dir(self, job_id: str) -> Path:
        return self.inside(self.root / "jobs" / job_id)

    def result(self, cache_key: str) -> Path:
        return self.inside(self.root / "results" / f"{cache_key}.mp4")

    def tmp(self) -> Path:
        return self.inside(self.root / "tmp")
