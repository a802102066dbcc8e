"""The keys an import writes are the keys Blender itself would store (handles, interpolation), in real Blender."""

from __future__ import annotations

import bpy  # collected only where bpy is installed (tests/conftest.py)
import numpy as np
import pytest


@pytest.fixture(scope="module", autouse=True)
def addon():
    import mtvcrafter_bridge

    mtvcrafter_bridge.register()
    yield
    mtvcrafter_bridge.unregister()


def key_arrays(curve) -> dict[str, np.ndarray]:
    points = curve.keyframe_points
    out = {}
    for prop in ("co", "handle_left", "handle_right"):
        out[prop] = np.empty(2 * len(points), dtype=np.float32)
        points.foreach_get(prop, out[prop])
    out["kinds"] = np.array(sorted({(k.interpolation, k.handle_left_type, k.handle_right_type) for k in points}))
    return out


def test_imported_keys_have_the_handles_blender_computes_for_them(clean_scene, sample_pkl):
    from mtvcrafter_bridge.armature import fcurves
    from mtvcrafter_bridge.import_export import import_motion

    obj = import_motion(clean_scene, sample_pkl, 1, report=lambda kind, message: None)
    curves = fcurves(obj)
    written = [key_arrays(curve) for curve in curves]
    for curve in curves:
        curve.update()  # sorts, merges keys closer than 0.01 frame, recomputes the handles
    for curve, before in zip(curves, written, strict=True):
        after = key_arrays(curve)
        for name, values in before.items():
            assert np.array_equal(values, after[name]), (curve.data_path, curve.array_index, name)
        assert before["kinds"].tolist() == [["BEZIER", "AUTO_CLAMPED", "AUTO_CLAMPED"]]
    frames = before["co"][0::2]
    assert np.array_equal(frames, np.arange(1, len(frames) + 1))  # one key per frame, in order


def test_keys_are_written_only_one_per_frame_in_order(clean_scene):
    from mtvcrafter_bridge.armature import fcurves, write_keys

    obj = bpy.data.objects.new("keyed", None)
    clean_scene.scene.collection.objects.link(obj)
    with pytest.raises(ValueError, match="increasing"):
        write_keys(obj, np.array([1.0, 3.0, 2.0]), [("location", 0, "Object")], np.zeros((1, 3)))
    write_keys(obj, np.array([1.0, 2.0, 3.0]), [("location", 0, "Object")], np.array([[0.0, 1.0, 4.0]]))
    write_keys(obj, np.array([5.0, 6.0]), [("location", 0, "Object")], np.array([[2.0, 3.0]]))  # replaces
    (curve,) = fcurves(obj)
    assert [tuple(k.co) for k in curve.keyframe_points] == [(5.0, 2.0), (6.0, 3.0)]


def test_editing_an_imported_key_reshapes_only_the_curve_next_to_it(clean_scene, sample_pkl):
    """Imported curves take local handles (F-curve smoothing "None"): moving one key, as an animator cleaning mocap
    does, changes the handles of that key and its two neighbours and no others, on every channel."""
    from mtvcrafter_bridge.armature import fcurves
    from mtvcrafter_bridge.import_export import import_motion

    obj = import_motion(clean_scene, sample_pkl, 3, report=lambda kind, message: None)  # 653 frames
    changed_elsewhere = []
    for curve in fcurves(obj):
        assert curve.auto_smoothing == "NONE"
        before = key_arrays(curve)
        middle = len(curve.keyframe_points) // 2
        curve.keyframe_points[middle].co.y += 0.05
        curve.update()
        after = key_arrays(curve)
        for side in ("handle_left", "handle_right"):
            moved = np.flatnonzero((before[side] != after[side]).reshape(-1, 2).any(axis=1))
            assert set(moved.tolist()) <= {middle - 1, middle, middle + 1}, (curve.data_path, side, moved)
            changed_elsewhere.append(len(moved))
    assert max(changed_elsewhere) >= 2  # the edit did reach the neighbours' handles
