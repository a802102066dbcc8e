"""Video → motion: decoding a driving video and extracting the performer's 3D joints with a pose estimator."""

from importlib import import_module
from typing import TYPE_CHECKING

from .errors import ExtractionCancelled, ExtractionError
from .video import VideoInfo, iter_video_frames, probe_video

#: what needs torch is imported when first used, so reading a video's header (the server's upload check) does not
#: load torch
_LAZY = {
    "ExtractOptions": "extract",
    "extract_motion": "extract",
    "Detections": "nlf",
    "NLFModel": "nlf",
    "load_nlf": "nlf",
    "write_standin_model": "standin",
    "BACKGROUND": "synthetic",
    "FIGURE_COLOURS": "synthetic",
    "Figure": "synthetic",
    "FigureVideo": "synthetic",
    "figure_video": "synthetic",
    "vfr_timestamps": "synthetic",
    "write_test_video": "synthetic",
    "Track": "track",
    "track_person": "track",
}

if TYPE_CHECKING:
    from .extract import ExtractOptions, extract_motion
    from .nlf import Detections, NLFModel, load_nlf
    from .standin import write_standin_model
    from .synthetic import (
        BACKGROUND,
        FIGURE_COLOURS,
        Figure,
        FigureVideo,
        figure_video,
        vfr_timestamps,
        write_test_video,
    )
    from .track import Track, track_person


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BACKGROUND",
    "Detections",
    "ExtractOptions",
    "FIGURE_COLOURS",
    "ExtractionCancelled",
    "ExtractionError",
    "Figure",
    "FigureVideo",
    "NLFModel",
    "Track",
    "VideoInfo",
    "extract_motion",
    "figure_video",
    "iter_video_frames",
    "load_nlf",
    "probe_video",
    "track_person",
    "vfr_timestamps",
    "write_standin_model",
    "write_test_video",
]
