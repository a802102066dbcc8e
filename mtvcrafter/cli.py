"""The ``mtvcrafter`` command."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from . import __version__

EXIT_USAGE = 2
EXIT_FAILED = 1


class _UsageError(Exception):
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
            width = 30
            filled = int(width * done / total)
            eta = elapsed / done * (total - done) if done else 0.0
            line = f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} ETA {eta:4.1f}s"
        else:
            line = f"\r{self.label} {done}"
        self.stream.write(line)
        self.stream.flush()

    def close(self) -> float:
        elapsed = time.perf_counter() - self.start
        if self.live:
            self.stream.write("\n")
        return elapsed


MAX_OUTPUT_SIDE = 8192


def _guidance(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value >= 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number ≥ 0 (1 turns guidance off), got {text!r}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2**63 - 1:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to 2**63-2, got {text!r}")
    return value


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 512x512, got {text!r}") from None
    if not (16 <= width <= MAX_OUTPUT_SIDE and 16 <= height <= MAX_OUTPUT_SIDE):
        raise argparse.ArgumentTypeError(f"each side must be between 16 and {MAX_OUTPUT_SIDE} pixels, got {text!r}")
    return width, height


def _unit(text: str) -> str:
    from .motion.retarget import UNITS

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


def _axis(text: str) -> str | None:
    axes = ("X", "Y", "Z", "-X", "-Y", "-Z")
    if text.lower() == "auto":
        return None
    if text.upper() not in axes:
        raise argparse.ArgumentTypeError(f"expected {', '.join(axes)} or auto, got {text!r}")
    return text.upper()


def _motion_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fps", type=float, help="frame rate for files that store none (official .pkl: 30)")
    parser.add_argument(
        "--body-model",
        metavar="PATH",
        help="SMPL/SMPL-H/SMPL-X model .npz, or a folder of them, for exact AMASS joints "
        "(default: the built-in neutral skeleton)",
    )
    parser.add_argument(
        "--preset",
        metavar="ID",
        help="BVH: the bone map (smpl, mixamo, cmu, rokoko, generic, one of yours, or the path of a bone-map "
        ".json file; see presets/README.md); default auto: detected from the joint names",
    )
    parser.add_argument(
        "--unit",
        type=_unit,
        help="BVH: the file's unit, m, cm, mm, inch, cmu (the CMU database's), or metres per unit; "
        "default auto: the bone map's, unless the skeleton's size says otherwise",
    )
    parser.add_argument(
        "--up",
        type=_axis,
        help="BVH: the file's up axis, X, Y, Z, -X, -Y or -Z; default auto: the bone map's (Y), unless the "
        "skeleton clearly stands along another axis (Z for Blender's exports of Z-up rigs)",
    )
    parser.add_argument(
        "--camera",
        metavar="FILE.json",
        help='BVH: the camera, {"position": [x, y, z], "look_at": [x, y, z]} in Blender\'s world (Z up, metres; '
        "see README); default: level, in front of the performer, the whole clip in view",
    )


def _load_options(args: argparse.Namespace) -> dict:
    return {
        "fps": args.fps,
        "body_model": args.body_model,
        "bone_map": args.preset,
        "unit": args.unit,
        "camera": args.camera,
        "up": args.up,
    }


def cmd_motion_info(args: argparse.Namespace) -> int:
    from .motion import load_motions

    motions = load_motions(args.file, **_load_options(args))
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
                "image_size": list(motion.image_size) if motion.image_size else None,
                "fov_deg": motion.fov_deg,
                "frame_start": motion.frame_start,
                "has_rotations": motion.rotations is not None,
                "notes": list(motion.notes),
                "warnings": motion.warnings(),
            }
        )
    if args.json:
        print(json.dumps({"file": str(args.file), "clips": clips}, ensure_ascii=False, indent=2))
        return 0
    print(f"{args.file}: {len(clips)} clip(s), format {clips[0]['source_format']}")
    for c in clips:
        size = "x".join(map(str, reversed(c["image_size"]))) if c["image_size"] else "unknown"
        print(
            f"  [{c['clip']}] {c['name'] or '-'}: {c['frames']} frames x {c['joints']} joints, "
            f"{c['fps']:g} fps ({c['duration_s']:.2f} s), camera image {size}, fov {c['fov_deg']:g}°"
        )
        for note in c["notes"]:
            print(f"      note: {note}")
        for warning in c["warnings"]:
            print(f"      warning: {warning}")
    return 0


def cmd_motion_convert(args: argparse.Namespace) -> int:
    from .motion import MotionError, inverse_kinematics, load_motion, load_motions, save_motions
    from .motion.rig import with_skeleton

    if args.all_clips:
        if Path(args.output).suffix.lower() not in (".pkl", ".pickle"):
            raise MotionError("--all-clips needs a .pkl output (an .npz holds one clip)", source=args.output)
        motions = load_motions(args.input, **_load_options(args))
    else:
        motions = [load_motion(args.input, clip=args.clip, **_load_options(args))]
    for motion in motions:
        if motion.source_format == "bvh":  # which bone map, how sure, the unit, the bones left out
            for note in motion.notes:
                print(f"{motion.name}: {note}", file=sys.stderr)
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


def cmd_motion_stats(args: argparse.Namespace) -> int:
    from .motion import NormStats, load_motions

    motions = [m for path in args.files for m in load_motions(path, **_load_options(args))]
    stats = NormStats.compute(motions)
    stats.save(args.out)
    frames = sum(m.num_frames for m in motions)
    print(f"wrote {Path(args.out) / 'mean.npy'} and std.npy from {len(motions)} clip(s), {frames} frames")
    return 0


def cmd_motion_fit(args: argparse.Namespace) -> int:
    from .motion import inverse_kinematics, load_motions

    motions = load_motions(args.file, **_load_options(args))
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


def _animate_with_model(args: argparse.Namespace, motion) -> Path:
    import torch

    from .dit import load_pipeline, tiny_pipeline
    from .dit.layout import make_scheduler
    from .dit.tiny import COGVIDEOX_5B_SCHEDULER
    from .render import write_mp4

    if args.backend == "mvdit-7b" and not args.model_dir:
        raise _UsageError("--backend mvdit-7b needs --model-dir (a download of yanboding/MTVCrafter; see README)")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise _UsageError(f"--device {device}: this machine or torch build has no CUDA GPU; use --device cpu")
    dtype_name = args.dtype or ("bf16" if device.startswith("cuda") else "fp32")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dtype_name]
    if args.backend == "tiny":
        pipe = tiny_pipeline()
        pipe.register_modules(scheduler=make_scheduler(args.scheduler, config=dict(COGVIDEOX_5B_SCHEDULER)))
        if dtype != torch.float32:
            pipe.to(dtype=dtype)
    else:
        if device == "cpu":
            print(
                "warning: no GPU: MV-DiT-7B on the CPU needs about 30 GB of memory (fp32) and hours per clip",
                file=sys.stderr,
            )
        print(f"loading the model from {args.model_dir} ({dtype_name})", file=sys.stderr)
        pipe = load_pipeline(
            args.model_dir,
            args.base_model_dir,
            torch_dtype=dtype,
            scheduler=args.scheduler,
            trust_checkpoint=args.trust_checkpoint,
        )
    if args.cpu_offload:
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    pipe.enable_vae_tiling()  # as the official script
    pipe.set_progress_bar_config(disable=True)
    progress = Progress("denoising")

    def on_step(pipeline, step, timestep, tensors):
        progress(step + 1, pipeline.total_steps)
        return tensors

    width, height = args.size
    steps = args.steps if args.steps is not None else (4 if args.backend == "tiny" else 50)
    result = pipe(
        args.ref,
        motion,
        height=height,
        width=width,
        num_inference_steps=steps,
        guidance_scale=args.guidance,
        seed=args.seed,
        reference_encoding=args.reference_encoding,
        callback_on_step_end=on_step,
    )
    progress.close()
    for warning in result.warnings():
        print(f"warning: {warning}", file=sys.stderr)
    return write_mp4(result.frames, args.out, fps=motion.fps, total=len(result.frames))


def _animate_on_server(args: argparse.Namespace, motion) -> int:
    import os

    from mtvcrafter.client import Client, ServerError

    if args.model_dir:
        raise _UsageError("--model-dir is the server's setting (mtvcrafter serve --model-dir); not with --server")
    width, height = args.size
    params = {
        "width": width,
        "height": height,
        "guidance": args.guidance,
        "seed": args.seed,
        "scheduler": args.scheduler,
        "reference_encoding": args.reference_encoding,
        "placement": args.placement,
    }
    if args.backend:
        params["backend"] = args.backend
    if args.steps is not None:
        params["steps"] = args.steps
    progress = Progress("server")

    def on_event(event: dict) -> None:
        progress(int(round(1000 * event.get("progress", 0.0))), 1000)

    token = args.token or os.environ.get("MTVCRAFTER_TOKEN") or None
    start = time.perf_counter()
    try:
        with Client(args.server, token=token) as client:
            out, job = client.render(motion, args.ref, args.out, params, on_event)
    except ServerError:
        progress.close()
        raise
    except KeyboardInterrupt:
        progress.close()
        print("cancelled the job on the server", file=sys.stderr)
        return 130
    progress.close()
    for warning in job.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    cached = " (cached result)" if job.get("cached") else ""
    seconds = time.perf_counter() - start
    return _rendered(
        f"{job['frames']} frames with the server's {job['backend']} backend in {seconds:.1f} s{cached}", out
    )


def _rendered(what: str, out) -> int:
    """The closing lines of ``animate``: what was rendered (stderr), then the video's path (stdout)."""
    print(f"rendered {what}", file=sys.stderr)
    print(Path(out).resolve())
    return 0


def cmd_animate(args: argparse.Namespace) -> int:
    from .motion import load_motion
    from .render import render_preview

    motion = load_motion(args.motion, clip=args.clip, **_load_options(args))
    for warning in motion.warnings():
        print(f"warning: {warning}", file=sys.stderr)
    if args.server:
        return _animate_on_server(args, motion)
    if args.backend is None:
        args.backend = "preview"
    if args.backend != "preview":
        start = time.perf_counter()
        out = _animate_with_model(args, motion)
        seconds = time.perf_counter() - start
        return _rendered(f"{motion.num_frames} frames with the {args.backend} backend in {seconds:.1f} s", out)
    progress = Progress("rendering")
    out = render_preview(motion, args.ref, args.out, size=args.size, placement=args.placement, progress=progress)
    elapsed = progress.close()
    what = f"{motion.num_frames} frames at {motion.fps:g} fps with the {args.backend} backend in {elapsed:.1f} s"
    return _rendered(what, out)


def cmd_serve(args: argparse.Namespace) -> int:
    import os

    from mtvcrafter_server import ServerConfig, serve

    token = args.token or os.environ.get("MTVCRAFTER_TOKEN") or None
    try:
        config = ServerConfig(
            host=args.host,
            port=args.port,
            data_dir=Path(args.data_dir),
            backend=args.backend,
            model_dir=Path(args.model_dir) if args.model_dir else None,
            base_model_dir=Path(args.base_model_dir) if args.base_model_dir else None,
            tokenizer=Path(args.tokenizer) if args.tokenizer else None,
            token=token,
            allowed_origins=args.allow_origin or [],
            device=args.device,
        )
    except ValueError as exc:
        raise _UsageError(str(exc)) from None
    print(
        f"mtvcrafter server on http://{args.host}:{args.port} (data in {Path(args.data_dir).resolve()})",
        file=sys.stderr,
    )
    try:
        serve(config)
    except RuntimeError as exc:  # the data folder is held by another server
        raise _UsageError(str(exc)) from None
    return 0


def cmd_blender_build(args: argparse.Namespace) -> int:
    from .blender_build import BuildError, build_extension

    try:
        path = build_extension(args.out, args.wheels_from)
    except BuildError as exc:
        raise _UsageError(str(exc)) from None
    print(
        "built the Blender extension; install it with Preferences › Get Extensions › Install from Disk",
        file=sys.stderr,
    )
    print(Path(path).resolve())
    return 0


def cmd_tokenize(args: argparse.Namespace) -> int:
    import numpy as np

    from .motion import load_motion
    from .tokenizer import VQ_LOSS_WARNING, MotionTokenizer

    motion = load_motion(args.motion, clip=args.clip, **_load_options(args))
    tokenizer = MotionTokenizer.from_pretrained(
        args.checkpoint, stats=args.stats, device=args.device, trust_checkpoint=args.trust_checkpoint
    )
    result = tokenizer.reconstruct(motion.joints)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            out,
            codes=result.codes,
            vq_loss=np.array(result.vq_loss),
            reconstruction=result.reconstruction_mm.astype(np.float32),
            joint_error_mm=result.error_mm.astype(np.float32),
            fps=np.array(motion.fps),
        )
        print(f"wrote {out}: codes {result.codes.shape}, reconstruction {result.reconstruction_mm.shape}")
    if args.eval or not args.out:
        from .motion import JOINT_NAMES

        worst = np.argsort(result.joint_error_mm)[::-1][:3]
        used = len(np.unique(result.codes))
        print(f"frames {motion.num_frames} -> latent frames {result.codes.shape[0]} ({result.codes.size} codes)")
        print(f"MPJPE {result.mpjpe_mm:.2f} mm; vq loss {result.vq_loss:.4f}")
        print(f"codes used {used} of {tokenizer.config.codebook_size} ({used / tokenizer.config.codebook_size:.2%})")
        print("worst joints: " + ", ".join(f"{JOINT_NAMES[j]} {result.joint_error_mm[j]:.1f} mm" for j in worst))
    if result.vq_loss > VQ_LOSS_WARNING:
        print(
            f"warning: vq loss {result.vq_loss:.3f} is above {VQ_LOSS_WARNING}; videos from such motions tend "
            "to be poor",
            file=sys.stderr,
        )
    return 0


def cmd_train_tokenizer(args: argparse.Namespace) -> int:
    from .motion import NormStats
    from .tokenizer import TokenizerConfig
    from .tokenizer.train import TrainConfig, train_tokenizer

    config = TrainConfig()
    for name in ("steps", "batch_size", "clip_frames", "learning_rate", "warmup_steps", "save_every", "seed"):
        value = getattr(args, name)
        if value is not None:
            setattr(config, name, value)
    config.mixed_precision = args.mixed_precision
    if args.size == "tiny":
        config.model = json.loads(TokenizerConfig.tiny().to_json())
    stats = NormStats.load(args.stats) if args.stats else None
    saved = train_tokenizer(args.data, args.out, config, stats=stats, init=args.init, resume=args.resume, cpu=args.cpu)
    print(f"tokenizer saved in {saved}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_benchmarks

    return run_benchmarks(args.suite, quick=args.quick, size=args.size, compile_blocks=args.compile)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtvcrafter", description="Animate a human image with a 3D motion (MTVCrafter)."
    )
    parser.add_argument("--version", action="version", version=f"mtvcrafter {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    motion = commands.add_parser("motion", help="inspect and convert motion files")
    motion_commands = motion.add_subparsers(dest="motion_command", required=True, metavar="ACTION")

    info = motion_commands.add_parser("info", help="frames, joints, fps, format and duration of every clip")
    info.add_argument("file")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    _motion_options(info)
    info.set_defaults(run=cmd_motion_info)

    convert = motion_commands.add_parser(
        "convert", help="convert to our .npz or to the official .pkl layout (by the output's extension)"
    )
    convert.add_argument("input")
    convert.add_argument("output")
    convert.add_argument("--clip", type=int, default=0, help="clip of a multi-clip file (default 0)")
    convert.add_argument("--all-clips", action="store_true", help="every clip of the input (into a .pkl)")
    convert.add_argument(
        "--fit", action="store_true", help="also store rotations of a fitted rigid skeleton (for rigging tools)"
    )
    _motion_options(convert)
    convert.set_defaults(run=cmd_motion_convert)

    stats = motion_commands.add_parser(
        "stats", help="normalisation statistics (mean.npy, std.npy) over every clip of the given files"
    )
    stats.add_argument("files", nargs="+")
    stats.add_argument("--out", required=True, help="folder to write mean.npy and std.npy to")
    _motion_options(stats)
    stats.set_defaults(run=cmd_motion_stats)

    fit = motion_commands.add_parser(
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
    _motion_options(fit)
    fit.set_defaults(run=cmd_motion_fit)

    animate = commands.add_parser("animate", help="render a video of the reference image following the motion")
    animate.add_argument("--ref", required=True, help="reference image (PNG, JPEG, …)")
    animate.add_argument("--motion", required=True, help="motion file (.pkl, .npz, .bvh)")
    animate.add_argument("--out", required=True, help="output .mp4")
    animate.add_argument(
        "--backend",
        choices=("preview", "mvdit-7b", "tiny"),
        default=None,
        help="preview: the skeleton drawn over the reference image, on the CPU; mvdit-7b: MTVCrafter's 7B "
        "video model (needs --model-dir and a GPU); tiny: the same pipeline with tiny random weights (a smoke test)",
    )
    animate.add_argument("--server", help="render on a running server (URL, e.g. http://127.0.0.1:8765) instead")
    animate.add_argument("--token", help="the server's access token (or MTVCRAFTER_TOKEN)")
    animate.add_argument("--model-dir", help="mvdit-7b: folder with MV-DiT/CogVideoX, 4DMoT and CogVideoX-5b (README)")
    animate.add_argument("--base-model-dir", help="mvdit-7b: the CogVideoX-5b folder, if not inside --model-dir")
    animate.add_argument("--steps", type=int, help="denoising steps (default 50; tiny: 4)")
    animate.add_argument("--guidance", type=_guidance, default=3.0, help="motion guidance scale (default 3.0)")
    animate.add_argument("--seed", type=_seed, default=6666, help="random seed, 0 to 2**63-2 (default 6666)")
    animate.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="allow full unpickling of .pt/.bin weights that safe loading refuses (runs their code)",
    )
    animate.add_argument("--scheduler", default="dpm", help="dpm (default), ddim, or a diffusers scheduler class name")
    animate.add_argument("--device", help="cuda, cuda:1, cpu (default: cuda when there is one)")
    animate.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), help="default bf16 on a GPU, fp32 on the CPU")
    animate.add_argument("--cpu-offload", action="store_true", help="keep only the running model on the GPU")
    animate.add_argument(
        "--reference-encoding",
        choices=("image", "video"),
        default="image",
        help="image: encode the reference once (default); video: 49 copies, as the official script",
    )
    animate.add_argument("--clip", type=int, default=0, help="clip of a multi-clip file (default 0)")
    animate.add_argument("--size", type=_size, default=(512, 512), help="output WIDTHxHEIGHT (default 512x512)")
    animate.add_argument(
        "--placement",
        choices=("fit", "camera"),
        default="fit",
        help="fit: skeleton scaled over the middle of the image; camera: where the motion's own camera saw it",
    )
    _motion_options(animate)
    animate.set_defaults(run=cmd_animate)

    serve = commands.add_parser("serve", help="the local server (HTTP API) for the Blender add-on and scripts")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback; others need --token)")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--data-dir", default="mtvcrafter-data", help="jobs database, inputs and results")
    serve.add_argument(
        "--backend", choices=("preview", "tiny", "mvdit-7b"), help="default backend (default: the best available)"
    )
    serve.add_argument("--model-dir", help="a download of yanboding/MTVCrafter (+ CogVideoX-5b), for mvdit-7b")
    serve.add_argument("--base-model-dir", help="the CogVideoX-5b folder, if not inside --model-dir")
    serve.add_argument("--tokenizer", help="4DMoT checkpoint for /v1/tokenize and the preview's reconstruction")
    serve.add_argument("--token", help="access token clients must send (or MTVCRAFTER_TOKEN); required off loopback")
    serve.add_argument("--allow-origin", action="append", help="a browser origin allowed to call the API (repeatable)")
    serve.add_argument("--device", help="cuda, cuda:1, cpu (default: cuda when there is one)")
    serve.set_defaults(run=cmd_serve)

    blender = commands.add_parser("blender", help="the Blender add-on")
    blender_commands = blender.add_subparsers(dest="blender_command", required=True, metavar="ACTION")
    build = blender_commands.add_parser("build", help="the installable extension zip (add-on + wheels)")
    build.add_argument("--out", required=True, help="folder for mtvcrafter_bridge-<version>.zip")
    build.add_argument("--wheels-from", help="take httpx & co. wheels from this folder instead of the package index")
    build.set_defaults(run=cmd_blender_build)

    tokenize = commands.add_parser("tokenize", help="4DMoT codes and reconstruction of a motion (what the model sees)")
    tokenize.add_argument("motion")
    tokenize.add_argument(
        "--checkpoint",
        required=True,
        help="official 4DMoT/mp_rank_00_model_states.pt, or a folder saved by train-tokenizer",
    )
    tokenize.add_argument("--stats", help="folder with mean.npy and std.npy (default: the checkpoint's or official)")
    tokenize.add_argument("--out", help="write codes, vq loss and reconstruction to this .npz")
    tokenize.add_argument("--eval", action="store_true", help="print MPJPE, vq loss, code usage and worst joints")
    tokenize.add_argument("--clip", type=int, default=0, help="clip of a multi-clip file (default 0)")
    tokenize.add_argument("--device", help="cpu, cuda, cuda:1, … (default cpu)")
    tokenize.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="allow full unpickling of a .pt file that safe loading refuses (runs its code)",
    )
    _motion_options(tokenize)
    tokenize.set_defaults(run=cmd_tokenize)

    train = commands.add_parser(
        "train-tokenizer", help="train 4DMoT (official recipe by default; accelerate launch for several GPUs)"
    )
    train.add_argument("data", nargs="+", help="motion files or folders of them (.pkl, .npz)")
    train.add_argument("--out", required=True, help="folder for checkpoints/ and the trained tokenizer/")
    train.add_argument("--size", choices=("full", "tiny"), default="full", help="full: the official architecture")
    train.add_argument("--init", help="start from these weights (official .pt or our folder)")
    train.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    train.add_argument("--steps", type=int, help="default 500000")
    train.add_argument("--batch-size", type=int, help="default 32")
    train.add_argument("--clip-frames", type=int, help="default 49")
    train.add_argument("--learning-rate", type=float, help="default 2e-4")
    train.add_argument("--warmup-steps", type=int, help="default 5000")
    train.add_argument("--save-every", type=int, help="default 5000")
    train.add_argument("--seed", type=int)
    train.add_argument("--stats", help="folder with mean.npy and std.npy (default: the official statistics)")
    train.add_argument("--mixed-precision", choices=("no", "bf16", "fp16"), default="no")
    train.add_argument("--cpu", action="store_true", help="train on the CPU even where a GPU is present")
    train.set_defaults(run=cmd_train_tokenizer)

    bench = commands.add_parser("bench", help="benchmarks against baselines measured in the same run")
    bench.add_argument(
        "suite",
        choices=("motion", "tokenizer", "dit", "server", "blender"),
        help="what to measure (blender: run "
        "with Blender's Python, .venv-blender/bin/python -m mtvcrafter bench blender)",
    )
    bench.add_argument(
        "--size",
        choices=("full", "small", "tiny"),
        help="dit: model size (default full on a GPU — the official 42 layers at 512x512x49 — small on the CPU)",
    )
    bench.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="dit: also time fused projections + torch.compile (default: on a GPU)",
    )
    bench.add_argument("--quick", action="store_true", help="fewer repeats")
    bench.set_defaults(run=cmd_bench)
    return parser


def _user_errors() -> tuple[type[Exception], ...]:
    """Errors that are the input's fault, shown as one line. The tokenizer's only where it was
    imported: torch loads only for the commands that need it."""
    from .motion import MotionError

    errors: list[type[Exception]] = [MotionError, _UsageError]
    for module, name in (
        ("mtvcrafter.render", "RenderError"),
        ("mtvcrafter.tokenizer", "TokenizerError"),
        ("mtvcrafter.dit", "DiTError"),
        ("mtvcrafter.client", "ServerError"),
    ):
        if module in sys.modules:  # only where the command imported it
            errors.append(getattr(sys.modules[module], name))
    return tuple(errors)


def main(argv: Sequence[str] | None = None) -> int:

    parser = build_parser()
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except OSError as exc:  # the output folder is missing, a path is a folder, the disk is full, …
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:
        if not isinstance(exc, _user_errors()):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, _UsageError) else EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
