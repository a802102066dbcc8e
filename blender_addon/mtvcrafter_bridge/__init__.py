"""MTVCrafter bridge: SMPL motion in and out of Blender (from motion files, rigs and videos), and one-click video
generation on an MTVCrafter server.

The work is in plain functions a script can call — ``import_export`` (import_motion, export_motion),
``video_import`` (import_video: Motion from Video, cancel), ``clean`` (clean_armature: Clean Motion), ``animate``
(animate, cancel, check_motion, refresh_backends), ``retarget`` (retarget_rig, fill_bone_map, save_as_preset) —
over ``armature``, ``bone_maps`` and ``presets``; ``operators`` and ``panels`` only hold the UI."""

import atexit

from . import animate, operators, panels, video_import


def register():
    panels.register()
    operators.register()
    atexit.register(animate.cancel_unfinished)
    atexit.register(video_import.cancel_unfinished)


def unregister():
    atexit.unregister(video_import.cancel_unfinished)
    atexit.unregister(animate.cancel_unfinished)
    video_import.stop()
    animate.stop()
    operators.unregister()
    panels.unregister()
