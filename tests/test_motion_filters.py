"""Trajectory filters of the motion core: Savitzky–Golay against scipy (an independent float64 reference),
the One-Euro filter's lag and jitter, and filling unobserved frames."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.signal import savgol_coeffs, savgol_filter

from mtvcrafter.motion import MotionError
from mtvcrafter.motion.filters import fill_gaps, one_euro, savgol, savgol_window, true_runs

#: Relative to the data's magnitude (about 1,300 mm here): scipy's own coefficients for order 4 over 31 samples
#: are only good to ~4e-13, so an absolute 1e-10 would test scipy's rounding rather than ours.
TOLERANCE = 1e-10


def joints_like(frames: int, seed: int = 0) -> np.ndarray:
    """A smooth trajectory with jitter, shaped like joints (frames, 24, 3), in millimetres."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames)[:, None, None] / 30.0
    phase = rng.uniform(0, 2 * math.pi, size=(1, 24, 3))
    return 300 * np.sin(2 * math.pi * 0.8 * t + phase) + 1000 + rng.normal(0, 8, size=(frames, 24, 3))


def matches_scipy(ours: np.ndarray, reference: np.ndarray) -> bool:
    scale = max(1.0, float(np.abs(reference).max()))
    return ours.shape == reference.shape and float(np.abs(ours - reference).max()) < TOLERANCE * scale


@pytest.mark.parametrize("window, order", [(w, o) for w in (3, 5, 7, 11, 21, 31) for o in (0, 1, 2, 3, 4) if o < w])
def test_savgol_equals_scipy_interp_mode_everywhere_including_the_edges(window, order):
    x = joints_like(64)
    ours = savgol(x, window, order)
    reference = savgol_filter(x, window, order, axis=0, mode="interp")
    assert ours.dtype == np.float64
    assert matches_scipy(ours, reference)
    half = window // 2  # the edges separately: they are where readings of the method differ
    assert matches_scipy(ours[:half], reference[:half]) and matches_scipy(ours[-half:], reference[-half:])


def test_savgol_along_another_axis_and_on_float32_input():
    x = joints_like(40).transpose(1, 0, 2).astype(np.float32)  # (24, T, 3)
    ours = savgol(x, 9, 2, axis=1)
    assert matches_scipy(ours, savgol_filter(x.astype(np.float64), 9, 2, axis=1, mode="interp"))


def test_savgol_window_rules_even_too_long_and_short_input():
    x = joints_like(30)
    # an even window is made odd by adding one
    assert matches_scipy(savgol(x, 10, 2), savgol_filter(x, 11, 2, axis=0, mode="interp"))
    # a window longer than the input: the longest odd one that fits
    assert matches_scipy(savgol(x, 99, 2), savgol_filter(x, 29, 2, axis=0, mode="interp"))
    assert matches_scipy(savgol(x[:8], 11, 3), savgol_filter(x[:8], 7, 3, axis=0, mode="interp"))
    # a window not above the order: the fit passes through every sample
    assert np.abs(savgol(x, 1, 2) - x).max() < 1e-9
    # shorter than order + 2: unchanged
    short = x[:3]
    assert np.array_equal(savgol(short, 11, 2), short)
    assert np.array_equal(savgol(x[:1], 5, 0), x[:1])


def centred_even(x: np.ndarray, window: int, order: int) -> np.ndarray:
    return savgol_filter(x, window, order, axis=0, mode="interp")


def mirrored_edges(x: np.ndarray, window: int, order: int) -> np.ndarray:
    return savgol_filter(x, window, order, axis=0, mode="mirror")


def nearest_edges(x: np.ndarray, window: int, order: int) -> np.ndarray:
    return savgol_filter(x, window, order, axis=0, mode="nearest")


def trailing_window(x: np.ndarray, window: int, order: int) -> np.ndarray:
    """The fit's value at the newest sample of the window (a causal, lagging reading)."""
    coefficients = savgol_coeffs(window, order, pos=window - 1, use="dot")
    out = x.copy()
    for t in range(window - 1, len(x)):
        out[t] = np.tensordot(coefficients, x[t - window + 1 : t + 1], axes=1)
    return out


@pytest.mark.parametrize(
    "misreading, window",
    [(centred_even, 10), (mirrored_edges, 11), (nearest_edges, 11), (trailing_window, 11)],
)
def test_the_comparison_catches_plausible_misreadings(misreading, window):
    """Each of these is a reasonable-looking reading of "Savitzky–Golay, window w, order 2" that is not the
    one specified; the comparison with scipy's interp mode must tell it apart."""
    x = joints_like(64, seed=3)
    reference = savgol_filter(x, 11, 2, axis=0, mode="interp")
    assert matches_scipy(savgol(x, window, 2), reference)
    assert not matches_scipy(misreading(x, window, 2), reference)


def test_savgol_window_is_about_a_third_of_a_second_odd_and_at_least_3():
    assert savgol_window(30) == 11
    assert savgol_window(24) == 9
    assert savgol_window(20) == 7
    assert savgol_window(60) == 21
    assert savgol_window(5) == 3
    assert savgol_window(30, 0.5) == 15
    for fps in (7.0, 12.5, 25.0, 29.97, 50.0, 120.0):
        window = savgol_window(fps)
        assert window % 2 == 1 and window in (round(fps / 3), round(fps / 3) + 1)
    with pytest.raises(MotionError):
        savgol_window(0)


def ramp(fps: float, seconds: float, speed: float) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(int(fps * seconds)) / fps
    return t, speed * t


def test_one_euro_causal_lags_a_ramp_by_its_time_constant_and_zero_phase_does_not():
    fps, speed, min_cutoff, beta = 30.0, 400.0, 1.0, 0.007
    t, x = ramp(fps, 6.0, speed)
    causal = one_euro(x, fps, min_cutoff=min_cutoff, beta=beta, zero_phase=False)
    # Steady state on a ramp: the low-pass trails by its time constant τ = 1 / (2π cutoff), and the speed it
    # measures (against its own previous output, as in the paper) is speed × (1 + τ fps), so the cutoff is
    # min_cutoff + beta × speed × (1 + τ fps). Solved for τ: 2π beta speed fps τ² + 2π (min_cutoff + beta speed) τ = 1.
    a, b = 2 * math.pi * beta * speed * fps, 2 * math.pi * (min_cutoff + beta * speed)
    time_constant = (-b + math.sqrt(b * b + 4 * a)) / (2 * a)
    middle = slice(len(t) // 3, 2 * len(t) // 3)
    lag_s = (x[middle] - causal[middle]) / speed
    assert np.allclose(lag_s, time_constant, rtol=1e-3)
    zero_phase = one_euro(x, fps, min_cutoff=min_cutoff, beta=beta)
    assert np.abs(zero_phase[middle] - x[middle]).max() < 1e-3 * speed * time_constant


def best_lag(signal: np.ndarray, filtered: np.ndarray, most: int = 10) -> int:
    """The shift (frames) of ``filtered`` behind ``signal`` that correlates best."""
    a, b = signal - signal.mean(), filtered - filtered.mean()
    scores = {
        lag: float(np.dot(a[most : len(a) - most], b[most + lag : len(b) - most + lag]))
        for lag in range(-most, most + 1)
    }
    return max(scores, key=scores.get)


def test_one_euro_zero_phase_has_no_lag_by_cross_correlation_and_reduces_jitter():
    fps = 30.0
    rng = np.random.default_rng(7)
    t = np.arange(300) / fps
    clean = 200 * np.sin(2 * math.pi * 0.7 * t)
    noisy = clean + rng.normal(0, 6, size=t.shape)
    causal = one_euro(noisy, fps, zero_phase=False)
    zero_phase = one_euro(noisy, fps)
    assert best_lag(clean, causal) >= 1
    assert best_lag(clean, zero_phase) == 0
    roughness = lambda x: float(np.sqrt(np.mean(np.diff(x[30:-30], 2, axis=0) ** 2)))  # noqa: E731
    assert roughness(zero_phase) < 0.45 * roughness(noisy)  # the sine alone has 0.2 of it
    assert roughness(causal) < 0.65 * roughness(noisy)
    # a joint holding still: the jitter mostly goes
    still = 1000 + rng.normal(0, 6, size=(300, 24, 3))
    calm = one_euro(still, fps)
    assert calm.shape == still.shape
    assert calm[30:-30].std(axis=0).mean() < 0.3 * still.std(axis=0).mean()


def test_one_euro_works_per_value_along_any_axis():
    x = joints_like(50)
    along_time = one_euro(x, 30.0)
    along_axis_1 = one_euro(x.transpose(1, 0, 2), 30.0, axis=1).transpose(1, 0, 2)
    assert np.allclose(along_time, along_axis_1, atol=1e-12)
    single = one_euro(x[:, 5, 1], 30.0)
    assert np.allclose(single, along_time[:, 5, 1], atol=1e-12)
    with pytest.raises(MotionError):
        one_euro(x, 0.0)


def test_fill_gaps_is_exact_on_quadratic_and_linear_motion():
    t = np.arange(60, dtype=np.float64)
    quadratic = np.stack([0.4 * t**2 - 3 * t + 10, -0.1 * t**2 + 7, 5 * t], axis=-1)[:, None, :] * np.ones((1, 24, 1))
    valid = np.ones(60, bool)
    valid[[10, 11, 12, 20, 30, 31, 32, 33]] = False  # short gaps, two valid frames on each side
    filled, mask = fill_gaps(quadratic, valid, max_gap=5)
    assert filled.shape == quadratic.shape
    assert np.abs(filled - quadratic).max() < 1e-9
    assert np.array_equal(mask, ~valid)
    # uniform straight motion, with gaps separated by a single valid frame (one-sided slopes not available)
    linear = 12.5 * t[:, None] - 40
    valid = np.ones(60, bool)
    valid[[5, 6, 8, 9, 10]] = False
    filled, _ = fill_gaps(linear, valid, max_gap=5)
    assert np.abs(filled - linear).max() < 1e-9


def test_fill_gaps_long_gaps_are_straight_lines_and_the_ends_hold():
    t = np.arange(50, dtype=np.float64)
    x = (0.5 * t**2)[:, None]
    valid = np.ones(50, bool)
    valid[:4] = False  # leading
    valid[15:30] = False  # longer than max_gap
    valid[45:] = False  # trailing
    filled, mask = fill_gaps(x, valid, max_gap=5)
    assert np.array_equal(mask, ~valid)
    assert np.all(filled[:4] == x[4]) and np.all(filled[45:] == x[44])
    line = x[14] + (x[30] - x[14]) * (t[15:30, None] - 14) / 16
    assert np.abs(filled[15:30] - line).max() < 1e-9
    assert np.array_equal(filled[valid], x[valid])
    assert true_runs(mask) == [(0, 4), (15, 30), (45, 50)]


def test_fill_gaps_refuses_when_no_frame_is_valid():
    with pytest.raises(MotionError, match="no frame is valid"):
        fill_gaps(np.zeros((5, 24, 3)), np.zeros(5, bool), max_gap=3)
    with pytest.raises(MotionError, match="valid"):
        fill_gaps(np.zeros((5, 24, 3)), np.ones(4, bool), max_gap=3)
