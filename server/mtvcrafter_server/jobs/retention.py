"""Keeping the data folder tidy: what a killed server left behind is removed at start-up, and finished jobs
beyond the retention settings (``keep_days``, ``keep_gb``) are deleted at start-up and every
``cleanup_interval_s``: a job's row, events, inputs, and its result once no remaining job names it."""

from __future__ import annotations

import logging
import threading
import time

from ..settings import Settings
from .files import DataFolder, StorageError
from .store import JobStore

log = logging.getLogger("mtvcrafter_server")

DAY_S = 86_400.0
GB = 1e9


class Housekeeper:
    def __init__(self, settings: Settings, store: JobStore, files: DataFolder):
        self.settings = settings
        self.store = store
        self.files = files
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def at_start(self) -> None:
        """Before any job runs: the leftovers of a killed server, then the retention settings."""
        removed = self.files.clean_start(self.store.ids(), set(self.store.results_in_use()))
        if any(removed.values()):
            log.info(
                "removed what the last run left behind: %d scratch file(s), %d input folder(s) of no job, "
                "%d result(s) of no job",
                removed["scratch"],
                removed["inputs"],
                removed["results"],
            )
        self.sweep()

    def sweep(self) -> int:
        """Delete the finished jobs beyond the retention settings (their rows first, then their files); how
        many."""
        keep_days, keep_gb = self.settings.keep_days, self.settings.keep_gb
        if keep_days is None and keep_gb is None:
            return 0
        uses = self.store.results_in_use()
        doomed: dict[str, str | None] = {}  # job id → the result file to delete with it (None: none)

        def forget(job_id: str, result: str | None) -> int:
            """Plan a job's deletion: the bytes it frees."""
            size = self.files.job_size(job_id)
            doomed[job_id] = None
            if result is not None:
                uses[result] = uses.get(result, 1) - 1
                if uses[result] <= 0:
                    doomed[job_id] = result
                    size += self.files.result_size(result)
            return size

        freed = 0
        if keep_days is not None:
            for job_id, result in self.store.finished_jobs(before=time.time() - keep_days * DAY_S):
                freed += forget(job_id, result)
        if keep_gb is not None:
            used = self.files.usage() - freed
            for job_id, result in self.store.finished_jobs():
                if used <= keep_gb * GB:
                    break
                if job_id not in doomed:
                    size = forget(job_id, result)
                    used -= size
                    freed += size
        if not doomed:
            return 0
        self.store.delete(list(doomed))
        for job_id, result in doomed.items():
            self.files.remove_job(job_id)
            if result is not None:
                self.files.remove_result(result)
        log.info("retention: deleted %d finished job(s), %.1f MB", len(doomed), freed / 1e6)
        return len(doomed)

    def start(self) -> None:
        """Sweep every ``cleanup_interval_s`` (when a retention setting is given)."""
        if self.settings.keep_days is None and self.settings.keep_gb is None:
            return
        self._thread = threading.Thread(target=self._loop, name="mtvcrafter-retention", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.cleanup_interval_s):
            try:
                self.sweep()
            except StorageError as exc:
                log.warning("retention: %s; tried again in %.0f s", exc.message, self.settings.cleanup_interval_s)
            except Exception:  # never the end of the server
                log.exception("retention: unexpected failure; tried again later")
