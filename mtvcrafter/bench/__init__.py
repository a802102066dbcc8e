"""Benchmarks: each goal is timed beside a baseline measured in the same run, and printed as a table."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Row:
    task: str
    ours_s: float
    baseline_s: float | None
    baseline: str
    goal_s: float | None

    @property
    def ratio(self) -> float | None:
        return None if self.baseline_s is None else self.baseline_s / self.ours_s

    @property
    def met(self) -> bool | None:
        return None if self.goal_s is None else self.ours_s <= self.goal_s


def median_time(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``repeats`` calls after one warm-up call, in seconds."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def print_table(title: str, rows: list[Row]) -> None:
    print(title)
    header = f"{'task':<44} {'ours':>10} {'baseline':>10} {'speed-up':>9} {'goal':>8} {'met':>4}  baseline is"
    print(header)
    print("-" * len(header))
    for r in rows:
        base = f"{r.baseline_s * 1000:8.2f}ms" if r.baseline_s is not None else f"{'-':>10}"
        ratio = f"{r.ratio:8.2f}x" if r.ratio is not None else f"{'-':>9}"
        goal = f"<{r.goal_s * 1000:.0f}ms" if r.goal_s is not None else "-"
        met = {True: "yes", False: "NO", None: "-"}[r.met]
        print(f"{r.task:<44} {r.ours_s * 1000:8.2f}ms {base} {ratio} {goal:>8} {met:>4}  {r.baseline}")


def run_benchmarks(
    suite: str,
    quick: bool = False,
    size: str | None = None,
    compile_blocks: bool | None = None,
    model: str = "7b",
    examples: int | None = None,
    seed: int | None = None,
) -> int:
    """Run one suite; the exit status is 1 when a goal is missed (fuzz: when a reader raised something
    unexpected)."""
    if suite == "fuzz":
        from .fuzz import fuzz_benchmark

        return fuzz_benchmark(examples=examples or (100 if quick else 500), seed=seed)
    if suite == "motion":
        from .motion import motion_benchmarks

        rows = motion_benchmarks(quick=quick)
        print_table("mtvcrafter bench motion (this machine, CPU)", rows)
    elif suite == "tokenizer":
        from .tokenizer import tokenizer_benchmarks

        rows = tokenizer_benchmarks(quick=quick)
        print_table("mtvcrafter bench tokenizer (full size, random weights, fp32)", rows)
    elif suite == "blender":
        from .blender import blender_benchmarks, print_blender_table

        blender_rows, met = blender_benchmarks(quick=quick)
        print_blender_table(blender_rows, met)
        return 0 if met else 1
    elif suite == "server":
        from .server import print_server_table, server_benchmark

        server_rows, met = server_benchmark(quick=quick)
        print_server_table(server_rows, met)
        return 0 if met else 1
    elif suite == "dit" and model == "17b":
        from .dit import print_dit_table
        from .dit_17b import dit17b_benchmarks

        dit_rows, title, missed = dit17b_benchmarks(size=size, quick=quick, compile_blocks=compile_blocks)
        print_dit_table(title, dit_rows)
        return 1 if missed else 0
    elif suite == "dit":
        from .dit import dit_benchmarks, print_dit_table

        dit_rows, title, missed = dit_benchmarks(size=size, quick=quick, compile_blocks=compile_blocks)
        print_dit_table(title, dit_rows)
        return 1 if missed else 0
    else:
        raise ValueError(f"unknown benchmark suite {suite!r}")
    return 1 if any(r.met is False for r in rows) else 0
