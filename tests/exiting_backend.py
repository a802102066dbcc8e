"""``python tests/exiting_backend.py serve …``: ``mtvcrafter serve`` with one more backend, ``exits``, added to the
registry the way a new backend is (its line in :data:`mtvcrafter.backends.registry.BACKENDS`, before the server
reads the list). An ``exits`` render reports progress for :data:`RUNS_S` seconds, then ends its thread as a library
that calls ``sys.exit()`` does: ``SystemExit`` for an odd ``seed``, else :class:`Abort`, a ``BaseException`` of its
own; neither is an ``Exception``, so neither is a job's ordinary failure."""

from __future__ import annotations

import time

from mtvcrafter.backends import registry
from mtvcrafter.backends.base import never_cancelled, no_progress
from mtvcrafter.backends.preview import PreviewBackend

#: how long a render runs before it exits (the tests queue jobs behind it meanwhile)
RUNS_S = 1.5


class Abort(BaseException):
    """Not an ``Exception``: what some libraries raise to unwind a thread."""


class ExitingBackend(PreviewBackend):
    name = "exits"
    description = "a test backend: reports progress, then raises SystemExit (odd seed) or a BaseException"

    def run(self, request, progress=no_progress, cancelled=never_cancelled):
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < RUNS_S:
            progress("rendering", elapsed / RUNS_S / 2, "about to exit")
            time.sleep(0.05)
        if (request.settings.seed or 0) % 2:
            raise SystemExit(3)
        raise Abort("unwound by a library")


def main() -> int:
    registry.BACKENDS["exits"] = ExitingBackend
    from mtvcrafter.cli import main as cli

    return cli()


if __name__ == "__main__":
    raise SystemExit(main())
