"""Filters for joint trajectories: Savitzky–Golay and One-Euro smoothing, and filling unobserved frames.

Every function takes an array with time on one axis (``(T, 24, 3)`` joints in millimetres, or any shape),
works in float64 and returns float64. numpy only (this runs inside Blender).
"""

from __future__ import annotations

import math

import numpy as np

from .errors import MotionError


def savgol_window(fps: float, seconds: float = 1 / 3) -> int:
    """The Savitzky–Golay window for a frame rate: ``seconds × fps`` frames rounded, made odd, at least 3.

    The default (a third of a second: 11 frames at 30 fps, 9 at 24, 7 at 20) removes a pose estimator's
    frame-to-frame jitter and keeps the shape of a dance move.
    """
    if not (fps > 0 and math.isfinite(fps)) or not (seconds >= 0 and math.isfinite(seconds)):
        raise MotionError(f"a window needs fps > 0 and seconds >= 0, got fps {fps!r} and seconds {seconds!r}")
    window = int(round(fps * seconds))
    return max(3, window + 1 - window % 2)


def _projection(window: int, order: int) -> np.ndarray:
    """``(window, window)`` matrix mapping a window of samples to the least-squares polynomial's values there."""
    half = window // 2
    t = (np.arange(window, dtype=np.float64) - half) / max(half, 1)  # scaled for a well-conditioned basis
    q, _ = np.linalg.qr(np.vander(t, order + 1, increasing=True))
    return q @ q.T


def savgol(x: np.ndarray, window: int, order: int = 2, axis: int = 0) -> np.ndarray:
    """Savitzky–Golay smoothing along ``axis``: each sample replaced by the value at its own time of the
    polynomial of degree ``order`` fitted (least squares) to the ``window`` samples centred on it, so the
    filter has zero phase (no lag). The first and last ``window // 2`` samples take the values of the
    polynomial fitted to the first / last whole window (scipy's ``savgol_filter(mode="interp")``).

    An even ``window`` is made odd by adding one, a window longer than the input is shortened to the
    longest odd one that fits, and one no longer than ``order`` is widened to ``order + 1`` or ``+ 2``
    (where the fit passes through every sample: no smoothing). Input shorter than ``order + 2`` samples
    is returned unchanged (as float64).
    """
    data = np.moveaxis(np.asarray(x, dtype=np.float64), axis, 0)
    n = data.shape[0]
    order = int(order)
    if order < 0:
        raise MotionError(f"a Savitzky–Golay order is 0 or more, got {order}")
    if n < order + 2:
        return np.moveaxis(data.copy(), 0, axis)
    window = int(window)
    window += 1 - window % 2
    window = max(window, order + 1 + order % 2)  # the smallest odd window above the order
    window = min(window, n - 1 + n % 2)
    half = window // 2
    projection = _projection(window, order)
    out = np.empty_like(data)
    coefficients = projection[half]  # the centre row: the value at the window's middle
    interior = np.zeros((n - 2 * half, *data.shape[1:]))
    for k, c in enumerate(coefficients):
        interior += c * data[k : n - 2 * half + k]
    out[half : n - half] = interior
    head, tail = data[:window], data[n - window :]
    out[:half] = np.tensordot(projection[:half], head, axes=1)
    out[n - half :] = np.tensordot(projection[window - half :], tail, axes=1)
    return np.moveaxis(out, 0, axis)


def _smoothing_factor(cutoff_hz: np.ndarray | float, fps: float) -> np.ndarray | float:
    """The exponential smoothing factor of a first-order low-pass at ``cutoff_hz`` sampled at ``fps``."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff_hz))
    return 1.0 / (1.0 + tau * fps)


def _one_euro_pass(data: np.ndarray, fps: float, min_cutoff: float, beta: float, d_cutoff: float) -> np.ndarray:
    """One causal One-Euro pass over ``(T, C)``, each channel on its own."""
    out = np.empty_like(data)
    out[0] = previous = data[0]
    speed = np.zeros(data.shape[1:])
    alpha_speed = _smoothing_factor(d_cutoff, fps)
    for t in range(1, data.shape[0]):
        speed = speed + alpha_speed * ((data[t] - previous) * fps - speed)
        alpha = _smoothing_factor(min_cutoff + beta * np.abs(speed), fps)
        previous = previous + alpha * (data[t] - previous)
        out[t] = previous
    return out


def one_euro(
    x: np.ndarray,
    fps: float,
    *,
    min_cutoff: float = 1.0,
    beta: float = 0.007,
    d_cutoff: float = 1.0,
    zero_phase: bool = True,
    axis: int = 0,
) -> np.ndarray:
    """The One-Euro filter (Casiez, Roussel and Vogel, CHI 2012) along ``axis``, each value on its own.

    A first-order low-pass whose cutoff rises with the signal's speed: ``min_cutoff + beta × |speed|`` Hz,
    the speed (units per second) itself low-passed at ``d_cutoff`` Hz. Slow movement is smoothed hard (no
    jitter while a joint holds still), fast movement follows with little lag. ``beta`` is per unit of
    speed: the default suits millimetres (a joint moving 1 m/s lifts the cutoff by 7 Hz).

    ``zero_phase`` runs the filter forward and then backward over the result, so its delay cancels (for
    recorded motion); ``zero_phase=False`` is the causal filter of live use, which lags behind the motion.
    """
    if not (fps > 0 and math.isfinite(fps)):
        raise MotionError(f"the One-Euro filter needs fps > 0, got {fps!r}")
    if not (min_cutoff > 0 and d_cutoff > 0 and beta >= 0):
        raise MotionError(
            f"the One-Euro filter needs min_cutoff > 0, d_cutoff > 0 and beta >= 0, got {min_cutoff}, "
            f"{d_cutoff} and {beta}"
        )
    data = np.moveaxis(np.asarray(x, dtype=np.float64), axis, 0)
    if data.shape[0] < 2:
        return np.moveaxis(data.copy(), 0, axis)
    flat = data.reshape(data.shape[0], -1)
    out = _one_euro_pass(flat, fps, min_cutoff, beta, d_cutoff)
    if zero_phase:
        out = _one_euro_pass(out[::-1], fps, min_cutoff, beta, d_cutoff)[::-1]
    return np.moveaxis(out.reshape(data.shape), 0, axis)


def true_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` of every run of consecutive True values in a ``(T,)`` mask, in order."""
    flags = np.concatenate(([False], np.asarray(mask, dtype=bool), [False]))
    edges = np.flatnonzero(flags[1:] != flags[:-1])
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _end_slope(data: np.ndarray, valid: np.ndarray, at: int, step: int, fallback: np.ndarray) -> np.ndarray:
    """Rate of change per frame at valid frame ``at`` from the valid frames on the side away from the gap
    (``step`` −1: the ones before it, +1: after): a three-point one-sided difference (exact for quadratics)
    where two are valid, a two-point one where one is, ``fallback`` (the slope across the gap) where none is."""
    n = len(valid)

    def ok(i: int) -> bool:
        return 0 <= i < n and bool(valid[i])

    one, two = at + step, at + 2 * step
    if ok(one) and ok(two):
        return -step * (3 * data[at] - 4 * data[one] + data[two]) / 2
    if ok(one):
        return -step * (data[at] - data[one])
    return fallback


def fill_gaps(x: np.ndarray, valid: np.ndarray, max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Invalid frames of ``x`` (time on axis 0) replaced by values from the valid frames around them.

    - a gap of at most ``max_gap`` frames between two valid frames: cubic Hermite interpolation, the slopes
      at its ends estimated from the valid frames beyond them (exact for motion that is a polynomial of
      degree ≤ 2 in time where two valid frames lie on each side, and for straight, uniform motion always);
    - a longer gap between valid frames: straight-line interpolation (the Hermite curve would overshoot);
      such gaps are found with ``true_runs(filled_mask)`` by whoever reports them;
    - invalid frames before the first / after the last valid frame: that valid frame held.

    Returns ``(filled, filled_mask)``: float64 ``x`` with every invalid frame filled, and the ``(T,)`` bool
    mask of the frames that were filled (the invalid ones). Raises :class:`MotionError` if no frame is valid.
    """
    data = np.asarray(x, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool).reshape(-1)
    if data.ndim == 0 or valid.shape != (data.shape[0],):
        raise MotionError(f"the valid mask has {valid.shape[0]} values for {np.shape(x)[:1]} frames", field="valid")
    if not valid.any():
        raise MotionError("no frame is valid: nothing to fill the gaps from", field="valid")
    filled = data.copy()
    for start, stop in true_runs(~valid):
        if start == 0:
            filled[:stop] = data[stop]
            continue
        if stop == len(valid):
            filled[start:] = data[start - 1]
            continue
        before, after = start - 1, stop
        span = after - before
        s = (np.arange(start, stop, dtype=np.float64) - before) / span
        s = s.reshape(-1, *([1] * (data.ndim - 1)))
        if stop - start > max_gap:
            filled[start:stop] = (1 - s) * data[before] + s * data[after]
            continue
        secant = data[after] - data[before]
        slope_before = span * _end_slope(data, valid, before, -1, secant / span)
        slope_after = span * _end_slope(data, valid, after, 1, secant / span)
        h00, h10 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s
        h01, h11 = -2 * s**3 + 3 * s**2, s**3 - s**2
        filled[start:stop] = h00 * data[before] + h10 * slope_before + h01 * data[after] + h11 * slope_after
    return filled, ~valid
