"""``mtvcrafter serve``: the server (HTTP API) for the Blender add-on and scripts."""

from __future__ import annotations

import argparse
import sys

from mtvcrafter.backends import BACKENDS

from .common import UsageError, add_checkpoint_trust_option, add_device_option


def add_parser(commands) -> None:
    serve = commands.add_parser(
        "serve",
        help="the local server (HTTP API) for the Blender add-on and scripts",
        description="Every option can also be set in the environment as MTVCRAFTER_<OPTION> "
        "(e.g. MTVCRAFTER_TOKEN, MTVCRAFTER_MODEL_DIR); an option on the command line wins.",
    )
    serve.add_argument("--host", help="address to bind (default 127.0.0.1, loopback; others need --token)")
    serve.add_argument("--port", type=int, help="default 8765")
    serve.add_argument(
        "--data-dir",
        help="jobs database, inputs and results (default: the user's data folder, e.g. ~/.local/share/mtvcrafter)",
    )
    serve.add_argument("--backend", choices=tuple(BACKENDS), help="default backend (default: the best available)")
    serve.add_argument(
        "--model-dir", help="a download of yanboding/MTVCrafter (+ CogVideoX-5b, wan2.1/), for mvdit-7b and mvdit-17b"
    )
    serve.add_argument(
        "--base-model-dir", help="the CogVideoX-5b or wan2.1 folder, if not inside --model-dir (see README)"
    )
    serve.add_argument(
        "--lora-dir", help="LoRA files jobs may name (params lora; besides MODEL_DIR/loras and MODEL_DIR/wan2.1)"
    )
    serve.add_argument("--tokenizer", help="4DMoT checkpoint for /v1/tokenize and the preview's reconstruction")
    serve.add_argument(
        "--nlf",
        metavar="MODEL",
        help="the NLF TorchScript file (nlf_l_multi.torchscript) for /v1/extract, video to motion; loaded by the "
        "first extraction and kept (or MTVCRAFTER_NLF)",
    )
    serve.add_argument("--token", help="access token clients must send (or MTVCRAFTER_TOKEN); required off loopback")
    serve.add_argument(
        "--allow-origin", dest="allowed_origins", action="append", help="a browser origin allowed to call the API"
    )
    for flag, what in (
        ("--keep-days", "delete jobs, results and events older than N days (checked at start-up and hourly)"),
        ("--keep-gb", "keep results under N GB, deleting the oldest first"),
        ("--header-timeout-s", "close a connection whose request headers take longer (default 10)"),
        ("--body-timeout-s", "answer 408 to a request whose body takes longer (default 300)"),
        ("--keep-alive-s", "close an idle kept-alive connection after this (default 5)"),
        ("--max-video-mb", "refuse videos sent to /v1/extract larger than N MB (default 500)"),
        ("--max-video-s", "refuse videos sent to /v1/extract longer than N seconds (default 600)"),
    ):
        serve.add_argument(flag, type=float, metavar="N", help=what)
    add_device_option(serve)
    add_checkpoint_trust_option(serve)
    ray = serve.add_argument_group(
        "scaling out on Ray",
        "--executor ray runs jobs on Ray replicas, one warm model replica per GPU, on one machine or many "
        "(pip install 'mtvcrafter[ray]'; see the README's 'Scaling out on Ray')",
    )
    ray.add_argument(
        "--executor",
        choices=("local", "ray"),
        help="where jobs run: local, one worker thread in this process (default); ray, replicas on a Ray cluster",
    )
    ray.add_argument(
        "--ray-address",
        metavar="auto|HOST:PORT",
        help="the Ray cluster to join: auto (the one `ray start` runs on this machine) or its head's address "
        "(default: a Ray instance of the server's own on this machine, dashboard off, token required)",
    )
    ray.add_argument(
        "--gpus-per-replica", type=float, metavar="N", help="GPUs each replica holds (default 1; 0.5 shares one GPU)"
    )
    ray.add_argument(
        "--replicas",
        metavar="N|auto",
        help="replicas to run (default auto: one per --gpus-per-replica GPUs of the cluster, one on the CPU "
        "without a GPU); on a cluster without GPUs, N replicas run on its CPUs",
    )
    serve.set_defaults(run=serve_command)


OPTIONS = (
    "host",
    "port",
    "data_dir",
    "backend",
    "model_dir",
    "base_model_dir",
    "lora_dir",
    "keep_days",
    "keep_gb",
    "header_timeout_s",
    "body_timeout_s",
    "keep_alive_s",
    "tokenizer",
    "nlf",
    "max_video_mb",
    "max_video_s",
    "token",
    "allowed_origins",
    "device",
    "executor",
    "ray_address",
    "gpus_per_replica",
    "replicas",
)
#: the options of --executor ray only
RAY_OPTIONS = ("ray_address", "gpus_per_replica", "replicas")


def serve_command(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from mtvcrafter_server import Settings, serve

    given = {name: getattr(args, name) for name in OPTIONS if getattr(args, name) is not None}
    for name in RAY_OPTIONS:
        if name in given and args.executor != "ray":
            raise UsageError(f"--{name.replace('_', '-')} is an option of --executor ray")
    if "replicas" in given and given["replicas"] != "auto":
        if not given["replicas"].isdigit() or int(given["replicas"]) < 1:
            raise UsageError(f"--replicas: a number of replicas (1 or more) or auto, not {given['replicas']!r}")
    if args.trust_checkpoint:
        given["trust_checkpoint"] = True
    try:
        settings = Settings(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UsageError(f"{where}: {first['msg']}") from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    where = " (jobs on Ray replicas)" if settings.executor == "ray" else ""
    print(
        f"mtvcrafter server on http://{settings.host}:{settings.port}{where} (data in {settings.data_dir.resolve()})",
        file=sys.stderr,
    )
    try:
        serve(settings)
    except RuntimeError as exc:  # the data folder is held by another server, the default backend is unusable, no Ray
        raise UsageError(str(exc)) from None
    return 0
