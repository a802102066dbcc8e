"""MTVCrafter bridge: SMPL motion in and out of Blender (import, edit, export)."""

from . import operators


def register():
    operators.register()


def unregister():
    operators.unregister()
