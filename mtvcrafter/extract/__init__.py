"""Video → motion: decoding a driving video and extracting the performer's 3D joints with a pose estimator."""

from .errors import ExtractionCancelled, ExtractionError
from .synthetic import BACKGROUND, FIGURE_COLOURS, Figure, FigureVideo, figure_video, vfr_timestamps, write_test_video
from .video import VideoInfo, iter_video_frames, probe_video

__all__ = [
    "BACKGROUND",
    "FIGURE_COLOURS",
    "ExtractionCancelled",
    "ExtractionError",
    "Figure",
    "FigureVideo",
    "VideoInfo",
    "figure_video",
    "iter_video_frames",
    "probe_video",
    "vfr_timestamps",
    "write_test_video",
]
