"""``preview``: the skeleton drawn over the reference image, on the CPU; with a 4DMoT checkpoint, the
tokenizer's reconstruction drawn over it too (what the video model will see of the motion)."""

from __future__ import annotations

from .base import Backend, RenderRequest, RenderResult, file_stamp, never_cancelled, no_progress
from .errors import Cancelled


class PreviewBackend(Backend):
    name = "preview"
    description = "the skeleton drawn over the reference image (CPU); with a tokenizer, its reconstruction too"
    takes = ("width", "height", "num_frames", "placement")

    def __init__(self, config=None):
        super().__init__(config)
        self._tokenizer = None

    def tokenizer(self):
        """The configured 4DMoT tokenizer (loaded once), or None when none is configured."""
        path = self.config.tokenizer_path()
        if path is None:
            return None
        with self._lock:
            if self._tokenizer is None:
                from mtvcrafter.tokenizer import MotionTokenizer

                self._tokenizer = MotionTokenizer.from_pretrained(
                    path, device=self.config.device or "cpu", trust_checkpoint=self.config.trust_checkpoint
                )
        return self._tokenizer

    def identity(self) -> str:
        return f"{super().identity()} tokenizer={file_stamp(self.config.tokenizer_path())}"

    def run(self, request: RenderRequest, progress=no_progress, cancelled=never_cancelled) -> RenderResult:
        from mtvcrafter.render import render_preview

        settings = request.settings
        self.check(settings)
        motion = request.motion
        if settings.num_frames is not None and settings.num_frames < motion.num_frames:
            motion = motion.slice(0, settings.num_frames)
        overlay = None
        warnings: list[str] = []
        tokenizer = self.tokenizer()
        if tokenizer is not None:
            progress("tokenizing", 0.0, "4DMoT reconstruction for the overlay")
            tokenized = tokenizer.reconstruct(motion.joints)
            overlay = motion.with_joints(tokenized.reconstruction_mm)
            if tokenized.warning:
                warnings.append(tokenized.warning)

        def frame_written(done: int, total: int | None) -> None:
            if cancelled():
                raise Cancelled()
            total = total or motion.num_frames
            progress("rendering", done / max(total, 1), f"frame {done}/{total}")

        render_preview(
            motion,
            request.image,
            request.out,
            size=settings.size,
            placement=settings.placement,
            overlay=overlay,
            progress=frame_written,
        )
        return RenderResult(request.out, motion.num_frames, motion.fps, settings.size, warnings)
