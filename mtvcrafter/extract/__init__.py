"""Video → motion: decoding a driving video and extracting the performer's 3D joints with a pose estimator."""

from .errors import ExtractionCancelled, ExtractionError
from .extract import ExtractOptions, extract_motion
from .nlf import Detections, NLFModel, load_nlf
from .standin import write_standin_model
from .synthetic import BACKGROUND, FIGURE_COLOURS, Figure, FigureVideo, figure_video, vfr_timestamps, write_test_video
from .track import Track, track_person
from .video import VideoInfo, iter_video_frames, probe_video

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
