"""A stand-in for NLF's multi-person model, for tests and benchmarks: **not a pose estimator**.

:func:`write_standin_model` saves a real TorchScript file with the method and output layout of NLF's
``nlf_l_multi.torchscript`` — ``detect_smpl_batched(images (N, 3, H, W) uint8 RGB, intrinsic_matrix=…, …)``
returning a dict of per-frame lists (``boxes`` ``(n, 5)`` x, y, w, h, score; ``joints3d_nonparam`` and
``joints3d`` ``(n, 24, 3)`` mm; ``joint_uncertainties`` ``(n, 24)`` mm; ``pose`` ``(n, 72)``; ``betas``
``(n, 10)``; ``trans`` ``(n, 3)`` m), zero-length tensors for a frame with nobody, people sorted by score —
so that the whole extraction path (loading, batching, tracking, gap filling, smoothing) runs and can be
checked without the licensed model. Its "people" are found from plain pixel rules:

- ``"figures"``: the flat-coloured figures of :mod:`mtvcrafter.extract.synthetic`. A figure is the pixels
  close to one of :data:`~mtvcrafter.extract.synthetic.FIGURE_COLOURS` (RGB), its box their extent. Each
  colour stands for a person of its own height and detector score (:data:`FIGURE_HEIGHTS_M`,
  :data:`FIGURE_SCORES`): the blue figure scores higher than the red one, so "the first detection" is not
  "the largest box"; and red read as blue (a BGR frame) is placed at the wrong depth.
- ``"foreground"``: real footage with one performer (such as the official driving video): the pixels that
  differ strongly from the frame's border colour, one box around them.

Each detection's joints are a fixed SMPL-24 body (:func:`template_joints_m`, the built-in neutral skeleton
standing, facing the camera) scaled to the person's height and placed by the camera: depth
``z = fy · height / box height``, and the pelvis on the ray through the box centre,
``x = (cx − px) · z / fx``, ``y = (cy − py) · z / fy`` (:func:`standin_pelvis_mm` computes the same from a
box). So the joints follow the box exactly, and a test can predict them from the figures' boxes.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mtvcrafter.motion.skeleton import NEUTRAL_REST_JOINTS_M

from .errors import ExtractionError
from .synthetic import FIGURE_COLOURS

MODES = ("figures", "foreground")
#: The height (m) of the person each figure colour stands for (which sets the depth the stand-in gives it).
FIGURE_HEIGHTS_M: dict[str, float] = {"red": 1.75, "blue": 1.55}
#: The detector score of each figure colour: blue above red, so score order differs from size order.
FIGURE_SCORES: dict[str, float] = {"red": 0.6, "blue": 0.9}
#: Height (m) and score of the one person of ``"foreground"`` mode.
FOREGROUND_HEIGHT_M = 1.7
FOREGROUND_SCORE = 0.8
#: Largest difference per channel (0-255) of a pixel still taken for a figure's colour: wide enough for the
#: blur that compression puts on a figure's edge, narrow enough that the two colours stay apart.
COLOUR_TOLERANCE = 60.0
#: ``"foreground"``: the per-channel difference from the border colour that makes a pixel the performer's,
#: and the share of a row (column) that must be such pixels for it to count towards the box.
FOREGROUND_DIFFERENCE = 64.0
FOREGROUND_LINE_SHARE = 0.05
#: ``"foreground"``: larger frames are looked at every few pixels, about this many along the larger side.
FOREGROUND_SIZE = 270
#: The fewest pixels that make a figure (fewer are compression noise).
MIN_PIXELS = 12
#: Per-joint uncertainty (mm) of a detection scoring 1; a detection's uncertainties are these divided by its
#: score (the trunk is surer than the hands, as with a real estimator).
_BASE_UNCERTAINTY_MM = (30, 34, 34, 30, 42, 42, 30, 52, 52, 30, 58, 58, 32, 34, 34, 36, 38, 38, 48, 48, 58, 58, 64, 64)
#: tan of half NLF's default field of view (55° across the larger side).
_TAN_HALF_DEFAULT_FOV = math.tan(math.radians(55.0) / 2.0)


def template_joints_m() -> np.ndarray:
    """The stand-in's body: ``(24, 3)`` metres in camera axes (x right, y down, z away from the camera), the
    pelvis at the origin, standing upright and facing the camera, about 1.7 m tall.

    It is the built-in neutral skeleton (SMPL's body frame: Y up, facing +Z) turned half a turn about x.
    """
    joints = NEUTRAL_REST_JOINTS_M - NEUTRAL_REST_JOINTS_M[0]
    return joints * np.array([1.0, -1.0, -1.0])


def standin_pelvis_mm(box: np.ndarray, height_m: float, intrinsics: np.ndarray) -> np.ndarray:
    """Where the stand-in puts the pelvis of a person of ``height_m`` seen in ``box`` ``(..., 4)`` x, y, w, h:
    ``(..., 3)`` mm in camera space, for the pixel camera matrix ``intrinsics`` ``(3, 3)``."""
    box = np.asarray(box, dtype=np.float64)
    fx, fy = intrinsics[0, 0], intrinsics[1, 1]
    px, py = intrinsics[0, 2], intrinsics[1, 2]
    z = fy * height_m / box[..., 3]
    x = (box[..., 0] + box[..., 2] / 2.0 - px) * z / fx
    y = (box[..., 1] + box[..., 3] / 2.0 - py) * z / fy
    return np.stack([x, y, z], axis=-1) * 1000.0


class StandInNLF(torch.nn.Module):
    """NLF's ``detect_smpl_batched`` computed from pixel rules (see the module's description); TorchScript-able."""

    def __init__(self, mode: str = "figures"):
        super().__init__()
        if mode not in MODES:
            raise ExtractionError(f"unknown stand-in mode {mode!r}; use one of {', '.join(MODES)}", field="mode")
        self.mode = mode
        names = list(FIGURE_COLOURS) if mode == "figures" else ["foreground"]
        colours = [FIGURE_COLOURS[n] for n in names] if mode == "figures" else [(0, 0, 0)]
        heights = [FIGURE_HEIGHTS_M[n] for n in names] if mode == "figures" else [FOREGROUND_HEIGHT_M]
        scores = [FIGURE_SCORES[n] for n in names] if mode == "figures" else [FOREGROUND_SCORE]
        self.line_share = FOREGROUND_LINE_SHARE if mode == "foreground" else 0.0
        self.difference = FOREGROUND_DIFFERENCE if mode == "foreground" else COLOUR_TOLERANCE
        self.min_pixels = MIN_PIXELS
        self.tan_half_fov = _TAN_HALF_DEFAULT_FOV
        self.template_height_m = FOREGROUND_HEIGHT_M
        self.foreground_size = FOREGROUND_SIZE
        self.register_buffer("colours", torch.tensor(colours, dtype=torch.float32))
        self.register_buffer("heights_m", torch.tensor(heights, dtype=torch.float32))
        self.register_buffer("scores", torch.tensor(scores, dtype=torch.float32))
        self.register_buffer("template_m", torch.tensor(template_joints_m(), dtype=torch.float32))
        self.register_buffer("base_uncertainty_mm", torch.tensor(_BASE_UNCERTAINTY_MM, dtype=torch.float32))

    def _intrinsics(self, intrinsic_matrix: Tensor | None, n: int, height: int, width: int) -> Tensor:
        if intrinsic_matrix is None:
            f = max(height, width) / (2.0 * self.tan_half_fov)
            matrix = torch.tensor(
                [[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]], device=self.scores.device
            )
            return matrix.expand(n, 3, 3)
        matrix = intrinsic_matrix.to(self.scores.device, torch.float32).reshape(-1, 3, 3)
        if matrix.shape[0] == 1:
            return matrix.expand(n, 3, 3)
        if matrix.shape[0] != n:
            raise ValueError("intrinsic_matrix must be (3, 3), (1, 3, 3) or one (3, 3) per image")
        return matrix

    def _masks(self, pixels: Tensor) -> Tensor:
        """``(N, K, H, W)`` bool: the pixels of each of the K people this mode knows."""
        if self.mode == "figures":
            difference = (pixels[:, None] - self.colours[None, :, :, None, None]).abs().amax(dim=2)
            return difference < self.difference
        border = torch.cat([pixels[:, :, 0, :], pixels[:, :, -1, :], pixels[:, :, :, 0], pixels[:, :, :, -1]], dim=2)
        background = border.median(dim=2).values
        difference = (pixels - background[:, :, None, None]).abs().amax(dim=1)
        return (difference > self.difference)[:, None]

    def _boxes(self, masks: Tensor) -> tuple[Tensor, Tensor]:
        """``(N, K, 4)`` x, y, w, h of each mask's extent and ``(N, K)`` whether there is anyone."""
        height, width = masks.shape[2], masks.shape[3]
        rows = masks.sum(dim=3) >= max(2.0, self.line_share * width)
        cols = masks.sum(dim=2) >= max(2.0, self.line_share * height)
        present = rows.any(dim=2) & cols.any(dim=2) & (masks.sum(dim=(2, 3)) >= self.min_pixels)
        y0 = rows.int().argmax(dim=2)
        y1 = height - 1 - rows.flip(dims=[2]).int().argmax(dim=2)
        x0 = cols.int().argmax(dim=2)
        x1 = width - 1 - cols.flip(dims=[2]).int().argmax(dim=2)
        boxes = torch.stack([x0, y0, x1 - x0 + 1, y1 - y0 + 1], dim=2).float()
        return boxes, present

    @torch.jit.export
    def detect_smpl_batched(
        self,
        images: Tensor,
        intrinsic_matrix: Tensor | None = None,
        distortion_coeffs: Tensor | None = None,
        extrinsic_matrix: Tensor | None = None,
        world_up_vector: Tensor | None = None,
        internal_batch_size: int = 64,
        antialias_factor: int = 1,
        num_aug: int = 1,
        detector_threshold: float = 0.3,
        detector_nms_iou_threshold: float = 0.7,
        max_detections: int = 150,
        suppress_implausible_poses: bool = True,
        model_name: str = "smpl",
    ) -> dict[str, list[Tensor]]:
        if images.dim() != 4 or images.shape[1] != 3 or images.dtype != torch.uint8:
            raise ValueError("images must be (N, 3, H, W) uint8 RGB")
        n, height, width = images.shape[0], images.shape[2], images.shape[3]
        camera = self._intrinsics(intrinsic_matrix, n, height, width)
        # Large frames of real footage are looked at every few pixels: a box to within a few pixels is enough.
        stride = max(1, max(height, width) // self.foreground_size) if self.mode == "foreground" else 1
        pixels = images[:, :, ::stride, ::stride].to(self.scores.device).float()
        boxes, present = self._boxes(self._masks(pixels))
        boxes = boxes * stride
        out: dict[str, list[Tensor]] = {
            "boxes": [],
            "joints3d_nonparam": [],
            "joints3d": [],
            "joint_uncertainties": [],
            "pose": [],
            "betas": [],
            "trans": [],
        }
        for i in range(n):
            keep = torch.nonzero(present[i] & (self.scores >= detector_threshold)).flatten()
            keep = keep[torch.argsort(self.scores[keep], descending=True)][: max(max_detections, 0)]
            box = boxes[i, keep]
            score = self.scores[keep]
            height_m = self.heights_m[keep]
            fx, fy, px, py = camera[i, 0, 0], camera[i, 1, 1], camera[i, 0, 2], camera[i, 1, 2]
            z = fy * height_m / box[:, 3]
            x = (box[:, 0] + box[:, 2] / 2.0 - px) * z / fx
            y = (box[:, 1] + box[:, 3] / 2.0 - py) * z / fy
            trans = torch.stack([x, y, z], dim=1)
            scale = (height_m / self.template_height_m)[:, None, None]
            joints_mm = (self.template_m[None] * scale + trans[:, None, :]) * 1000.0
            count = keep.shape[0]
            out["boxes"].append(torch.cat([box, score[:, None]], dim=1))
            out["joints3d_nonparam"].append(joints_mm)
            out["joints3d"].append(joints_mm.clone())
            out["joint_uncertainties"].append(self.base_uncertainty_mm[None] / score[:, None])
            out["pose"].append(torch.zeros(count, 72, device=box.device))
            out["betas"].append(torch.zeros(count, 10, device=box.device))
            out["trans"].append(trans)
        return out


def write_standin_model(path: str | Path, mode: str = "figures") -> Path:
    """Saves the stand-in (:class:`StandInNLF`) as a TorchScript file that :func:`~mtvcrafter.extract.load_nlf`
    loads like NLF's own. ``mode``: ``"figures"`` (synthetic test videos) or ``"foreground"`` (real footage
    with one performer). A stand-in for tests and benchmarks, not a pose estimator."""
    path = Path(path)
    with warnings.catch_warnings():
        # NLF's own file is TorchScript, so the stand-in must be too, deprecated format or not
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.* is deprecated", category=DeprecationWarning)
        scripted = torch.jit.script(StandInNLF(mode))
    path.parent.mkdir(parents=True, exist_ok=True)
    scripted.save(str(path))
    return path
