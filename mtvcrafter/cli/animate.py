"""``mtvcrafter animate``: one render, in this process or on a server. Its render options are generated
from :data:`mtvcrafter.backends.SETTINGS`, so they are the server's job ``params`` one for one."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mtvcrafter.backends import BACKENDS, SETTINGS, SETTINGS_BY_NAME, SettingsError

from .common import (
    PhaseProgress,
    UsageError,
    add_checkpoint_trust_option,
    add_clip_option,
    add_device_option,
    add_motion_options,
    motion_options,
)


def _setting_type(setting):
    def parse(text: str):
        try:
            return setting.check(text)  # converts the text to the setting's type, then checks its bounds
        except SettingsError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = setting.name  # argparse names the option's type in its messages
    return parse


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 512x512, got {text!r}") from None
    side = SETTINGS_BY_NAME["width"]
    if not (side.ge <= width <= side.le and side.ge <= height <= side.le):
        raise argparse.ArgumentTypeError(f"each side must be between {side.ge} and {side.le} pixels, got {text!r}")
    return width, height


def add_render_options(parser: argparse.ArgumentParser) -> None:
    """``--width``, ``--steps``, ``--guidance`` … one per render setting, plus ``--size WxH``."""
    group = parser.add_argument_group("render settings (the server's job params)")
    group.add_argument(
        "--size",
        type=_size,
        help="output WIDTHxHEIGHT (sets --width and --height; default: the backend's, 512x512 or for mvdit-17b "
        "the official size nearest the reference's aspect)",
    )
    for setting in SETTINGS:
        if setting.type is bool:  # a switch: given or not (not given: the setting's default)
            group.add_argument(f"--{setting.name.replace('_', '-')}", dest=setting.name, action="store_const",
                               const=True, default=None, help=setting.help)  # fmt: skip
            continue
        default = "the backend's" if setting.default is None else setting.default
        group.add_argument(
            f"--{setting.name.replace('_', '-')}",
            dest=setting.name,
            type=_setting_type(setting),
            choices=setting.choices,
            default=None,
            help=f"{setting.help} (default {default})",
        )


def render_settings(args: argparse.Namespace) -> dict:
    """The render settings the command line gave (the rest stay the defaults of RenderSettings)."""
    given = {s.name: getattr(args, s.name) for s in SETTINGS if getattr(args, s.name) is not None}
    if args.size is not None:
        given.setdefault("width", args.size[0])
        given.setdefault("height", args.size[1])
    return given


def add_parser(commands) -> None:
    animate = commands.add_parser("animate", help="render a video of the reference image following the motion")
    animate.add_argument("--ref", required=True, help="reference image (PNG, JPEG, …)")
    animate.add_argument("--motion", required=True, help="motion file (.pkl, .npz, .bvh)")
    animate.add_argument("--out", required=True, help="output .mp4")
    animate.add_argument(
        "--backend",
        choices=tuple(BACKENDS),
        default=None,
        help="; ".join(f"{name}: {cls.description}" for name, cls in BACKENDS.items())
        + " (default: preview here, the server's default with --server)",
    )
    animate.add_argument("--server", help="render on a running server (URL, e.g. http://127.0.0.1:8765) instead")
    animate.add_argument("--token", help="the server's access token (or MTVCRAFTER_TOKEN)")
    animate.add_argument(
        "--model-dir", help="mvdit-7b/17b: a download of yanboding/MTVCrafter with CogVideoX-5b or wan2.1 (README)"
    )
    animate.add_argument(
        "--base-model-dir", help="mvdit-7b/17b: the CogVideoX-5b or wan2.1 folder, if not inside --model-dir"
    )
    animate.add_argument(
        "--tokenizer", help="preview: a 4DMoT checkpoint; its reconstruction is drawn too (default MODEL_DIR/4DMoT)"
    )
    add_device_option(animate)
    animate.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="mvdit-7b/17b: torch.compile the transformer's blocks (default: on a CUDA GPU; the first step pays for "
        "it once); --no-compile keeps every bit of the plain path on a GPU too",
    )
    add_checkpoint_trust_option(animate)
    add_clip_option(animate)
    add_render_options(animate)
    add_motion_options(animate)
    animate.set_defaults(run=animate_command)


def animate_command(args: argparse.Namespace) -> int:
    from mtvcrafter.motion import load_motion

    motion = load_motion(args.motion, clip=args.clip, **motion_options(args))
    for warning in motion.warnings():
        print(f"warning: {warning}", file=sys.stderr)
    if args.server:
        return _on_server(args, motion)
    return _in_process(args, motion)


def _in_process(args: argparse.Namespace, motion) -> int:
    from mtvcrafter.backends import BackendConfig, RenderRequest, RenderSettings, get_backend
    from mtvcrafter.render import open_reference

    name = args.backend or "preview"
    config = BackendConfig(
        model_dir=args.model_dir,
        base_model_dir=args.base_model_dir,
        tokenizer=args.tokenizer,
        device=args.device,
        trust_checkpoint=args.trust_checkpoint,
        compile=args.compile,
    )
    backend = get_backend(name, config)
    available, reason = backend.status()
    if not available:
        raise UsageError(f"--backend {name} is not available: {reason}")
    settings = RenderSettings.from_dict(render_settings(args))
    backend.check(settings)
    request = RenderRequest(motion, open_reference(args.ref), settings, Path(args.out))
    progress = PhaseProgress()
    try:
        result = backend.run(request, progress)
    finally:
        seconds = progress.close()
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return _rendered(
        f"{result.frames} frames at {result.fps:g} fps with the {name} backend in {seconds:.1f} s", result.path
    )


def _on_server(args: argparse.Namespace, motion) -> int:
    import os

    from mtvcrafter.client import Client, ServerError

    for option in ("model_dir", "base_model_dir", "tokenizer", "device"):
        if getattr(args, option):
            flag = "--" + option.replace("_", "-")
            raise UsageError(f"{flag} is the server's setting (mtvcrafter serve {flag}); not with --server")
    if args.compile is not None:
        raise UsageError("--compile/--no-compile is for renders in this process; not with --server")
    params = render_settings(args)
    if args.backend:
        params["backend"] = args.backend
    progress = PhaseProgress()

    def on_event(event: dict) -> None:
        progress(event.get("phase") or event.get("status", ""), event.get("progress", 0.0), event.get("message", ""),
                 event.get("eta_s"))  # fmt: skip

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
