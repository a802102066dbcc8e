"""The cache key of a job: the same inputs on the same backend setup render the same video; the same video through
the same model gives the same motion."""

from __future__ import annotations

import hashlib
import json

import numpy as np
from PIL import Image

from mtvcrafter.motion import Motion


def content_key(motion: Motion, image: Image.Image, params: dict, identity: str) -> str:
    """Same motion + image + settings + seed on the same backend setup → same key (and the same result).

    ``identity`` names what else decides the output (backend weights, device, version)."""
    digest = hashlib.sha256()
    facts = {
        "fps": motion.fps,
        "frames": motion.num_frames,
        "fov": motion.fov_deg,
        "image_size": motion.image_size,
        "ref_size": image.size,
        "params": params,
        "identity": identity,
    }
    for part in (
        np.ascontiguousarray(motion.joints, dtype=np.float32).tobytes(),
        image.tobytes(),
        json.dumps(facts, sort_keys=True, default=str).encode(),
    ):
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.hexdigest()


def video_key(video_sha256: str, filename: str, params: dict, identity: str) -> str:
    """The cache key of an extraction: the same video (its bytes' SHA-256 and its name, which names the motion)
    with the same params through the same model (``identity``) → the same motion."""
    facts = {"kind": "extract", "video": video_sha256, "name": filename, "params": params, "identity": identity}
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()
