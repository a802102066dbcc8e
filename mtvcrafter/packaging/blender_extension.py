"""``mtvcrafter blender build``: the installable Blender extension zip (add-on code + the wheels it needs).

The zip holds ``blender_manifest.toml`` (with its ``wheels`` list filled in), the add-on's Python files,
``presets/render`` and ``presets/bones``, and ``wheels/``: this package (for ``mtvcrafter.motion``;
Blender never imports the model stack) and httpx with its pure-Python dependencies. Install it with
Blender's Preferences › Get Extensions › Install from Disk. Wheels are fetched from the package index
at build time, or taken from ``--wheels-from`` (offline builds); nothing is fetched when Blender runs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ADDON = ROOT / "blender_addon" / "mtvcrafter_bridge"
#: httpx and what it imports at run time (all pure Python). numpy comes with Blender.
CLIENT_WHEELS = ("httpx", "httpcore", "h11", "anyio", "idna", "certifi", "typing_extensions")
#: ``presets/`` folders copied into the extension: render presets, and the bone maps (which our wheel
#: also carries, inside ``mtvcrafter.motion``).
PRESET_KINDS = ("render", "bones")


class BuildError(Exception):
    """The extension could not be built; the message says what is missing."""


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise BuildError(f"{' '.join(command[:4])} … failed: {' / '.join(tail)}")


def _pinned(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{name}=={version(name)}"
    except PackageNotFoundError:
        return name


def collect_wheels(folder: Path, wheels_from: Path | None = None) -> list[Path]:
    """Our wheel (built from this checkout) and the client's, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(folder), str(ROOT)]
    try:  # with the setuptools already here (works offline), else in an isolated build environment
        _run([*command[:5], "--no-build-isolation", *command[5:]])
    except BuildError:
        _run(command)
    if wheels_from is not None:
        for name in CLIENT_WHEELS:
            found = sorted(Path(wheels_from).glob(f"{name}-*.whl"))
            if not found:
                raise BuildError(f"{wheels_from}: no {name} wheel (needed by the add-on's HTTP client)")
            shutil.copy2(found[-1], folder)
    else:
        # the versions this environment runs (tested together), for Blender's Python 3.11
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            "3.11",
            "-d",
            str(folder),
        ]
        _run(command + [_pinned(name) for name in CLIENT_WHEELS])
    wheels = sorted(folder.glob("*.whl"))
    impure = [w.name for w in wheels if not w.name.endswith("-none-any.whl")]
    if impure:
        raise BuildError(f"platform-specific wheels would tie the extension to one platform: {', '.join(impure)}")
    return wheels


def build_extension(out_dir: str | Path, wheels_from: str | Path | None = None) -> Path:
    """Write ``mtvcrafter_bridge-<version>.zip`` into ``out_dir`` and return its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = (ADDON / "blender_manifest.toml").read_text(encoding="utf-8")
    version = re.search(r'^version = "([^"]+)"', manifest, re.M)
    if version is None:
        raise BuildError(f"{ADDON / 'blender_manifest.toml'}: no version")
    with tempfile.TemporaryDirectory() as tmp:
        wheels = collect_wheels(Path(tmp) / "wheels", Path(wheels_from) if wheels_from else None)
        listed = ", ".join(f'"./wheels/{w.name}"' for w in wheels)
        # a top-level key: it goes before the first table ([permissions])
        lines = [line for line in manifest.splitlines() if not line.startswith("wheels =")]
        first_table = next((i for i, line in enumerate(lines) if line.startswith("[")), len(lines))
        lines[first_table:first_table] = [f"wheels = [{listed}]", ""]
        manifest = "\n".join(lines) + "\n"
        target = out_dir / f"mtvcrafter_bridge-{version.group(1)}.zip"
        partial = target.with_suffix(".zip.part")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("blender_manifest.toml", manifest)
            for path in sorted(ADDON.rglob("*.py")):
                archive.write(path, path.relative_to(ADDON).as_posix())
            for kind in PRESET_KINDS:
                for path in sorted((ROOT / "presets" / kind).glob("*.json")):
                    archive.write(path, f"presets/{kind}/{path.name}")
            for wheel in wheels:
                archive.write(wheel, f"wheels/{wheel.name}")
        partial.replace(target)
    return target
