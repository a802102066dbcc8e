"""MotionTokenizer: motion in millimetres ↔ 4DMoT codes, tokens for MV-DiT, and reconstructions."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..motion import NUM_JOINTS, NormStats
from .checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    TokenizerError,
    build_model,
    read_state_dict,
    resolve_checkpoint,
)
from .model import ENCODER_CHUNK, FourDMoT

#: The motion window MV-DiT consumes (its learned unconditional tokens are for 49 frames).
WINDOW_FRAMES = 49
#: Frames shared by neighbouring windows of a long motion.
WINDOW_OVERLAP = 9
#: Above this vq loss the generated video tends to be poor (the authors' observation).
VQ_LOSS_WARNING = 0.1


def padded_length(num_frames: int) -> int:
    """The length a motion is padded to before encoding.

    The official chunking gives back exactly the input's frame count after decoding only for
    lengths ``8k`` and ``8k + 1`` (k ≥ 1; e.g. 48, 49, 97, 1000). Other lengths are padded by
    repeating the last frame up to the next ``8k + 1`` (at least 9), and cut back after decoding.
    """
    if num_frames < 1:
        raise TokenizerError("a motion needs at least one frame")
    if num_frames >= ENCODER_CHUNK and num_frames % ENCODER_CHUNK in (0, 1):
        return num_frames
    return max(ENCODER_CHUNK + 1, ENCODER_CHUNK * math.ceil((num_frames - 1) / ENCODER_CHUNK) + 1)


def pad_frames(joints: np.ndarray, frames: int, axis: int = 0) -> np.ndarray:
    """``joints`` made ``frames`` long along ``axis`` by repeating the last frame (unchanged if long enough)."""
    missing = frames - joints.shape[axis]
    if missing <= 0:
        return joints
    last = np.take(joints, [-1], axis=axis)
    return np.concatenate([joints, np.repeat(last, missing, axis=axis)], axis=axis)


def window_ranges(num_frames: int, size: int = WINDOW_FRAMES, overlap: int = WINDOW_OVERLAP) -> list[tuple[int, int]]:
    """``[start, stop)`` frame ranges covering a motion with windows of ``size`` frames.

    Consecutive windows share ``overlap`` frames; the last window is moved back to end on the last
    frame (so it may share more), and every window is full length unless the whole motion is
    shorter than one window (then one window holds it all and is padded at encoding).
    """
    if not 0 <= overlap < size:
        raise TokenizerError(f"windows of {size} frames cannot share {overlap}; use 0 to {size - 1}")
    if num_frames <= size:
        return [(0, num_frames)]
    stride = size - overlap
    starts = list(range(0, num_frames - size, stride)) + [num_frames - size]
    return [(s, s + size) for s in starts]


def save_tokenizer(model: FourDMoT, stats: NormStats, folder: str | Path) -> Path:
    """Our tokenizer folder: ``model.safetensors`` (fp32, official names), ``config.json``, statistics.
    Leaves ``model`` where and as it is (training can go on)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    tmp = folder / f".{WEIGHTS_FILE}.part"
    save_file(state, str(tmp), metadata={"format": "pt", "model": "4dmot"})
    tmp.replace(folder / WEIGHTS_FILE)
    (folder / CONFIG_FILE).write_text(model.config.to_json())
    stats.save(folder)
    return folder


@dataclass
class TokenizedMotion:
    """What the model will see of a motion.

    ``codes (T', 24)`` int64; ``reconstruction_mm (T, 24, 3)`` decoded and cut back to the input's
    frames; ``vq_loss`` the mean squared distance between encoder output and its codes (above
    :data:`VQ_LOSS_WARNING` results tend to be poor); ``error_mm (T, 24)`` per-frame, per-joint
    distance between input and reconstruction; ``padded_frames`` the length actually encoded
    (see :func:`padded_length`).
    """

    codes: np.ndarray
    reconstruction_mm: np.ndarray
    vq_loss: float
    error_mm: np.ndarray
    padded_frames: int

    @property
    def mpjpe_mm(self) -> float:
        """Mean per-joint position error in millimetres."""
        return float(self.error_mm.mean())

    @property
    def joint_error_mm(self) -> np.ndarray:
        """Mean error of each joint over the frames, ``(24,)`` mm."""
        return self.error_mm.mean(axis=0)

    @property
    def warning(self) -> str | None:
        """One sentence when the vq loss is above :data:`VQ_LOSS_WARNING`, else None."""
        if self.vq_loss <= VQ_LOSS_WARNING:
            return None
        return (
            f"vq loss {self.vq_loss:.3f} is above {VQ_LOSS_WARNING}: the motion is far from what the tokenizer "
            "knows and the video may be poor"
        )


class MotionTokenizer:
    """4DMoT with its normalisation statistics, on a device.

    >>> tok = MotionTokenizer.from_pretrained("MTVCrafter/4DMoT/mp_rank_00_model_states.pt")
    >>> codes = tok.encode(motion.joints)          # (T', 24) int64
    >>> tokens = tok.tokens(codes)                 # (T'·24, 3072) torch tensor: the MV-DiT input
    >>> joints = tok.decode(codes, motion.num_frames)
    """

    def __init__(
        self,
        model: FourDMoT,
        stats: NormStats | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        try:
            self.device = torch.device(device) if device is not None else torch.device("cpu")
        except (RuntimeError, TypeError) as exc:
            raise TokenizerError(f"unknown device {device!r} ({exc}); use cpu, cuda or cuda:N") from None
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise TokenizerError(f"device {device!r} asked for, but this torch build or machine has no CUDA GPU")
        self.dtype = dtype
        self.model = model.to(device=self.device, dtype=dtype).eval()
        self.stats = stats or NormStats.official()
        self._mean = torch.as_tensor(self.stats.mean, device=self.device, dtype=torch.float32)
        self._std = torch.as_tensor(self.stats.std, device=self.device, dtype=torch.float32)

    @property
    def config(self):
        return self.model.config

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        stats: NormStats | str | Path | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        trust_checkpoint: bool = False,
    ) -> MotionTokenizer:
        """Load the official ``mp_rank_00_model_states.pt`` (weights under ``module``) or a folder
        written by :meth:`save_pretrained`, with strict name and shape checks.

        ``stats``: a :class:`NormStats`, a folder with ``mean.npy``/``std.npy``, or None for the
        folder's own statistics if it has them, else the official ones (bundled).
        ``trust_checkpoint``: allow full unpickling of a ``.pt`` file that safe loading refuses.
        """
        weights = resolve_checkpoint(path)
        state, config = read_state_dict(weights, trust_checkpoint)
        model = build_model(state, config, weights)
        if stats is None and (weights.parent / "mean.npy").is_file():
            stats = weights.parent
        if stats is not None and not isinstance(stats, NormStats):
            stats = NormStats.load(stats)
        return cls(model, stats, device=device, dtype=dtype)

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write ``model.safetensors``, ``config.json`` and the statistics to ``folder``."""
        return save_tokenizer(self.model, self.stats, folder)

    # -- numpy in, numpy out ----------------------------------------------------------------------

    def _normalized(self, joints_mm: np.ndarray) -> tuple[torch.Tensor, int, bool]:
        joints = np.asarray(joints_mm, dtype=np.float32)
        single = joints.ndim == 3
        if single:
            joints = joints[None]
        if joints.ndim != 4 or joints.shape[2:] != (NUM_JOINTS, 3):
            raise TokenizerError(f"expected joints of shape (T, 24, 3) or (B, T, 24, 3), got {joints.shape}")
        if not np.isfinite(joints).all():
            raise TokenizerError("the joints hold NaN or infinite values")
        frames = joints.shape[1]
        joints = pad_frames(joints, padded_length(frames), axis=1)
        x = torch.from_numpy(np.ascontiguousarray(joints)).to(self.device)
        return ((x - self._mean) / self._std).to(self.dtype), frames, single

    def _to_mm(self, normalized: torch.Tensor) -> torch.Tensor:
        return normalized.float() * self._std + self._mean

    @torch.inference_mode()
    def encode(self, joints_mm: np.ndarray, return_vq_loss: bool = False) -> np.ndarray | tuple[np.ndarray, float]:
        """Codes ``(T', 24)`` int64 for joints ``(T, 24, 3)`` in mm (or ``(B, T', 24)`` for a batch).

        Lengths other than ``8k``/``8k + 1`` are padded first (see :func:`padded_length`).
        ``return_vq_loss``: also return the vq loss (mean squared distance of the encoder output to
        its codes; above :data:`VQ_LOSS_WARNING` the video tends to be poor).
        """
        x, _, single = self._normalized(joints_mm)
        latents = self.model.encode_grid(x)
        codes, quantized = self.model.quantize(latents)
        codes = codes.cpu().numpy()
        codes = codes[0] if single else codes
        if return_vq_loss:
            return codes, float(torch.mean((latents.float() - quantized.float()) ** 2))
        return codes

    def _codes_tensor(self, codes: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, bool]:
        codes = torch.as_tensor(np.asarray(codes) if not isinstance(codes, torch.Tensor) else codes)
        single = codes.ndim == 2
        if single:
            codes = codes[None]
        if codes.ndim != 3 or codes.shape[2] != NUM_JOINTS or codes.dtype.is_floating_point:
            raise TokenizerError(f"expected integer codes of shape (T', 24), got {tuple(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.config.codebook_size):
            raise TokenizerError(f"codes must lie in [0, {self.config.codebook_size}), the codebook's size")
        return codes.to(self.device, torch.long), single

    @torch.inference_mode()
    def tokens(self, codes: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Motion tokens ``(T'·24, code_dim)`` for codes ``(T', 24)``, frame-major (token = frame·24 + joint):
        the MV-DiT input. A batch ``(B, T', 24)`` gives ``(B, T'·24, code_dim)``."""
        codes, single = self._codes_tensor(codes)
        tokens = self.model.vq.codebook[codes].reshape(codes.shape[0], -1, self.config.code_dim)
        return tokens[0] if single else tokens

    @torch.inference_mode()
    def decode(self, codes: np.ndarray | torch.Tensor, num_frames: int | None = None) -> np.ndarray:
        """Joints ``(T, 24, 3)`` in mm for codes ``(T', 24)``; ``num_frames`` cuts padding back off."""
        codes, single = self._codes_tensor(codes)
        if codes.shape[1] < 2:
            raise TokenizerError(f"decoding needs at least 2 latent frames, got {codes.shape[1]}")
        normalized = self.model.decode_grid(self.model.lookup(codes).to(self.dtype))
        joints = self._to_mm(normalized).cpu().numpy()
        if num_frames is not None:
            joints = joints[:, :num_frames]
        return joints[0] if single else joints

    @torch.inference_mode()
    def reconstruct(self, joints_mm: np.ndarray) -> TokenizedMotion:
        """Encode and decode one motion ``(T, 24, 3)`` mm: what MV-DiT will be conditioned on."""
        x, frames, single = self._normalized(joints_mm)
        if not single:
            raise TokenizerError("reconstruct takes one motion (T, 24, 3)")
        latents = self.model.encode_grid(x)
        codes, quantized = self.model.quantize(latents)
        vq_loss = float(torch.mean((latents.float() - quantized.float()) ** 2))
        normalized = self.model.decode_grid(quantized)
        joints = self._to_mm(normalized)[0, :frames].cpu().numpy()
        source = np.asarray(joints_mm, dtype=np.float32)
        error = np.linalg.norm(joints - source, axis=-1)
        return TokenizedMotion(codes[0].cpu().numpy(), joints, vq_loss, error, x.shape[1])

    def encode_windows(self, joints_mm: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
        """Codes of each MV-DiT window of a motion: ``[(start, stop, codes (13, 24)), …]``.

        Windows of 49 frames overlapping by 9 (:func:`window_ranges`); a motion shorter than a
        window is padded to 49 frames by repeating its last frame.
        """
        joints = np.asarray(joints_mm, dtype=np.float32)
        out = []
        for start, stop in window_ranges(len(joints)):
            out.append((start, stop, self.encode(pad_frames(joints[start:stop], WINDOW_FRAMES))))
        return out
