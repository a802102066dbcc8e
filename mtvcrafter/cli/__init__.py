"""The ``mtvcrafter`` command: one module per command group; each parses its arguments, calls the
library and prints. Errors that are the input's fault are one line on stderr."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from mtvcrafter import __version__

from . import animate, bench, blender, motion, serve, tokenizer
from .common import EXIT_FAILED, EXIT_USAGE, UsageError

GROUPS = (motion, animate, serve, blender, tokenizer, bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtvcrafter", description="Animate a human image with a 3D motion (MTVCrafter)."
    )
    parser.add_argument("--version", action="version", version=f"mtvcrafter {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.add_parser(commands)
    return parser


def _user_errors() -> tuple[type[Exception], ...]:
    """Errors that are the input's fault, shown as one line. A layer's error type is counted only where
    the command imported that layer: torch loads only for the commands that need it."""
    from mtvcrafter.backends import BackendError
    from mtvcrafter.motion import MotionError

    errors: list[type[Exception]] = [MotionError, UsageError, BackendError]
    for module, name in (
        ("mtvcrafter.render", "RenderError"),
        ("mtvcrafter.tokenizer", "TokenizerError"),
        ("mtvcrafter.dit", "DiTError"),
        ("mtvcrafter.client", "ServerError"),
    ):
        if module in sys.modules:
            errors.append(getattr(sys.modules[module], name))
    return tuple(errors)


#: options whose values may start with "-" (``--up -Y``): argparse would read such a value as an option
_SIGNED_VALUE_OPTIONS = ("--up",)
_SIGNED_AXES = ("-X", "-Y", "-Z")


def _join_signed_values(argv: Sequence[str]) -> list[str]:
    """``--up -Y`` as ``--up=-Y``, so a downward axis can be written as the README writes it."""
    out: list[str] = []
    items = list(argv)
    i = 0
    while i < len(items):
        if items[i] in _SIGNED_VALUE_OPTIONS and i + 1 < len(items) and items[i + 1].upper() in _SIGNED_AXES:
            out.append(f"{items[i]}={items[i + 1]}")
            i += 2
            continue
        out.append(items[i])
        i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_join_signed_values(sys.argv[1:] if argv is None else argv))
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except BrokenPipeError:  # the reader went away (``… --json | head``): stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except OSError as exc:  # the output folder is missing, a path is a folder, the disk is full, …
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:
        if not isinstance(exc, _user_errors()):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, UsageError) else EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


__all__ = ["build_parser", "main"]
