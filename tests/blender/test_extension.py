"""`mtvcrafter blender build` makes a zip that Blender's own extension operator installs and enables in a
clean user folder; the installed add-on imports a motion."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

INSTALL = textwrap.dedent(
    """
    import json, sys
    import bpy
    zip_path, motion = sys.argv[1], sys.argv[2]
    result = bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
    import addon_utils
    enabled = [m.__name__ for m in addon_utils.modules() if addon_utils.check(m.__name__)[1]]
    imported = bpy.ops.import_anim.mtvcrafter_motion(filepath=motion, clip_index=1)
    armature = bpy.context.active_object
    site = bpy.utils.user_resource("EXTENSIONS", path=".local")
    from bl_ext.user_default.mtvcrafter_bridge.presets import load_presets
    print("RESULT" + json.dumps({"install": sorted(result), "enabled": enabled, "import": sorted(imported),
                                 "bones": len(armature.data.bones), "site": site, "presets": sorted(load_presets())}))
    """
)


def test_the_built_zip_installs_and_enables_in_a_clean_user_folder(tmp_path, sample_pkl):
    build = subprocess.run(
        [sys.executable, "-m", "mtvcrafter", "blender", "build", "--out", str(tmp_path / "dist")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    zip_path = build.stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(zip_path) as archive:
        names = archive.namelist()
        manifest = archive.read("blender_manifest.toml").decode()
    assert "__init__.py" in names and any(n.startswith("wheels/httpx-") for n in names)
    assert 'id = "mtvcrafter_bridge"' in manifest and "./wheels/mtvcrafter-" in manifest
    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(zip_path).extractall(unpacked)
    import bpy

    validator = Path(bpy.utils.system_resource("SCRIPTS")) / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"
    check = subprocess.run([sys.executable, str(validator), "validate", str(unpacked)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr  # Blender's own manifest validator

    user = tmp_path / "user"
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(user)}
    run = subprocess.run(
        [sys.executable, "-c", INSTALL, zip_path, str(sample_pkl)], capture_output=True, text=True, env=env, timeout=300
    )
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT")]
    assert lines, run.stdout[-2000:] + run.stderr[-2000:]
    result = json.loads(lines[-1][len("RESULT") :])
    assert result["install"] == ["FINISHED"] and result["import"] == ["FINISHED"]
    assert "bl_ext.user_default.mtvcrafter_bridge" in result["enabled"]
    assert result["bones"] == 24
    assert "mvdit-7b-official" in result["presets"]  # render presets travel inside the zip
    installed = list(user.rglob("mtvcrafter_bridge/blender_manifest.toml"))
    assert installed and str(installed[0]).startswith(str(user))  # inside the clean user folder
    site_packages = {p.name for p in user.rglob("site-packages/*")}
    assert {"mtvcrafter", "httpx", "httpcore"} <= site_packages  # the wheels were installed with it
