"""``mtvcrafter blender build``: the installable Blender extension zip."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import UsageError


def add_parser(commands) -> None:
    blender = commands.add_parser("blender", help="the Blender add-on")
    actions = blender.add_subparsers(dest="blender_command", required=True, metavar="ACTION")
    build = actions.add_parser("build", help="the installable extension zip (add-on + wheels)")
    build.add_argument("--out", required=True, help="folder for mtvcrafter_bridge-<version>.zip")
    build.add_argument("--wheels-from", help="take httpx & co. wheels from this folder instead of the package index")
    build.set_defaults(run=build_command)


def build_command(args: argparse.Namespace) -> int:
    from mtvcrafter.packaging.blender_extension import BuildError, build_extension

    try:
        path = build_extension(args.out, args.wheels_from)
    except BuildError as exc:
        raise UsageError(str(exc)) from None
    print(
        "built the Blender extension; install it with Preferences › Get Extensions › Install from Disk",
        file=sys.stderr,
    )
    print(Path(path).resolve())
    return 0
