"""What changes between Blender versions: strips read through the add-on's helper, and the test setting that turns
a deprecation warning raised from the add-on into an error (conftest.py), so the next rename is caught."""

from __future__ import annotations

import warnings

import bpy
import pytest


def color_strip(scene, frame_start: int, length: int):
    editor = scene.sequence_editor or scene.sequence_editor_create()
    strips = editor.strips if hasattr(editor, "strips") else editor.sequences
    if bpy.app.version >= (4, 4, 0):
        return strips.new_effect(name="c", type="COLOR", channel=1, frame_start=frame_start, length=length)
    return strips.new_effect(name="c", type="COLOR", channel=1, frame_start=frame_start, frame_end=frame_start + length)


def test_strips_are_read_without_a_deprecated_property(clean_scene):
    from mtvcrafter_bridge.videos import free_channel, strip_span

    strip = color_strip(clean_scene.scene, 5, 10)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert strip_span(strip) == (5, 15)
        assert free_channel([strip], 14, 20) == 2 and free_channel([strip], 15, 20) == 1
    assert [str(w.message) for w in caught] == []


def test_a_deprecation_warning_from_the_addon_fails_the_test():
    def warn_from(module: str):
        exec("warn('renamed', DeprecationWarning)", {"__name__": module, "warn": warnings.warn})

    for module in ("mtvcrafter_bridge.animate", "bl_ext.user_default.mtvcrafter_bridge.videos"):
        with pytest.raises(DeprecationWarning, match="renamed"):
            warn_from(module)
    with pytest.warns(DeprecationWarning):  # from elsewhere (a test, Blender's own modules): a warning only
        warn_from("tests_module")


@pytest.mark.skipif(bpy.app.version < (5, 1, 0), reason="Strip.frame_final_start is deprecated from Blender 5.1")
def test_blenders_own_deprecation_read_from_the_addon_fails_the_test(clean_scene):
    strip = color_strip(clean_scene.scene, 5, 10)
    # bpy raises it inside the attribute read: it surfaces at the end of the call, chained to a SystemError
    with pytest.raises((DeprecationWarning, SystemError)) as raised:
        eval("strip.frame_final_start", {"__name__": "mtvcrafter_bridge.videos", "strip": strip})
    error = raised.value
    assert isinstance(error, DeprecationWarning) or isinstance(error.__cause__, DeprecationWarning)
    assert "frame_final_start" in str(error if isinstance(error, DeprecationWarning) else error.__cause__)
