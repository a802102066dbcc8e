"""Errors of the video model layer."""

from __future__ import annotations


class DiTError(Exception):
    """A model folder, input or setting the video model cannot use; the message says what to fix."""


class ModelFileError(DiTError):
    """A file of a model folder is missing or unreadable; names the file and where it comes from."""


class StepInterrupted(DiTError):
    """A call stopped inside a denoising step (see ``pipe.interruptible``)."""
