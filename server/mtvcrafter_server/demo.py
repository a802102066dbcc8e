"""``make demo``: start a server on loopback, render the sample motion through it, stop it."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from .local import local_server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mtvcrafter_server.demo")
    parser.add_argument("--ref", required=True)
    parser.add_argument("--motion", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--backend", default="preview")
    args = parser.parse_args(argv)
    out = Path(args.out)
    data = out.parent / "server-data"
    data.mkdir(parents=True, exist_ok=True)
    print(f"starting a server on loopback (data in {data})", file=sys.stderr)
    with local_server(data, log=out.parent / "server.log") as url:
        command = [
            sys.executable,
            "-m",
            "mtvcrafter",
            "animate",
            "--server",
            url,
            "--backend",
            args.backend,
            "--ref",
            args.ref,
            "--motion",
            args.motion,
            "--out",
            str(out),
        ]
        return subprocess.call(command)


if __name__ == "__main__":
    raise SystemExit(main())
