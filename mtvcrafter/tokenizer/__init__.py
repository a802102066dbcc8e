"""4DMoT, the MTVCrafter motion tokenizer: official-checkpoint loading, encode/decode, training.

Runs on CPU and CUDA; needs torch (the ``ml`` extra).
"""

from .errors import TokenizerError
from .model import FourDMoT, TokenizerConfig
from .tokenizer import (
    VQ_LOSS_WARNING,
    WINDOW_FRAMES,
    WINDOW_OVERLAP,
    MotionTokenizer,
    TokenizedMotion,
    padded_length,
    window_ranges,
)

__all__ = [
    "VQ_LOSS_WARNING",
    "WINDOW_FRAMES",
    "WINDOW_OVERLAP",
    "FourDMoT",
    "MotionTokenizer",
    "TokenizedMotion",
    "TokenizerConfig",
    "TokenizerError",
    "padded_length",
    "window_ranges",
]
