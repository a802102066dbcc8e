"""MTVCrafter bridge: SMPL motion in and out of Blender, and one-click video generation on an MTVCrafter server."""

from . import animate, operators, retarget


def register():
    operators.register()
    animate.register()
    retarget.register()


def unregister():
    retarget.unregister()
    animate.unregister()
    operators.unregister()
