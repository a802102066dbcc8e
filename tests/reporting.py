"""Figures worth seeing in the test output (e.g. the IK round-trip error per clip), by heading; the root
conftest prints them at the end of the run (also of the Blender run, which loads it too)."""

from __future__ import annotations

REPORT: dict[str, list[str]] = {}


def report(heading: str, line: str) -> None:
    REPORT.setdefault(heading, []).append(line)
