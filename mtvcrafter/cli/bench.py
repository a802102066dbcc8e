"""``mtvcrafter bench …``: benchmarks against baselines measured in the same run."""

from __future__ import annotations

import argparse

from .common import UsageError


def add_parser(commands) -> None:
    bench = commands.add_parser("bench", help="benchmarks against baselines measured in the same run")
    bench.add_argument(
        "suite",
        choices=("motion", "tokenizer", "dit", "server", "blender", "fuzz", "extract"),
        help="what to measure (blender: run "
        "with Blender's Python, .venv-blender/bin/python -m mtvcrafter bench blender; fuzz: feed every reader of "
        "outside bytes mutated and generated files, exit status 1 on any unexpected error; extract: video to "
        "motion on the CPU with the stand-in model, batched against one frame per model call)",
    )
    bench.add_argument(
        "--size",
        choices=("full", "small", "tiny", "thin"),
        help="dit: model size (default full on a GPU — the official 42 layers at 512x512x49 — on the CPU small (7b) "
        "or tiny (17b) for one step, thin — 8 narrow blocks, where a step cache has blocks to skip — for whole clips)",
    )
    bench.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="dit: also time fused projections + torch.compile (default: on a GPU)",
    )
    bench.add_argument(
        "--model", choices=("7b", "17b"), default="7b", help="dit: which MV-DiT (default 7b; 17b: MV-DiT-17B on Wan2.1)"
    )
    bench.add_argument(
        "--fast",
        action="store_true",
        help="dit: also time fast mode and each step cache (First-Block Cache, TaylorSeer, MagCache) and fp8 where the "
        "GPU has it, each with its relative error of the final latents against exact mode",
    )
    bench.add_argument(
        "--offload",
        choices=("model", "group", "sequential", "auto", "all"),
        help="dit: also time whole clips in this offload mode (all: every one) against no offload, with peak memory",
    )
    bench.add_argument("--quick", action="store_true", help="fewer repeats")
    bench.add_argument(
        "--examples", type=int, metavar="N", help="fuzz: inputs per reader (default 500; 100 with --quick)"
    )
    bench.add_argument(
        "--seed", type=int, help="fuzz: the random seed, to run the same inputs again (default: a new one, printed)"
    )
    bench.add_argument(
        "--video",
        metavar="PATH",
        help="extract: the driving video to time besides a synthetic one (default: the official sample "
        "driving_00001.mp4 where the sample data sits beside the checkout)",
    )
    bench.add_argument(
        "--nlf",
        metavar="MODEL",
        help="extract: also time the real NLF TorchScript file on the driving video (on --device)",
    )
    bench.add_argument("--device", help="extract: where the real NLF model runs (default: cuda when there is one)")
    bench.add_argument(
        "--executor",
        choices=("local", "ray"),
        help="server: ray measures jobs per minute of the local executor and of 1 and 2 Ray replicas on the CPU, "
        "and Ray's dispatch overhead a job (needs the ray extra)",
    )
    bench.set_defaults(run=bench_command)


def bench_command(args: argparse.Namespace) -> int:
    from mtvcrafter.bench import run_benchmarks

    if args.examples is not None and args.examples < 1:
        raise UsageError("--examples must be 1 or more")
    for name in ("video", "nlf", "device"):
        if getattr(args, name) is not None and args.suite != "extract":
            raise UsageError(f"--{name} is an option of bench extract")
    if (args.fast or args.offload) and args.suite != "dit":
        raise UsageError("--fast and --offload are options of bench dit")
    if args.suite == "dit":
        from mtvcrafter.bench.dit_modes import dit_command

        return dit_command(args.model, args.size, args.quick, args.compile, args.fast, args.offload)
    if args.executor is not None and args.suite != "server":
        raise UsageError("--executor is an option of bench server")
    if args.suite == "server" and args.executor == "ray":
        import importlib.util

        from mtvcrafter.bench.server import executor_benchmark, print_executor_table

        if importlib.util.find_spec("ray") is None:
            raise UsageError("bench server --executor ray needs Ray: pip install 'mtvcrafter[ray]'")

        rows, goals = executor_benchmark(quick=args.quick)
        print_executor_table(rows, goals)
        return 0 if all(met for _, met in goals) else 1
    if args.suite == "extract":
        from mtvcrafter.bench.extract import extract_benchmark

        device = args.device
        if args.nlf is not None and device is None:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        return extract_benchmark(quick=args.quick, video=args.video, nlf=args.nlf, device=device or "cpu")
    return run_benchmarks(
        args.suite,
        quick=args.quick,
        size=args.size,
        compile_blocks=args.compile,
        model=args.model,
        examples=args.examples,
        seed=args.seed,
    )
