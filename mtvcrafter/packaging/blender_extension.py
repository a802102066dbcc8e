"""``mtvcrafter blender build``: the installable Blender extension zip (add-on code + the wheels it needs).

The zip holds ``blender_manifest.toml`` (with its ``wheels`` list filled in), the add-on's Python files,
``presets/render`` and ``presets/bones``, and ``wheels/``: a wheel of the only parts of this package the
add-on imports (``mtvcrafter.motion`` with its data and bone maps, and the HTTP client
``mtvcrafter.client``; Blender never sees the model stack or the server) and httpx with its pure-Python
dependencies. Install it with
Blender's Preferences › Get Extensions › Install from Disk. Wheels are fetched from the package index
at build time, or taken from ``--wheels-from`` (offline builds); nothing is fetched when Blender runs.
"""

from __future__ import annotations

import base64
import hashlib
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


#: What of this package the add-on imports (see the import-linter contract in pyproject.toml).
CORE_MODULES = ("mtvcrafter/__init__.py", "mtvcrafter/client.py")
CORE_PACKAGES = ("mtvcrafter/motion",)


class BuildError(Exception):
    """The extension could not be built; the message says what is missing."""


def _version() -> str:
    text = (ROOT / "mtvcrafter" / "__init__.py").read_text(encoding="utf-8")
    found = re.search(r'^__version__ = "([^"]+)"', text, re.M)
    if found is None:
        raise BuildError(f"{ROOT / 'mtvcrafter' / '__init__.py'}: no __version__")
    return found.group(1)


def core_files() -> dict[str, Path]:
    """Archive name → source file of what the add-on needs of this package: the motion core (code, the
    official statistics, the bone maps where an installed package keeps them) and the HTTP client."""
    files = {name: ROOT / name for name in CORE_MODULES}
    for package in CORE_PACKAGES:
        for path in sorted((ROOT / package).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
                files[path.relative_to(ROOT).as_posix()] = path
    for path in sorted((ROOT / "presets" / "bones").glob("*.json")):
        files[f"mtvcrafter/motion/bones/{path.name}"] = path
    return files


def build_core_wheel(folder: Path) -> Path:
    """A pure-Python wheel ``mtvcrafter-<version>-py3-none-any.whl`` holding only :func:`core_files`."""
    version = _version()
    dist_info = f"mtvcrafter-{version}.dist-info"
    metadata = {
        f"{dist_info}/METADATA": (
            f"Metadata-Version: 2.1\nName: mtvcrafter\nVersion: {version}\n"
            "Summary: MTVCrafter motion core and HTTP client, as the Blender extension bundles them\n"
            "Requires-Dist: numpy\nRequires-Dist: httpx\n"
        ),
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: mtvcrafter\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"mtvcrafter-{version}-py3-none-any.whl"
    records = []
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as wheel:
        entries = [(name, path.read_bytes()) for name, path in core_files().items()]
        entries += [(name, text.encode()) for name, text in metadata.items()]
        for name, data in entries:
            wheel.writestr(name, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            records.append(f"{name},sha256={digest},{len(data)}")
        records.append(f"{dist_info}/RECORD,,")
        wheel.writestr(f"{dist_info}/RECORD", "\n".join(records) + "\n")
    return target


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
    """Our core wheel (built from this checkout) and the client's, in ``folder``."""
    build_core_wheel(folder)
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
