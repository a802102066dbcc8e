"""``mtvcrafter motion …``: inspect, convert, clean, fit and summarise motion files."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import extract
from .common import add_clip_option, add_motion_options, motion_options, strength_option


def add_parser(commands) -> None:
    motion = commands.add_parser("motion", help="inspect and convert motion files")
    actions = motion.add_subparsers(dest="motion_command", required=True, metavar="ACTION")

    info = actions.add_parser("info", help="frames, joints, fps, format and duration of every clip")
    info.add_argument("file")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    add_motion_options(info)
    info.set_defaults(run=info_command)

    convert = actions.add_parser(
        "convert", help="convert to our .npz or to the official .pkl layout (by the output's extension)"
    )
    convert.add_argument("input")
    convert.add_argument("output")
    add_clip_option(convert)
    convert.add_argument("--all-clips", action="store_true", help="every clip of the input (into a .pkl)")
    convert.add_argument(
        "--fit", action="store_true", help="also store rotations of a fitted rigid skeleton (for rigging tools)"
    )
    convert.add_argument(
        "--clean",
        type=strength_option,
        nargs="?",
        const=0.5,
        metavar="STRENGTH",
        help="clean the motion on the way: smoothing (0-1, default 0.5) and feet planted while they touch the "
        "ground (see motion clean)",
    )
    add_motion_options(convert)
    convert.set_defaults(run=convert_command)

    clean = actions.add_parser(
        "clean",
        help="smooth a motion's jitter and keep its feet planted while they touch the ground",
        description="Smooth the joints (the bones keep their lengths) and hold each foot still while it touches "
        "the ground (ground and up found from the motion itself, so a tilted camera is fine), faded in and out; "
        "prints how far the joints moved.",
    )
    clean.add_argument("input")
    clean.add_argument("--out", required=True, metavar="OUT", help="the cleaned motion, .npz (ours) or .pkl")
    clean.add_argument(
        "--smooth",
        type=strength_option,
        default=0.5,
        metavar="STRENGTH",
        help="0 (none) to 1 (strong); 0.5, the default, smooths over a third of a second",
    )
    clean.add_argument("--method", choices=("savgol", "one-euro"), default="savgol", help="smoothing filter")
    clean.add_argument("--no-feet", dest="feet", action="store_false", help="leave the feet as they are")
    add_clip_option(clean)
    clean.add_argument("--json", action="store_true", help="print the full report (per joint) as JSON")
    add_motion_options(clean)
    clean.set_defaults(run=clean_command)

    stats = actions.add_parser(
        "stats", help="normalisation statistics (mean.npy, std.npy) over every clip of the given files"
    )
    stats.add_argument("files", nargs="+")
    stats.add_argument("--out", required=True, help="folder to write mean.npy and std.npy to")
    add_motion_options(stats)
    stats.set_defaults(run=stats_command)

    fit = actions.add_parser(
        "fit", help="fit a rigid SMPL skeleton (inverse kinematics) and report the per-joint error"
    )
    fit.add_argument("file")
    fit.add_argument(
        "--mode",
        choices=("fit", "exact"),
        default="fit",
        help="fit: fixed bone lengths, least squares; exact: per-frame offsets, no error",
    )
    fit.add_argument("--json", action="store_true")
    add_motion_options(fit)
    fit.set_defaults(run=fit_command)

    extract.add_action(actions)


def info_command(args: argparse.Namespace) -> int:
    from mtvcrafter.motion import load_motions

    motions = load_motions(args.file, **motion_options(args))
    clips = []
    for index, motion in enumerate(motions):
        clips.append(
            {
                "clip": index,
                "name": motion.name,
                "frames": motion.num_frames,
                "joints": int(motion.joints.shape[1]),
                "fps": motion.fps,
                "duration_s": round(motion.duration, 4),
                "source_format": motion.source_format,
                "image_size": list(motion.image_size) if motion.image_size else None,  # (height, width), as stored
                "image_width": motion.image_size[1] if motion.image_size else None,
                "image_height": motion.image_size[0] if motion.image_size else None,
                "fov_deg": motion.fov_deg,
                "frame_start": motion.frame_start,
                "has_rotations": motion.rotations is not None,
                # frames in which the performer was observed (a video's extraction; the others were filled in)
                "valid_frames": None if motion.frame_valid is None else int(motion.frame_valid.sum()),
                "notes": list(motion.notes),
                "warnings": motion.warnings(),
                "quality": motion.quality().as_dict(),
            }
        )
    if args.json:
        print(json.dumps({"file": str(args.file), "clips": clips}, ensure_ascii=False, indent=2))
        return 0
    print(f"{args.file}: {len(clips)} clip(s), format {clips[0]['source_format']}")
    for c in clips:
        size = f"{c['image_width']}x{c['image_height']} (width x height)" if c["image_size"] else "unknown"
        print(
            f"  [{c['clip']}] {c['name'] or '-'}: {c['frames']} frames x {c['joints']} joints, "
            f"{c['fps']:g} fps ({c['duration_s']:.2f} s), camera image {size}, fov {c['fov_deg']:g}°"
        )
        if c["valid_frames"] is not None:
            print(
                f"      observed in {c['valid_frames']} of {c['frames']} frames "
                f"({100 * c['valid_frames'] / c['frames']:.0f} %; the others filled in)"
            )
        print(f"      quality: {c['quality']['summary']}")
        for note in c["notes"]:
            print(f"      note: {note}")
        for warning in c["warnings"]:
            print(f"      warning: {warning}")
    return 0


def convert_command(args: argparse.Namespace) -> int:
    from mtvcrafter.motion import MotionError, inverse_kinematics, load_motion, load_motions, save_motions
    from mtvcrafter.motion.rig import with_skeleton

    if args.all_clips:
        if Path(args.output).suffix.lower() not in (".pkl", ".pickle"):
            raise MotionError("--all-clips needs a .pkl output (an .npz holds one clip)", source=args.output)
        motions = load_motions(args.input, **motion_options(args))
    else:
        motions = [load_motion(args.input, clip=args.clip, **motion_options(args))]
    for motion in motions:
        if motion.source_format == "bvh":  # which bone map, how sure, the unit, the bones left out
            for note in motion.notes:
                print(f"{motion.name}: {note}", file=sys.stderr)
        for warning in motion.warnings():  # a wrong up axis, unit or bone map shows here
            print(f"{motion.name}: warning: {warning}", file=sys.stderr)
    if args.clean is not None:
        from mtvcrafter.motion.clean import clean_motion

        cleaned = []
        for motion in motions:
            motion, report = clean_motion(motion, smooth=args.clean)
            cleaned.append(motion)
            print(f"{motion.name}: cleaned: {report.summary()}", file=sys.stderr)
        motions = cleaned
    if args.fit:
        fitted = []
        for motion in motions:
            fit = inverse_kinematics(motion.joints, mode="fit")
            fitted.append(with_skeleton(motion, fit))
            print(
                f"{motion.name}: fitted a rigid skeleton, mean per-joint error {fit.mean_error:.2f} mm", file=sys.stderr
            )
        motions = fitted
    save_motions(motions, args.output)
    frames = sum(m.num_frames for m in motions)
    print(f"wrote {args.output} ({len(motions)} clip(s), {frames} frames)")
    return 0


def clean_command(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from mtvcrafter.motion import load_motion, save_motion
    from mtvcrafter.motion.clean import clean_motion

    motion = load_motion(args.input, clip=args.clip, **motion_options(args))
    cleaned, report = clean_motion(motion, smooth=args.smooth, feet=args.feet, method=args.method)
    save_motion(cleaned, args.out)
    if args.json:
        print(json.dumps({"input": args.input, "out": args.out, **asdict(report)}, ensure_ascii=False, indent=2))
    else:
        print(f"{args.out}: {report.summary()}")
    return 0


def stats_command(args: argparse.Namespace) -> int:
    from mtvcrafter.motion import NormStats, load_motions

    motions = [m for path in args.files for m in load_motions(path, **motion_options(args))]
    stats = NormStats.compute(motions)
    stats.save(args.out)
    frames = sum(m.num_frames for m in motions)
    print(f"wrote {Path(args.out) / 'mean.npy'} and std.npy from {len(motions)} clip(s), {frames} frames")
    return 0


def fit_command(args: argparse.Namespace) -> int:
    from mtvcrafter.motion import inverse_kinematics, load_motions

    motions = load_motions(args.file, **motion_options(args))
    rows = []
    for index, motion in enumerate(motions):
        start = time.perf_counter()
        fit = inverse_kinematics(motion.joints, mode=args.mode)
        rows.append(
            {
                "clip": index,
                "name": motion.name,
                "frames": motion.num_frames,
                "mode": args.mode,
                "mean_error_mm": round(fit.mean_error, 3),
                "max_error_mm": round(float(fit.error.max()), 3),
                "seconds": round(time.perf_counter() - start, 4),
            }
        )
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        print(f"{'clip':>4}  {'frames':>6}  {'mean mm':>8}  {'max mm':>8}  name")
        for r in rows:
            print(
                f"{r['clip']:>4}  {r['frames']:>6}  {r['mean_error_mm']:>8.2f}  {r['max_error_mm']:>8.1f}  {r['name']}"
            )
    return 0
