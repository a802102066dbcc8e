"""MTVCrafter motion: the Motion type, the SMPL-24 skeleton, the camera model, file formats and kinematics.

numpy only: this package never imports torch, so the Blender add-on can use it.
"""

from .bodymodel import RestSkeleton, load_body_model_skeleton, neutral_skeleton
from .bvh import Bvh, BvhSkeleton, bvh_end_positions, bvh_forward_kinematics, read_bvh
from .camera import DEFAULT_FOV_DEG, DEFAULT_IMAGE_SIZE, focal_length, project
from .errors import MotionError
from .io import load_motion, load_motions, save_motion, save_motions
from .kinematics import SkeletonFit, estimate_rest_offsets, forward_kinematics, inverse_kinematics
from .motion import Motion
from .npz import motion_from_arrays, motion_to_arrays
from .safe_pickle import safe_load_pickle
from .skeleton import BONES, CHILDREN, JOINT_NAMES, NUM_JOINTS, PARENTS, SIDES, bone_lengths
from .stats import NormStats

__all__ = [
    "BONES",
    "Bvh",
    "BvhSkeleton",
    "CHILDREN",
    "DEFAULT_FOV_DEG",
    "DEFAULT_IMAGE_SIZE",
    "JOINT_NAMES",
    "Motion",
    "MotionError",
    "NUM_JOINTS",
    "NormStats",
    "PARENTS",
    "RestSkeleton",
    "SIDES",
    "SkeletonFit",
    "bone_lengths",
    "bvh_end_positions",
    "bvh_forward_kinematics",
    "estimate_rest_offsets",
    "focal_length",
    "forward_kinematics",
    "inverse_kinematics",
    "load_body_model_skeleton",
    "load_motion",
    "load_motions",
    "motion_from_arrays",
    "motion_to_arrays",
    "neutral_skeleton",
    "project",
    "read_bvh",
    "safe_load_pickle",
    "save_motion",
    "save_motions",
]
