"""MTVCrafter bridge: SMPL motion in and out of Blender, and one-click video generation on an MTVCrafter server."""

from . import animate, operators


def register():
    operators.register()
    animate.register()


def unregister():
    animate.unregister()
    operators.unregister()
