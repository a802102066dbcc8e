"""MTVCrafter: animate any human image with a raw 3D motion (library, command line, server, Blender bridge)."""

__version__ = "0.1.0"
