"""The NLF pose estimator (isarandi/nlf): loading its TorchScript file and finding people in frames.

NLF's multi-person model is a TorchScript file the user downloads (``nlf_l_multi.torchscript``; its weights
are for non-commercial use and it embeds a person detector and SMPL data, so it is never bundled). Its
``detect_smpl_batched`` takes a batch of RGB frames ``(N, 3, H, W)`` uint8 and returns, per frame, every
person found: box, 3D joints in millimetres in camera space (OpenCV axes) and per-joint uncertainties,
sorted by detection score. The method's positional signature changed between NLF releases, so it is called
with keyword arguments only.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtvcrafter.motion.camera import DEFAULT_FOV_DEG, focal_length
from mtvcrafter.motion.skeleton import NUM_JOINTS

from .errors import ExtractionError

#: The method of NLF's multi-person model that this module calls.
DETECT_METHOD = "detect_smpl_batched"
#: What torch's message says when a TorchScript file uses an operator no loaded library registers.
_MISSING_TORCHVISION_OP = re.compile(r"torchvision::\w+|ops\.torchvision\.\w+")


@dataclass
class Detections:
    """The people found in one frame, most confident first (NLF's order: by score, not by size).

    Attributes:
        boxes: ``(n, 5)`` float32, ``x, y, w, h`` in pixels of the frame and the detector's score.
        joints: ``(n, 24, 3)`` float32, SMPL-24 joints in millimetres, camera space (x right, y down, z forward).
        uncertainty: ``(n, 24)`` float32, the estimator's uncertainty of each joint, millimetres.
    """

    boxes: np.ndarray
    joints: np.ndarray
    uncertainty: np.ndarray

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


def default_intrinsics(image_size: tuple[int, int], fov_deg: float = DEFAULT_FOV_DEG) -> np.ndarray:
    """NLF's default camera for an ``(H, W)`` frame: ``fov_deg`` across the larger side, principal point at the
    centre. ``(3, 3)`` float64."""
    height, width = image_size
    f = focal_length(image_size, fov_deg)
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])


def fov_from_intrinsics(intrinsics: np.ndarray, image_size: tuple[int, int]) -> float:
    """The field of view (degrees) across the larger side of an ``(H, W)`` image seen by ``intrinsics``."""
    height, width = image_size
    f = float(intrinsics[0, 0] if width >= height else intrinsics[1, 1])
    return math.degrees(2.0 * math.atan(max(height, width) / (2.0 * f)))


def check_intrinsics(intrinsics: Any, source: str | None = None) -> np.ndarray:
    """``intrinsics`` as a ``(3, 3)`` float64 pinhole matrix, or an ExtractionError saying what is wrong."""
    try:
        matrix = np.asarray(intrinsics, dtype=np.float64)
    except (TypeError, ValueError):
        matrix = np.zeros(0)
    if matrix.shape != (3, 3) or not np.isfinite(matrix).all():
        raise ExtractionError(
            f"expected a 3×3 camera matrix [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] in pixels, got shape {matrix.shape}",
            source=source,
            field="intrinsics",
        )
    if matrix[0, 0] <= 0 or matrix[1, 1] <= 0 or not np.allclose(matrix[2], (0.0, 0.0, 1.0)):
        raise ExtractionError(
            "the focal lengths fx, fy must be positive and the last row 0, 0, 1", source=source, field="intrinsics"
        )
    return matrix


def _torchvision_hint() -> str:
    version = ".".join(torch.__version__.split("+")[0].split(".")[:2])
    return (
        f"the model needs torchvision's operators (torchvision.ops.nms); install the torchvision release that "
        f"matches torch {version} (pip install torchvision, from the same index as torch)"
    )


def _import_torchvision() -> str | None:
    """Imports torchvision so that its operators are registered before a model is loaded; why not, if it failed."""
    try:
        import torchvision  # noqa: F401  (registers torchvision::nms and the other operators)
    except ImportError:
        return "torchvision is not installed"
    except Exception as exc:  # a torchvision built for another torch fails in many ways
        return f"torchvision failed to import ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
    return None


def _device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ExtractionError(f"unknown device {device!r} ({exc}); use cpu, cuda or cuda:N", field="device") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ExtractionError(f"device {device!r} asked for, but no CUDA GPU is available; use cpu", field="device")
    return dev


class NLFModel:
    """A loaded NLF multi-person model (or anything with its ``detect_smpl_batched``) on one device.

    Use :func:`load_nlf` to make one from a file.
    """

    def __init__(self, module: torch.jit.ScriptModule | torch.nn.Module, device: torch.device, path: str):
        self.module = module
        self.device = device
        self.path = path

    def __repr__(self) -> str:
        return f"NLFModel({self.path!r}, device={str(self.device)!r})"

    def detect(
        self,
        frames: np.ndarray,
        *,
        intrinsics: np.ndarray | None = None,
        detector_threshold: float = 0.3,
        detector_nms_iou_threshold: float = 0.7,
        max_detections: int = 150,
        num_aug: int = 1,
        internal_batch_size: int = 64,
    ) -> list[Detections]:
        """The people in each frame of a batch.

        Args:
            frames: ``(N, H, W, 3)`` uint8, **RGB** (a BGR frame makes every colour wrong for the detector).
            intrinsics: ``(3, 3)`` pixel camera matrix of the frames; default NLF's: 55° across the larger side,
                principal point at the centre.
            detector_threshold: the detector's minimum score.
            detector_nms_iou_threshold, max_detections, num_aug, internal_batch_size: passed to NLF as is
                (``num_aug`` > 1 averages test-time augmentations: slower, steadier).

        Returns:
            one :class:`Detections` per frame, most confident first; empty where nobody was found.
        """
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ExtractionError(
                f"expected frames (N, H, W, 3) uint8 RGB, got shape {frames.shape} {frames.dtype}",
                source=self.path,
                field="frames",
            )
        count, height, width = frames.shape[:3]
        if count == 0:
            return []
        matrix = default_intrinsics((height, width)) if intrinsics is None else check_intrinsics(intrinsics)
        images = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device).permute(0, 3, 1, 2).contiguous()
        intrinsic_matrix = torch.as_tensor(matrix, dtype=torch.float32, device=self.device)[None]
        try:
            with torch.inference_mode():
                result = getattr(self.module, DETECT_METHOD)(
                    images=images,
                    intrinsic_matrix=intrinsic_matrix,
                    detector_threshold=float(detector_threshold),
                    detector_nms_iou_threshold=float(detector_nms_iou_threshold),
                    max_detections=int(max_detections),
                    num_aug=int(num_aug),
                    internal_batch_size=int(internal_batch_size),
                )
        except RuntimeError as exc:
            if _MISSING_TORCHVISION_OP.search(str(exc)):
                raise ExtractionError(_torchvision_hint(), source=self.path) from None
            first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            hint = "; use a smaller batch size" if "out of memory" in first.lower() else ""
            raise ExtractionError(
                f"the model failed on a batch of {count} frames: {first}{hint}", source=self.path
            ) from exc
        return _detections(result, count, self.path)


def _detections(result: Any, count: int, source: str) -> list[Detections]:
    """NLF's output dict of per-frame lists → one numpy :class:`Detections` per frame."""
    if not isinstance(result, dict):
        raise ExtractionError(
            f"{DETECT_METHOD} returned {type(result).__name__}, expected a dict of per-frame lists", source=source
        )
    keys = ("boxes", "joints3d_nonparam", "joint_uncertainties")
    for key in keys:
        if key not in result or len(result[key]) != count:
            got = "missing" if key not in result else f"{len(result[key])} entries"
            raise ExtractionError(
                f"{DETECT_METHOD}'s output '{key}' is {got}, expected one entry per frame ({count}); "
                "is this NLF's multi-person model?",
                source=source,
            )
    out = []
    for i in range(count):
        boxes, joints, uncertainty = (result[key][i].detach().to("cpu", torch.float32).numpy() for key in keys)
        try:
            boxes = boxes.reshape(-1, 5)
            n = boxes.shape[0]
            if n == 0:  # a frame with nobody: NLF's empty tensors need not carry the joint axes
                joints, uncertainty = np.zeros((0, NUM_JOINTS, 3), np.float32), np.zeros((0, NUM_JOINTS), np.float32)
            else:
                joints = joints.reshape(n, -1, 3)[:, :NUM_JOINTS]
                uncertainty = uncertainty.reshape(n, -1)[:, :NUM_JOINTS]
        except ValueError:
            raise ExtractionError(
                f"frame {i}: {DETECT_METHOD} returned boxes {boxes.shape}, joints {joints.shape} and uncertainties "
                f"{uncertainty.shape}, which do not agree",
                source=source,
            ) from None
        if joints.shape[1] != NUM_JOINTS or uncertainty.shape[1] != NUM_JOINTS:
            raise ExtractionError(
                f"frame {i}: expected the 24 SMPL joints per person, got {joints.shape[1]}", source=source
            )
        out.append(Detections(boxes, joints, uncertainty))
    return out


def load_nlf(path: str | Path, device: str | torch.device = "cpu") -> NLFModel:
    """Loads NLF's multi-person TorchScript file (``nlf_l_multi.torchscript``) onto ``device``.

    torchvision is imported first when it is installed: the real model calls ``torchvision.ops.nms``, whose
    operator must be registered before the file is read. Errors are one line naming the file and the fix.
    """
    source = str(path)
    file = Path(path)
    if not file.exists():
        raise ExtractionError(
            "no such file; download NLF's multi-person model (nlf_l_multi.torchscript) from the NLF project's "
            "releases and give its path",
            source=source,
        )
    if not file.is_file():
        raise ExtractionError(
            "is a folder; give the NLF TorchScript file itself (nlf_l_multi.torchscript)", source=source
        )
    dev = _device(device)
    torchvision_problem = _import_torchvision()
    try:
        with warnings.catch_warnings():
            # NLF is published as TorchScript only: torch's notice that the format is deprecated is not the user's
            warnings.filterwarnings(
                "ignore", message=r".*torch\.jit\.load.* is deprecated", category=DeprecationWarning
            )
            module = torch.jit.load(str(file), map_location=dev)
    except RuntimeError as exc:
        text = str(exc)
        if _MISSING_TORCHVISION_OP.search(text):
            why = f" ({torchvision_problem})" if torchvision_problem else ""
            raise ExtractionError(_torchvision_hint() + why, source=source) from None
        if "PytorchStreamReader" in text or "zip archive" in text or "constants.pkl" in text:
            raise ExtractionError(
                "not a TorchScript file (a cut download, or a checkpoint of another kind); download "
                "nlf_l_multi.torchscript again",
                source=source,
            ) from None
        first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
        raise ExtractionError(f"cannot load the TorchScript file: {first}", source=source) from None
    except OSError as exc:
        raise ExtractionError(f"cannot read the file ({exc.strerror or exc})", source=source) from None
    if not hasattr(module, DETECT_METHOD):
        raise ExtractionError(
            f"a TorchScript file without {DETECT_METHOD}: not NLF's multi-person model; download "
            "nlf_l_multi.torchscript",
            source=source,
        )
    module.eval()
    return NLFModel(module, dev, source)
