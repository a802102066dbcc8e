"""Rendering without a model: the skeleton preview over the reference image, and mp4 writing."""

from .preview import load_reference, preview_frames, render_preview, screen_points
from .video import RenderError, read_mp4_info, write_mp4

__all__ = [
    "RenderError",
    "load_reference",
    "preview_frames",
    "read_mp4_info",
    "render_preview",
    "screen_points",
    "write_mp4",
]
