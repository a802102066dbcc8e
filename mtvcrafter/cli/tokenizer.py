"""``mtvcrafter tokenize`` and ``mtvcrafter train-tokenizer``: 4DMoT, what the video model sees of a motion."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .common import add_checkpoint_trust_option, add_clip_option, add_motion_options, motion_options


def add_parser(commands) -> None:
    tokenize = commands.add_parser("tokenize", help="4DMoT codes and reconstruction of a motion (what the model sees)")
    tokenize.add_argument("motion")
    tokenize.add_argument(
        "--checkpoint",
        required=True,
        help="official 4DMoT/mp_rank_00_model_states.pt, or a folder saved by train-tokenizer",
    )
    tokenize.add_argument("--stats", help="folder with mean.npy and std.npy (default: the checkpoint's or official)")
    tokenize.add_argument("--out", help="write codes, vq loss and reconstruction to this .npz")
    tokenize.add_argument("--eval", action="store_true", help="print MPJPE, vq loss, code usage and worst joints")
    add_clip_option(tokenize)
    tokenize.add_argument("--device", help="cpu, cuda, cuda:1, … (default cpu)")
    add_checkpoint_trust_option(tokenize)
    add_motion_options(tokenize)
    tokenize.set_defaults(run=tokenize_command)

    train = commands.add_parser(
        "train-tokenizer", help="train 4DMoT (official recipe by default; accelerate launch for several GPUs)"
    )
    train.add_argument("data", nargs="+", help="motion files or folders of them (.pkl, .npz)")
    train.add_argument("--out", required=True, help="folder for checkpoints/ and the trained tokenizer/")
    train.add_argument("--size", choices=("full", "tiny"), default="full", help="full: the official architecture")
    train.add_argument("--init", help="start from these weights (official .pt or our folder)")
    train.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    train.add_argument("--steps", type=int, help="default 500000")
    train.add_argument("--batch-size", type=int, help="default 32")
    train.add_argument("--clip-frames", type=int, help="default 49")
    train.add_argument("--learning-rate", type=float, help="default 2e-4")
    train.add_argument("--warmup-steps", type=int, help="default 5000")
    train.add_argument("--save-every", type=int, help="default 5000")
    train.add_argument("--seed", type=int)
    train.add_argument("--stats", help="folder with mean.npy and std.npy (default: the official statistics)")
    train.add_argument("--mixed-precision", choices=("no", "bf16", "fp16"), default="no")
    train.add_argument("--cpu", action="store_true", help="train on the CPU even where a GPU is present")
    train.set_defaults(run=train_command)


def tokenize_command(args: argparse.Namespace) -> int:
    import numpy as np

    from mtvcrafter.motion import JOINT_NAMES, load_motion
    from mtvcrafter.tokenizer import MotionTokenizer

    motion = load_motion(args.motion, clip=args.clip, **motion_options(args))
    tokenizer = MotionTokenizer.from_pretrained(
        args.checkpoint, stats=args.stats, device=args.device, trust_checkpoint=args.trust_checkpoint
    )
    result = tokenizer.reconstruct(motion.joints)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            out,
            codes=result.codes,
            vq_loss=np.array(result.vq_loss),
            reconstruction=result.reconstruction_mm.astype(np.float32),
            joint_error_mm=result.error_mm.astype(np.float32),
            fps=np.array(motion.fps),
        )
        print(f"wrote {out}: codes {result.codes.shape}, reconstruction {result.reconstruction_mm.shape}")
    if args.eval or not args.out:
        worst = np.argsort(result.joint_error_mm)[::-1][:3]
        used = len(np.unique(result.codes))
        size = tokenizer.config.codebook_size
        print(f"frames {motion.num_frames} -> latent frames {result.codes.shape[0]} ({result.codes.size} codes)")
        print(f"MPJPE {result.mpjpe_mm:.2f} mm; vq loss {result.vq_loss:.4f}")
        print(f"codes used {used} of {size} ({used / size:.2%})")
        print("worst joints: " + ", ".join(f"{JOINT_NAMES[j]} {result.joint_error_mm[j]:.1f} mm" for j in worst))
    if result.warning:
        print(f"warning: {result.warning}", file=sys.stderr)
    return 0


def train_command(args: argparse.Namespace) -> int:
    from mtvcrafter.motion import NormStats
    from mtvcrafter.tokenizer import TokenizerConfig
    from mtvcrafter.tokenizer.train import TrainConfig, train_tokenizer

    config = TrainConfig()
    for name in ("steps", "batch_size", "clip_frames", "learning_rate", "warmup_steps", "save_every", "seed"):
        value = getattr(args, name)
        if value is not None:
            setattr(config, name, value)
    config.mixed_precision = args.mixed_precision
    if args.size == "tiny":
        config.model = json.loads(TokenizerConfig.tiny().to_json())
    stats = NormStats.load(args.stats) if args.stats else None
    saved = train_tokenizer(args.data, args.out, config, stats=stats, init=args.init, resume=args.resume, cpu=args.cpu)
    print(f"tokenizer saved in {saved}")
    return 0
