"""The backends layer: every render default and bound once, one registry of backends, and one render path
for the command line and the server."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mtvcrafter.backends import (
    BACKENDS,
    SETTINGS,
    BackendError,
    RenderRequest,
    RenderSettings,
    SettingsError,
    backend_names,
    get_backend,
)
from mtvcrafter.cli import build_parser
from mtvcrafter.motion import load_motion

ROOT = Path(__file__).resolve().parents[1]


def test_the_defaults_are_the_official_settings():
    settings = RenderSettings()
    # left to the backend: each model's official settings
    assert settings.size == (512, 512)
    assert all(getattr(settings, n) is None for n in ("width", "height", "steps", "guidance", "seed", "scheduler"))
    seven, seventeen = get_backend("mvdit-7b"), get_backend("mvdit-17b")
    # SPEC §5: 512x512, 50 steps, guidance 3.0, seed 6666 (and the DPM scheduler, see test_dit_pipeline)
    assert (seven.steps(settings), seven.guidance(settings), seven.seed(settings)) == (50, 3.0, 6666)
    assert seven.output_size(settings) == (512, 512)
    # SPEC §6: 50 steps, text guidance 6.0, seed 42; with the FusionX LoRA 10 steps and no guidance
    assert (seventeen.steps(settings), seventeen.guidance(settings), seventeen.seed(settings)) == (50, 6.0, 42)
    lora = RenderSettings(lora="Wan2.1_I2V_14B_FusionX_LoRA.safetensors")
    assert (seventeen.steps(lora), seventeen.guidance(lora)) == (10, 1.0)
    assert seventeen.guidance(RenderSettings(lora="x.safetensors", guidance=4.0)) == 4.0  # given: kept
    assert get_backend("tiny").steps(settings) == 4
    assert [s.name for s in SETTINGS] == list(settings.to_dict())


@pytest.mark.parametrize(
    ("size", "bucket"),
    [((512, 512), (512, 512)), ((720, 1280), (384, 672)), ((1280, 720), (672, 384)), ((1000, 3000), (288, 864))],
)
def test_the_17b_picks_the_official_aspect_bucket(size, bucket):
    from PIL import Image

    backend = get_backend("mvdit-17b")
    image = Image.new("RGB", size)
    assert backend.output_size(RenderSettings(), image) == bucket
    assert backend.output_size(RenderSettings(width=640, height=320), image) == (640, 320)
    # one side given: the other from the image's aspect, a multiple of 16
    width, height = backend.output_size(RenderSettings(width=512), image)
    assert width == 512 and height % 16 == 0 and abs(height / width - size[1] / size[0]) < 0.05


def test_a_side_left_out_is_512_except_for_the_17b_and_a_derived_side_is_bounded():
    from PIL import Image

    assert RenderSettings(width=768).size == (768, 512)
    assert get_backend("mvdit-7b").output_size(RenderSettings(width=768), Image.new("RGB", (10, 40))) == (768, 512)
    with pytest.raises(
        SettingsError, match="height: the reference's aspect makes the video 2048x131072, a side over 8192; give both"
    ) as info:
        get_backend("mvdit-17b").output_size(RenderSettings(width=2048), Image.new("RGB", (64, 4096)))
    assert info.value.field == "height"


@pytest.mark.parametrize("name", ["../x.safetensors", "/etc/x.safetensors", "C:x.safetensors", "a\\b.safetensors"])
def test_a_server_takes_lora_names_never_paths(name, tmp_path):
    from mtvcrafter.backends import BackendConfig

    backend = get_backend("mvdit-17b", BackendConfig(lora_dir=tmp_path, lora_paths=False))
    with pytest.raises(SettingsError, match="not a path") as info:
        backend.check(RenderSettings(lora=name))
    assert info.value.field == "lora"
    with pytest.raises(SettingsError, match="is not a .safetensors file"):
        backend.check(RenderSettings(lora="fusionx.pt"))


def test_a_prompt_is_refused_by_backends_that_take_none():
    with pytest.raises(SettingsError, match="prompt: the mvdit-7b backend takes none .*mvdit-17b") as info:
        get_backend("mvdit-7b").check(RenderSettings(prompt="a dancer"))
    assert info.value.field == "prompt"
    get_backend("mvdit-17b").check(RenderSettings(prompt="a dancer", negative_prompt="blur"))
    with pytest.raises(SettingsError, match="flow-euler"):
        get_backend("mvdit-17b").check(RenderSettings(scheduler="dpm"))


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"width": 15}, "width"),
        ({"height": 9000}, "height"),
        ({"steps": 0}, "steps"),
        ({"guidance": float("nan")}, "guidance"),
        ({"guidance": 51}, "guidance"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**63 - 1}, "seed"),
        ({"scheduler": "../x"}, "scheduler"),
        ({"dtype": "int8"}, "dtype"),
        ({"offload": "disk"}, "offload"),
        ({"placement": "left"}, "placement"),
        ({"width": True}, "width"),
        ({"num_frames": 0}, "num_frames"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_a_setting_out_of_bounds_is_refused_naming_it(values, field):
    with pytest.raises(SettingsError) as error:
        RenderSettings.from_dict(values)
    assert error.value.field == field and field in str(error.value)


def test_every_bundled_render_preset_is_valid_for_its_backend(tmp_path):
    from mtvcrafter.backends import BackendConfig

    presets = sorted((ROOT / "presets" / "render").glob("*.json"))
    assert presets
    for path in presets:
        preset = json.loads(path.read_text())
        if "lora" in preset:  # a LoRA preset names a file of the server's LoRA folder
            (tmp_path / preset["lora"]).write_bytes(b"")
        backend = get_backend(preset["backend"], BackendConfig(lora_dir=tmp_path, lora_paths=False))
        settings = RenderSettings.from_dict(
            {k: v for k, v in preset.items() if k not in ("name", "description", "backend")}
        )
        backend.check(settings)
    # without the file, the LoRA preset is refused in one line naming where it was looked for
    with pytest.raises(SettingsError, match="lora: Wan2.1_I2V_14B_FusionX_LoRA.safetensors not found in"):
        get_backend("mvdit-17b", BackendConfig(lora_paths=False)).check(
            RenderSettings(lora="Wan2.1_I2V_14B_FusionX_LoRA.safetensors")
        )


def test_each_backend_refuses_sizes_it_cannot_render():
    with pytest.raises(SettingsError, match="even") as odd:
        get_backend("preview").check(RenderSettings(width=65, height=64))
    assert odd.value.field == "width"
    with pytest.raises(SettingsError, match="width must be a multiple of 16 for tiny"):
        get_backend("tiny").check(RenderSettings(width=72, height=64))
    get_backend("tiny").check(RenderSettings(width=64, height=96))
    names = "preview, tiny, tiny-17b, mvdit-7b, mvdit-17b"
    with pytest.raises(BackendError, match=f"unknown backend 'mvdit-99b'; use one of {names}"):
        get_backend("mvdit-99b")


def test_the_command_line_lists_the_registry_backends_and_the_settings():
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    for command in ("animate", "serve"):
        backend = next(a for a in commands[command]._actions if a.dest == "backend")
        assert tuple(backend.choices) == backend_names() == tuple(BACKENDS)
    animate_options = {a.dest for a in commands["animate"]._actions}
    assert {s.name for s in SETTINGS} <= animate_options


def test_importing_the_registry_loads_no_model_stack():
    code = (
        "import sys, mtvcrafter.backends, mtvcrafter.cli; "
        "print(sorted(m for m in ('torch', 'diffusers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_an_unavailable_backend_says_why_and_the_command_line_says_it_in_one_line(
    tmp_path, sample_pkl, reference_image
):
    available, reason = get_backend("mvdit-7b").status()
    assert not available and "--model-dir" in reason
    result = subprocess.run(
        [sys.executable, "-m", "mtvcrafter", "animate", "--backend", "mvdit-7b", "--ref", str(reference_image),
         "--motion", str(sample_pkl), "--out", str(tmp_path / "o.mp4")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: --backend mvdit-7b is not available: {reason}"]


def test_the_preview_draws_the_tokenizer_reconstruction_when_one_is_configured(tmp_path, sample_pkl, reference_image):
    from PIL import Image

    pytest.importorskip("torch")
    from mtvcrafter.backends import BackendConfig
    from mtvcrafter.dit.tiny import tiny_tokenizer
    from mtvcrafter.render import read_mp4_info

    tiny_tokenizer(0).save_pretrained(tmp_path / "4dmot")
    motion = load_motion(sample_pkl, clip=4).slice(0, 17)
    image = Image.open(reference_image)
    settings = RenderSettings(width=64, height=64)
    plain = get_backend("preview").run(RenderRequest(motion, image, settings, tmp_path / "plain.mp4"))
    overlaid = get_backend("preview", BackendConfig(tokenizer=tmp_path / "4dmot")).run(
        RenderRequest(motion, image, settings, tmp_path / "overlay.mp4")
    )
    assert read_mp4_info(plain.path)["frames"] == read_mp4_info(overlaid.path)["frames"] == 17
    assert plain.path.read_bytes() != overlaid.path.read_bytes()


def test_the_extension_wheel_holds_only_the_motion_core_and_the_client(tmp_path):
    from mtvcrafter.packaging.blender_extension import build_core_wheel

    wheel = build_core_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    code = {n for n in names if n.endswith(".py")}
    assert "mtvcrafter/client.py" in code and "mtvcrafter/motion/__init__.py" in code
    assert all(
        n.startswith("mtvcrafter/motion/") or n in ("mtvcrafter/__init__.py", "mtvcrafter/client.py") for n in code
    )
    assert {"mtvcrafter/motion/data/mean.npy", "mtvcrafter/motion/bones/mixamo.json"} <= set(names)
    # the wheel installs and imports without the rest of the package
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    code_check = (
        "import sys; sys.path.insert(0, sys.argv[1]); import mtvcrafter.motion, mtvcrafter.client; "
        "from mtvcrafter.motion.bone_maps import load_bone_maps; "
        "print(mtvcrafter.motion.__file__, len(load_bone_maps()))"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code_check, str(target)], capture_output=True, text=True, check=True, cwd=tmp_path
    ).stdout.split()
    assert out[0].startswith(str(target)) and int(out[1]) >= 5
    assert np.load(target / "mtvcrafter" / "motion" / "data" / "mean.npy").shape == (24, 3)
