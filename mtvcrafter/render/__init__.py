"""Rendering without a model: the skeleton preview over the reference image, and mp4 writing."""

from .preview import flatten_reference, load_reference, open_reference, preview_frames, render_preview, screen_points
from .video import RenderError, check_output_path, read_mp4_info, write_mp4

__all__ = [
    "RenderError",
    "check_output_path",
    "flatten_reference",
    "load_reference",
    "open_reference",
    "preview_frames",
    "read_mp4_info",
    "render_preview",
    "screen_points",
    "write_mp4",
]
