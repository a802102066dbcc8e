"""Training 4DMoT with accelerate: the official recipe by default, on one GPU, several, or the CPU.

Recipe (official script): random 49-frame crops, batch 32, AdamW (lr 2e-4, betas 0.9/0.99, weight
decay 1e-4) with 5,000 warm-up steps, 500,000 steps; loss = L1 on normalised joints + 0.5 ×
commitment; the codebook is not trained by gradients but as an exponential moving average of the
encoder outputs assigned to each code (decay 0.99), and codes left unused are re-seeded from the
batch every 20 steps.

Multi-GPU: ``accelerate launch -m mtvcrafter.cli train-tokenizer …``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..motion import Motion, MotionError, NormStats, load_motions
from .checkpoint import TokenizerError
from .model import FourDMoT, TokenizerConfig
from .tokenizer import MotionTokenizer, pad_frames, padded_length, save_tokenizer

MOTION_SUFFIXES = (".pkl", ".pickle", ".npz")


@dataclass
class TrainConfig:
    """Training settings; the defaults are the official recipe."""

    steps: int = 500_000
    batch_size: int = 32
    clip_frames: int = 49
    learning_rate: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 1e-4
    warmup_steps: int = 5_000
    commitment: float = 0.5
    ema_decay: float = 0.99
    dead_code_every: int = 20
    #: A code whose moving-average use falls below this many assignments per step is re-seeded.
    dead_code_threshold: float = 1.0
    save_every: int = 5_000
    seed: int = 0
    mixed_precision: str = "no"
    model: dict = field(default_factory=lambda: json.loads(TokenizerConfig().to_json()))


def load_training_motions(paths: Sequence[str | Path]) -> tuple[list[Motion], list[str]]:
    """Every clip of the motion files named, or found (recursively) in the folders named.

    A named file must be a motion; files found in folders that are not (an AMASS ``shape.npz``,
    say) are skipped, and returned as messages.
    """
    motions: list[Motion] = []
    skipped: list[str] = []
    for path in map(Path, paths):
        if path.is_dir():
            for found in sorted(p for p in path.rglob("*") if p.suffix.lower() in MOTION_SUFFIXES):
                try:
                    motions += load_motions(found)
                except MotionError as exc:
                    skipped.append(str(exc))
        elif path.is_file():
            motions += load_motions(path)
        else:
            raise TokenizerError(f"{path}: no such file or folder")
    if not motions:
        raise TokenizerError(f"no motions ({', '.join(MOTION_SUFFIXES)}) in {', '.join(map(str, paths))}")
    return motions, skipped


class MotionCrops:
    """Random contiguous crops of ``frames`` frames from the given motions, normalised.

    Crop ``i`` depends only on ``(seed, i)``, so a resumed run draws exactly the crops an
    uninterrupted one would have, and each process takes its own indices. Clips shorter than a crop
    are padded by repeating their last frame; longer clips are drawn in proportion to their length.
    """

    def __init__(self, motions: list[Motion], frames: int, stats: NormStats, seed: int = 0):
        if not motions:
            raise TokenizerError("no motions to train on")
        self.clips = [pad_frames(stats.normalize(m.joints), frames) for m in motions]
        self.weights = np.array([len(c) - frames + 1 for c in self.clips], dtype=np.float64)
        self.weights /= self.weights.sum()
        self.frames = frames
        self.seed = seed

    def crop(self, index: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, index])
        clip = self.clips[rng.choice(len(self.clips), p=self.weights)]
        start = int(rng.integers(0, len(clip) - self.frames + 1))
        return clip[start : start + self.frames]

    def batch(self, step: int, size: int, rank: int = 0, processes: int = 1) -> torch.Tensor:
        """The ``(size, frames, 24, 3)`` crops of process ``rank`` for training step ``step``."""
        first = (step * processes + rank) * size
        return torch.from_numpy(np.stack([self.crop(first + i) for i in range(size)]))


class CodebookEMA(nn.Module):
    """Moving averages behind the codebook: how often each code is used and the sum of what it
    stands for. Kept outside the model so the model's weights keep the official names."""

    def __init__(self, codebook: torch.Tensor, decay: float):
        super().__init__()
        self.decay = decay
        self.register_buffer("usage", torch.ones(codebook.shape[0], device=codebook.device))
        self.register_buffer("total", codebook.detach().clone())

    @torch.no_grad()
    def update(self, codebook: nn.Parameter, rows: torch.Tensor, codes: torch.Tensor, reduce: Callable) -> None:
        """Move the averages towards this step's assignments (summed over processes) and rewrite
        the codebook as their ratio (with Laplace smoothing, so no code divides by zero)."""
        counts = torch.bincount(codes, minlength=codebook.shape[0]).to(rows.dtype)
        sums = torch.zeros_like(self.total).index_add_(0, codes, rows.to(self.total.dtype))
        counts, sums = reduce(counts), reduce(sums)
        self.usage.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.total.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.usage.sum()
        smoothed = (self.usage + 1e-5) / (n + codebook.shape[0] * 1e-5) * n
        codebook.data.copy_(self.total / smoothed[:, None])

    @torch.no_grad()
    def reseed_dead(self, codebook: nn.Parameter, rows: torch.Tensor, threshold: float, generator) -> int:
        """Give codes used less than ``threshold`` times per step a random row of this batch."""
        dead = torch.nonzero(self.usage < threshold).flatten()
        if len(dead) == 0:
            return 0
        picks = torch.randint(0, rows.shape[0], (len(dead),), generator=generator, device="cpu").to(rows.device)
        fresh = rows[picks].to(codebook.dtype)
        codebook.data[dead] = fresh
        self.total[dead] = fresh.to(self.total.dtype)
        self.usage[dead] = 1.0
        return len(dead)


def warmup_then_constant(warmup: int) -> Callable[[int], float]:
    return lambda step: min(1.0, (step + 1) / max(1, warmup))


def train_tokenizer(
    data: Sequence[str | Path],
    out: str | Path,
    config: TrainConfig | None = None,
    stats: NormStats | None = None,
    init: str | Path | None = None,
    resume: bool = False,
    cpu: bool = False,
    progress: bool = True,
    on_step: Callable[[int, dict], None] | None = None,
) -> Path:
    """Train (or resume training) and write the tokenizer to ``out/tokenizer`` (loadable with
    :meth:`MotionTokenizer.from_pretrained`); resumable states go to ``out/checkpoints/step-N``.

    ``on_step(step, logs)`` sees every step's loss, reconstruction and commitment terms,
    perplexity and codebook usage. Returns the path of the saved tokenizer.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    config = config or TrainConfig()
    if config.steps < 1 or config.batch_size < 1:
        raise TokenizerError("steps and batch size must be at least 1")
    if config.clip_frames < 8 or padded_length(config.clip_frames) != config.clip_frames:
        raise TokenizerError(
            f"crops of {config.clip_frames} frames do not decode to their own length; use 8k or 8k+1 frames "
            "(e.g. 48 or 49, the official 49)"
        )
    out = Path(out)
    checkpoints = out / "checkpoints"
    step = 0
    latest = _latest_checkpoint(checkpoints) if resume else None
    if resume:
        if latest is None:
            raise TokenizerError(f"{checkpoints}: nothing to resume from")
        step = json.loads((latest / "progress.json").read_text())["step"]
        # The architecture and the statistics are the checkpoint's, whatever the command line says.
        config.model = json.loads((latest / "train_config.json").read_text())["model"]
        stats = NormStats.load(latest)
    # The scheduler steps once per training step, whatever the number of processes.
    accelerator = Accelerator(cpu=cpu, mixed_precision=config.mixed_precision, step_scheduler_with_optimizer=False)
    set_seed(config.seed)
    motions, skipped = load_training_motions(data)
    if skipped:
        accelerator.print(f"skipped {len(skipped)} file(s) that are not motions, e.g. {skipped[0]}")

    if init is not None:
        initial = MotionTokenizer.from_pretrained(init)
        model = initial.model.float().train()
        stats = stats or initial.stats
    else:
        model = FourDMoT(TokenizerConfig.from_dict(config.model))
    stats = stats or NormStats.official()
    crops = MotionCrops(motions, config.clip_frames, stats, seed=config.seed)
    config.model = json.loads(model.config.to_json())
    ema = CodebookEMA(model.vq.codebook, config.ema_decay)
    # The codebook follows the moving averages, not the gradients.
    model.vq.codebook.requires_grad_(False)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        parameters, lr=config.learning_rate, betas=config.betas, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_then_constant(config.warmup_steps))
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    ema.to(accelerator.device)
    accelerator.register_for_checkpointing(ema)

    if latest is not None:
        accelerator.load_state(str(latest))

    bar = tqdm(
        total=config.steps,
        initial=step,
        disable=not (progress and accelerator.is_main_process),
        desc="train 4DMoT",
        unit="step",
    )
    raw_model = accelerator.unwrap_model(model)
    while step < config.steps:
        batch = crops.batch(step, config.batch_size, accelerator.process_index, accelerator.num_processes)
        batch = batch.to(accelerator.device)
        with accelerator.autocast():
            result = model(batch)
            recon_loss = F.l1_loss(result["reconstruction"].float(), batch.float())
            loss = recon_loss + config.commitment * result["commitment"]
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        optimizer.step()
        scheduler.step()
        rows = result["latents"].detach().float().permute(0, 2, 3, 1).reshape(-1, raw_model.config.code_dim)
        codes = result["codes"].reshape(-1)
        ema.update(raw_model.vq.codebook, rows, codes, lambda t: accelerator.reduce(t, reduction="sum"))
        step += 1
        reseeded = 0
        if step % config.dead_code_every == 0:
            generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
            reseeded = ema.reseed_dead(raw_model.vq.codebook, rows, config.dead_code_threshold, generator)
            if accelerator.num_processes > 1:
                # Re-seeding drew from this process's batch: let every process use process 0's codebook.
                from accelerate.utils import broadcast

                for tensor in (raw_model.vq.codebook.data, ema.usage, ema.total):
                    tensor.copy_(broadcast(tensor, from_process=0))
        logs = _logs(loss, recon_loss, result["commitment"], codes, raw_model.config.codebook_size, reseeded)
        bar.set_postfix(loss=f"{logs['loss']:.4f}", ppl=f"{logs['perplexity']:.0f}", used=f"{logs['usage']:.1%}")
        bar.update(1)
        if on_step is not None:
            on_step(step, logs)
        if step % config.save_every == 0 or step == config.steps:
            _save(accelerator, raw_model, stats, config, checkpoints / f"step-{step}", out / "tokenizer", step)
    bar.close()
    accelerator.wait_for_everyone()
    return out / "tokenizer"


def _logs(loss, recon, commitment, codes: torch.Tensor, size: int, reseeded: int) -> dict:
    counts = torch.bincount(codes, minlength=size).float()
    p = counts / counts.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return {
        "loss": loss.item(),
        "reconstruction": recon.item(),
        "commitment": commitment.item(),
        "perplexity": float(entropy.exp()),
        "usage": float((counts > 0).float().mean()),
        "reseeded": reseeded,
    }


def _save(
    accelerator, model: FourDMoT, stats: NormStats, config: TrainConfig, state_dir: Path, export_dir: Path, step: int
) -> None:
    accelerator.wait_for_everyone()
    accelerator.save_state(str(state_dir))
    if accelerator.is_main_process:
        (state_dir / "progress.json").write_text(json.dumps({"step": step}))
        (state_dir / "train_config.json").write_text(json.dumps(asdict(config), indent=2))
        stats.save(state_dir)
        save_tokenizer(model, stats, export_dir)


def _latest_checkpoint(folder: Path) -> Path | None:
    done = [p for p in folder.glob("step-*") if (p / "progress.json").is_file()]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


__all__ = ["CodebookEMA", "MotionCrops", "TrainConfig", "load_training_motions", "train_tokenizer"]
