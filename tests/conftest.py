"""Shared fixtures: the official sample data, and figures reported at the end of the run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from reporting import REPORT, report  # noqa: F401 - `report` is re-exported to the tests

# The Blender tests need the real `bpy` wheel: they run in .venv-blender (`make test` does both).
collect_ignore = [] if importlib.util.find_spec("bpy") else ["blender"]

ROOT = Path(__file__).resolve().parents[1]
SHARED_SAMPLE = ROOT.parent / "shared" / "data" / "mtvcrafter-sample"
EXAMPLES = ROOT / "examples"


def sample_dir() -> Path:
    """The official sample folder beside the checkout, or the copy shipped in ``examples/``."""
    return SHARED_SAMPLE if (SHARED_SAMPLE / "sampled_data.pkl").is_file() else EXAMPLES


@pytest.fixture(scope="session")
def sample_pkl() -> Path:
    return sample_dir() / "sampled_data.pkl"


@pytest.fixture(scope="session")
def sample_motions(sample_pkl):
    from mtvcrafter.motion import load_motions

    return load_motions(sample_pkl)


@pytest.fixture(scope="session")
def reference_image() -> Path:
    return sample_dir() / "human.png"


def pytest_terminal_summary(terminalreporter):
    for heading, lines in REPORT.items():
        terminalreporter.section(heading)
        for line in lines:
            terminalreporter.write_line(line)
