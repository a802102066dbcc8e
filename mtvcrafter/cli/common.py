"""What every command group shares: the progress bar, usage errors, and option types."""

from __future__ import annotations

import argparse
import sys
import time

EXIT_USAGE = 2
EXIT_FAILED = 1


class UsageError(Exception):
    """A combination of options that cannot work; shown as one line."""


class Progress:
    """A one-line progress bar on stderr (only redrawn on a terminal), with rate and ETA."""

    def __init__(self, label: str, stream=None):
        self.label = label
        self.stream = stream or sys.stderr
        self.start = time.perf_counter()
        self.live = self.stream.isatty()
        self._last = 0.0

    def __call__(self, done: int, total: int | None) -> None:
        now = time.perf_counter()
        if not self.live or (now - self._last < 0.1 and done != total):
            return
        self._last = now
        elapsed = now - self.start
        if total:
            eta = elapsed / done * (total - done) if done else 0.0
            line = f"\r{self.label} {_bar(done / total)} {done}/{total} ETA {eta:4.1f}s"
        else:
            line = f"\r{self.label} {done}"
        self.stream.write(line)
        self.stream.flush()

    def close(self) -> float:
        elapsed = time.perf_counter() - self.start
        if self.live:
            self.stream.write("\n")
        return elapsed


class PhaseProgress(Progress):
    """A :class:`mtvcrafter.backends.Progress`: the bar shows the phase ("loading model", "denoising" …),
    the fraction of the whole render, the phase's own message and the ETA when one is known."""

    def __init__(self, stream=None):
        super().__init__("", stream)
        self._phase = ""
        self._width = 0

    def __call__(self, phase: str, fraction: float, message: str = "", eta_s: float | None = None) -> None:  # type: ignore[override]
        now = time.perf_counter()
        if not self.live or (now - self._last < 0.1 and phase == self._phase and fraction < 1.0):
            return
        self._last, self._phase = now, phase
        eta = f" ETA {eta_s:4.1f}s" if eta_s is not None else ""
        line = f"{phase:<15} {_bar(fraction)} {message}{eta}"
        self.stream.write("\r" + line.ljust(self._width))
        self._width = len(line)
        self.stream.flush()


def _bar(fraction: float, width: int = 30) -> str:
    filled = int(width * min(max(fraction, 0.0), 1.0))
    return f"[{'#' * filled}{'.' * (width - filled)}]"


def unit_option(text: str) -> str:
    from mtvcrafter.motion.units import UNITS

    if text.lower() in (*UNITS, "auto"):
        return text.lower()
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(
            f"expected {', '.join(UNITS)}, auto, or metres per unit (e.g. 0.01), got {text!r}"
        )
    return text


def axis_option(text: str) -> str | None:
    axes = ("X", "Y", "Z", "-X", "-Y", "-Z")
    if text.lower() == "auto":
        return None
    if text.upper() not in axes:
        raise argparse.ArgumentTypeError(f"expected {', '.join(axes)} or auto, got {text!r}")
    return text.upper()


def strength_option(text: str) -> float:
    """A clean-up strength, from 0 (none) to 1 (strong)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a strength from 0 (none) to 1 (strong), got {text!r}")
    return value


def add_motion_options(parser: argparse.ArgumentParser) -> None:
    """The options of every command that reads a motion file."""
    parser.add_argument(
        "--fps",
        type=float,
        help="frame rate for files that store none (official .pkl: 30, AIST++ .pkl: 60, joints .npy and MDM "
        "results.npy: 20, other SMPL parameters: 30)",
    )
    parser.add_argument(
        "--body-model",
        metavar="PATH",
        help="SMPL/SMPL-H/SMPL-X model .npz, or a folder of them, for exact joints of SMPL parameters (AMASS, "
        "AIST++, fitting outputs; default: the built-in neutral skeleton)",
    )
    parser.add_argument(
        "--preset",
        metavar="ID",
        help="BVH: the bone map (smpl, mixamo, cmu, rokoko, motionbuilder, generic, one of yours, or the path of a "
        "bone-map .json file; see presets/README.md), or structure: from the skeleton's shape alone, never the "
        "names; default auto: the names' map, checked against the skeleton (left and right), or the skeleton's "
        "structure where no map names all 24 joints",
    )
    parser.add_argument(
        "--unit",
        type=unit_option,
        help="BVH and joints .npy (MDM too): the file's unit, m, cm, mm, inch, cmu (the CMU database's), or metres "
        "per unit; default auto: the bone map's (BVH) or metres (.npy), unless the skeleton's size says otherwise",
    )
    parser.add_argument(
        "--up",
        type=axis_option,
        help="BVH, joints .npy (MDM too) and SMPL parameters: the file's up axis, X, Y, Z, -X, -Y or -Z; default "
        "auto: the bone map's (BVH), Y (.npy, AIST++, fitting outputs) or Z (AMASS), unless the skeleton clearly "
        "stands along another axis (Z for Blender's exports of Z-up rigs, -Y for a camera's axes; not for AMASS "
        "and AIST++)",
    )
    parser.add_argument(
        "--camera",
        metavar="FILE.json",
        help='BVH: the camera, {"position": [x, y, z], "look_at": [x, y, z]} in Blender\'s world (Z up, metres; '
        "see README); default: level, in front of the performer, the whole clip in view",
    )


def motion_options(args: argparse.Namespace) -> dict:
    """The keyword arguments of :func:`mtvcrafter.motion.load_motion` from :func:`add_motion_options`."""
    return {
        "fps": args.fps,
        "body_model": args.body_model,
        "bone_map": args.preset,
        "unit": args.unit,
        "camera": args.camera,
        "up": args.up,
    }


def _clip_index(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a clip is a number from 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"a clip is a number from 0 (the first clip), got {value}")
    return value


def add_clip_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clip", type=_clip_index, default=0, help="clip of a multi-clip file (default 0)")


def add_checkpoint_trust_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="allow full unpickling of .pt/.bin weights that safe loading refuses (runs their code)",
    )


def add_device_option(parser: argparse.ArgumentParser, default: str = "cuda when there is one") -> None:
    parser.add_argument("--device", help=f"cuda, cuda:1, cpu (default: {default})")
