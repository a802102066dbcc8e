"""``mtvcrafter motion extract``: a performer's 3D motion from a video, through the NLF pose estimator."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from .common import PhaseProgress, UsageError, add_device_option, strength_option

#: where the NLF model is looked up when ``--nlf`` is not given
NLF_ENV = "MTVCRAFTER_NLF"
SMOOTHING = ("savgol", "one-euro", "none")


def _box(text: str) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or not all(math.isfinite(v) for v in values) or values[2] <= 0 or values[3] <= 0:
        raise argparse.ArgumentTypeError(f"expected X,Y,W,H in pixels of the first frame (W, H > 0), got {text!r}")
    return values  # type: ignore[return-value]


def _count(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low:
            raise argparse.ArgumentTypeError(f"expected a whole number from {low}, got {text!r}")
        return value

    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"expected seconds (0 or more), got {text!r}")
    return value


def _fov(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 1 <= value <= 179:
        raise argparse.ArgumentTypeError(f"expected degrees between 1 and 179, got {text!r}")
    return value


def add_action(actions) -> None:
    """``motion extract`` among the actions of the ``motion`` group."""
    extract = actions.add_parser(
        "extract",
        help="a performer's 3D motion from a video (NLF pose estimator), as our .npz",
        description="Decode a video (any common format; rotation applied, variable frame rate made constant, its "
        "fps kept), find the performer in every frame with the NLF model, follow them, fill short gaps and smooth "
        "without lag. The NLF model is a TorchScript file you download (non-commercial weights): --nlf or "
        f"${NLF_ENV}.",
    )
    extract.add_argument("video", help="the driving video (mp4, mov, mkv, webm, avi …)")
    extract.add_argument("--nlf", metavar="MODEL", help=f"the NLF TorchScript file (default: ${NLF_ENV})")
    extract.add_argument("--out", metavar="OUT.npz", help="where to write the motion (default: VIDEO's name .npz here)")
    extract.add_argument(
        "--pkl", metavar="OUT.pkl", help="also write the official layout (what MTVCrafter's own scripts read)"
    )
    who = extract.add_mutually_exclusive_group()
    who.add_argument(
        "--person",
        type=_count(0),
        metavar="N",
        help="follow the N-th largest person of the first frames (0: the largest, the default)",
    )
    who.add_argument("--box", type=_box, metavar="X,Y,W,H", help="follow the person in this box of the first frames")
    extract.add_argument(
        "--smooth",
        choices=SMOOTHING,
        default="savgol",
        help="savgol: Savitzky-Golay over a third of a second (default); one-euro: One-Euro run both ways; "
        "both without lag; none",
    )
    extract.add_argument(
        "--clean",
        type=strength_option,
        nargs="?",
        const=0.5,
        metavar="STRENGTH",
        help="then clean the motion: more smoothing (0-1, default 0.5) and feet planted while they touch the ground",
    )
    extract.add_argument(
        "--max-gap", type=_seconds, default=0.5, metavar="S", help="fill gaps up to this long (default 0.5 s)"
    )
    extract.add_argument(
        "--fov", type=_fov, metavar="DEG", help="the camera's field of view across the larger side (default 55°, NLF's)"
    )
    extract.add_argument("--batch-size", type=_count(1), default=8, help="frames per model call (default 8)")
    add_device_option(extract)
    extract.add_argument("--json", action="store_true", help="print a machine-readable summary")
    extract.set_defaults(run=extract_command)


def extract_command(args: argparse.Namespace) -> int:
    from mtvcrafter.motion import save_motion

    model_path = args.nlf or os.environ.get(NLF_ENV)
    if not model_path:
        raise UsageError(
            f"no NLF model: give --nlf MODEL.torchscript or set ${NLF_ENV} (download nlf_l_multi.torchscript "
            "from the NLF project's releases; its weights are for non-commercial use)"
        )
    out = Path(args.out) if args.out else Path(Path(args.video).stem + ".npz")
    if out.suffix.lower() != ".npz":
        raise UsageError(f"--out {out}: the motion is written as our .npz; give a name ending in .npz")
    if args.pkl and Path(args.pkl).suffix.lower() not in (".pkl", ".pickle"):
        raise UsageError(f"--pkl {args.pkl}: give a name ending in .pkl")
    for path in filter(None, (out, args.pkl and Path(args.pkl))):
        folder = path.parent if str(path.parent) else Path(".")
        if not folder.is_dir():
            raise UsageError(f"{path}: the folder {folder} does not exist")

    from mtvcrafter.extract import ExtractOptions, extract_motion, load_nlf, probe_video
    from mtvcrafter.extract.nlf import default_intrinsics

    info = probe_video(args.video)
    device = args.device or _default_device()
    options = ExtractOptions(
        person=args.person,
        box=args.box,
        smooth=args.smooth,
        batch_size=args.batch_size,
        device=device,
        max_gap_s=args.max_gap,
        intrinsics=None if args.fov is None else default_intrinsics((info.height, info.width), args.fov),
    )
    progress = PhaseProgress()
    model = load_nlf(model_path, device=device)
    motion = extract_motion(args.video, model, options, progress=progress)
    progress.close()
    report = None
    if args.clean is not None:
        from mtvcrafter.motion.clean import clean_motion

        motion, report = clean_motion(motion, smooth=args.clean)
    save_motion(motion, out)
    if args.pkl:
        save_motion(motion, args.pkl, layout="per-frame")
    valid = motion.frame_valid
    summary = {
        "video": str(args.video),
        "out": str(out),
        "pkl": args.pkl,
        "frames": motion.num_frames,
        "fps": motion.fps,
        "image_width": motion.camera_image_size[1],
        "image_height": motion.camera_image_size[0],
        "fov_deg": motion.fov_deg,
        "valid_frames": int(valid.sum()) if valid is not None else motion.num_frames,
        "valid_fraction": round(motion.valid_fraction, 4),
        "device": device,
        "notes": list(motion.notes),
        "warnings": motion.warnings(),
        "clean": None if report is None else report.summary(),
    }
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
        return 0
    print(
        f"{out}: {summary['frames']} frames at {motion.fps:g} fps, camera {summary['image_width']}x"
        f"{summary['image_height']} (fov {motion.fov_deg:g}°); the performer was seen in "
        f"{summary['valid_frames']} of them ({100 * motion.valid_fraction:.0f} %)"
    )
    if args.pkl:
        print(f"{args.pkl}: the official layout")
    for note in motion.notes:
        print(f"  note: {note}")
    for warning in summary["warnings"]:
        print(f"  warning: {warning}", file=sys.stderr)
    return 0


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
