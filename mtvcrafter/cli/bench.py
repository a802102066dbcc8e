"""``mtvcrafter bench …``: benchmarks against baselines measured in the same run."""

from __future__ import annotations

import argparse


def add_parser(commands) -> None:
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
    bench.add_argument(
        "--model", choices=("7b", "17b"), default="7b", help="dit: which MV-DiT (default 7b; 17b: MV-DiT-17B on Wan2.1)"
    )
    bench.add_argument("--quick", action="store_true", help="fewer repeats")
    bench.set_defaults(run=bench_command)


def bench_command(args: argparse.Namespace) -> int:
    from mtvcrafter.bench import run_benchmarks

    return run_benchmarks(args.suite, quick=args.quick, size=args.size, compile_blocks=args.compile, model=args.model)
