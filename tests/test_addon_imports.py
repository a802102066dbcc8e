"""The Blender add-on imports of this project only ``mtvcrafter.motion`` and ``mtvcrafter.client`` (Blender has no
torch, and the extension ships only those): every import in every module, also inside functions, is checked."""

from __future__ import annotations

import ast
from pathlib import Path

ADDON = Path(__file__).resolve().parents[1] / "blender_addon" / "mtvcrafter_bridge"
ALLOWED = ("mtvcrafter.motion", "mtvcrafter.client")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every absolute import in the file; ``from a import b`` counts as ``a.b`` too, so
    ``from mtvcrafter import dit`` is caught."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            if node.module == "mtvcrafter":
                found += [(node.lineno, f"mtvcrafter.{alias.name}") for alias in node.names]
    return found


def ours(module: str) -> bool:
    return module == "mtvcrafter" or module.startswith("mtvcrafter.")


def allowed(module: str) -> bool:
    return any(module == name or module.startswith(f"{name}.") for name in ALLOWED)


def test_the_addon_imports_only_mtvcrafter_motion_and_the_client():
    files = sorted(ADDON.glob("*.py"))
    assert {"__init__.py", "operators.py", "animate.py", "import_export.py", "retarget.py"} <= {f.name for f in files}
    imports = {path.name: imported_modules(path) for path in files}
    wrong = [
        f"{name}:{line}: {module}"
        for name, found in imports.items()
        for line, module in found
        if (ours(module) and module != "mtvcrafter" and not allowed(module))
        or module.split(".")[0] in ("torch", "mtvcrafter_server")
    ]
    assert not wrong, (
        "the add-on may import of this project only mtvcrafter.motion and mtvcrafter.client:\n" + "\n".join(wrong)
    )
    used = {module for found in imports.values() for _, module in found if ours(module)}
    assert "mtvcrafter.client" in used and any(m.startswith("mtvcrafter.motion") for m in used)  # the check sees them


def test_the_check_catches_a_forbidden_import(tmp_path):
    module = tmp_path / "module.py"
    module.write_text(
        "from mtvcrafter.motion import Motion\n"
        "def f():\n"
        "    from mtvcrafter import dit\n"
        "    import mtvcrafter.backends.registry\n"
        "    from mtvcrafter_server.local import local_server\n"
        "    from .armature import SMPL_TAG\n"
    )
    found = [module for _, module in imported_modules(module)]
    assert [m for m in found if ours(m) and m != "mtvcrafter" and not allowed(m)] == [
        "mtvcrafter.dit",
        "mtvcrafter.backends.registry",
    ]
    assert "mtvcrafter_server.local" in found and allowed("mtvcrafter.motion") and not allowed("mtvcrafter.motions")
