"""Blender tests run in the Blender environment (.venv-blender, the real `bpy` wheel, headless):
`make test` runs them after the main suite. Elsewhere they are skipped."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ADDON_SOURCE = Path(__file__).resolve().parents[2] / "blender_addon"
if str(ADDON_SOURCE) not in sys.path:
    sys.path.insert(0, str(ADDON_SOURCE))


@pytest.fixture
def clean_scene():
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    return bpy.context


#: Figures worth seeing in the test output, by heading (printed at the end of the run).
REPORT: dict[str, list[str]] = {}


def report(heading: str, line: str) -> None:
    REPORT.setdefault(heading, []).append(line)


def pytest_terminal_summary(terminalreporter):
    for heading, lines in REPORT.items():
        terminalreporter.section(heading)
        for line in lines:
            terminalreporter.write_line(line)
