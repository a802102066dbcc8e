"""Batched rotation conversions in numpy (matrices act on column vectors; quaternions are w, x, y, z)."""

from __future__ import annotations

import numpy as np


def axis_angle_to_matrix(axis_angle: np.ndarray) -> np.ndarray:
    """Rodrigues' formula: ``(..., 3)`` axis times angle (radians) → ``(..., 3, 3)``, written out per element on
    contiguous components (no batched 3×3 products)."""
    aa = np.asarray(axis_angle, dtype=np.float64)
    x, y, z = np.moveaxis(aa, -1, 0).copy()
    angle = np.sqrt(x * x + y * y + z * z)
    inv = np.divide(1.0, angle, out=np.zeros_like(angle), where=angle > 1e-12)  # the unit axis (0 for no turn)
    x, y, z = x * inv, y * inv, z * inv
    s, c = np.sin(angle), np.cos(angle)
    t = 1.0 - c
    tx, ty, tz = t * x, t * y, t * z
    sx, sy, sz = s * x, s * y, s * z
    txy, txz, tyz = tx * y, tx * z, ty * z
    entries = [c + tx * x, txy - sz, txz + sy, txy + sz, c + ty * y, tyz - sx, txz - sy, tyz + sx, c + tz * z]
    return np.stack(entries, axis=-1).reshape(aa.shape[:-1] + (3, 3))


def _rows(v: np.ndarray, width: int) -> np.ndarray:
    """``(..., width)`` as ``(width, n)``, a component per contiguous row."""
    return np.ascontiguousarray(v.reshape(-1, width).T)


def _unrows(rows: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return np.ascontiguousarray(rows.T).reshape(shape)


def axis_angle_to_quaternion(axis_angle: np.ndarray) -> np.ndarray:
    """``(..., 3)`` axis times angle (radians) → ``(..., 4)`` unit quaternions (w, x, y, z) with w ≥ 0: the rotation
    :func:`axis_angle_to_matrix` gives, as :func:`matrix_to_quaternion` would write it, without the matrices."""
    aa = np.asarray(axis_angle, dtype=np.float64)
    rows = _rows(aa, 3)
    q = np.empty((4, rows.shape[1]))
    axis_angle_to_quaternion_into(rows, q, np.empty((3, rows.shape[1])))
    return _unrows(q, aa.shape[:-1] + (4,))


def quaternion_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton products ``a ⊗ b`` of ``(..., 4)`` quaternions (w, x, y, z), broadcast: rotation ``b``, then ``a``."""
    a, b = np.broadcast_arrays(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    left, right = _rows(a, 4), _rows(b, 4)
    out = np.empty_like(left)
    quaternion_multiply_into(left, right, out, np.empty((1, left.shape[1])))
    return _unrows(out, a.shape)


def axis_angle_to_quaternion_into(v: np.ndarray, q: np.ndarray, work: np.ndarray) -> None:
    """:func:`axis_angle_to_quaternion` of ``v`` ``(3, n)`` (a component per row) into ``q`` ``(4, n)``, every step
    written into ``q`` and ``work`` (``(≥ 3, n)`` scratch): no temporaries made and freed, for loops over many runs
    (:func:`~mtvcrafter.motion.kinematics.forward_kinematics_axis_angle`)."""
    x, y, z = v
    angle, half, scale = work[0], work[1], work[2]
    np.multiply(x, x, out=angle)
    np.multiply(y, y, out=half)
    angle += half
    np.multiply(z, z, out=half)
    angle += half
    np.sqrt(angle, out=angle)
    np.multiply(angle, 0.5, out=half)
    np.sin(half, out=scale)
    np.cos(half, out=q[0])
    small = angle < 1e-6
    np.divide(scale, angle, out=scale, where=~small)  # sin(θ/2)/θ …
    if small.any():  # … and its series 1/2 − θ²/48 where θ is too small to divide by
        scale[small] = 0.5 - angle[small] * angle[small] / 48.0
    np.negative(scale, out=scale, where=q[0] < 0.0)  # past half a turn: the other sign, so that w ≥ 0
    np.abs(q[0], out=q[0])
    for k in range(3):
        np.multiply(v[k], scale, out=q[k + 1])


def quaternion_multiply_into(a: np.ndarray, b: np.ndarray, out: np.ndarray, work: np.ndarray) -> None:
    """:func:`quaternion_multiply` of ``(4, n)`` quaternions (a component per row) into ``out``; ``work``: ``(≥ 1, n)``
    scratch."""
    aw, ax, ay, az = a
    bw, bx, by, bz = b
    term = work[0]
    for row, first, rest in (
        (out[0], (aw, bw), ((-1, ax, bx), (-1, ay, by), (-1, az, bz))),
        (out[1], (aw, bx), ((1, ax, bw), (1, ay, bz), (-1, az, by))),
        (out[2], (aw, by), ((-1, ax, bz), (1, ay, bw), (1, az, bx))),
        (out[3], (aw, bz), ((1, ax, by), (-1, ay, bx), (1, az, bw))),
    ):
        np.multiply(*first, out=row)
        for sign, u, v in rest:
            np.multiply(u, v, out=term)
            if sign > 0:
                row += term
            else:
                row -= term


def unit_quaternion_to_matrix_into(q: np.ndarray, m: np.ndarray, work: np.ndarray) -> None:
    """The rotation matrices of unit quaternions ``q`` ``(4, n)`` (a component per row) into ``m`` ``(3, 3, n)``, as
    :func:`quaternion_to_matrix` without normalising first; ``work``: ``(≥ 5, n)`` scratch."""
    w, x, y, z = q
    x2, y2, z2, first, second = work[0], work[1], work[2], work[3], work[4]
    np.add(x, x, out=x2)
    np.add(y, y, out=y2)
    np.add(z, z, out=z2)
    np.multiply(z, z2, out=first)  # zz
    np.multiply(y, y2, out=m[0, 0])
    m[0, 0] += first  # yy + zz
    np.multiply(x, x2, out=m[1, 1])
    m[1, 1] += first  # xx + zz
    np.multiply(x, x2, out=m[2, 2])
    np.multiply(y, y2, out=first)
    m[2, 2] += first  # xx + yy
    for k in range(3):
        np.subtract(1.0, m[k, k], out=m[k, k])
    for (i, k), u, v, s, t in (((0, 1), x, y2, w, z2), ((0, 2), x, z2, w, y2), ((1, 2), y, z2, w, x2)):
        np.multiply(u, v, out=first)  # xy, xz, yz
        np.multiply(s, t, out=second)  # wz, wy, wx
        if (i, k) == (0, 2):  # m02 = xz + wy, m20 = xz − wy
            np.add(first, second, out=m[i, k])
            np.subtract(first, second, out=m[k, i])
        else:  # m01 = xy − wz, m10 = xy + wz; m12 = yz − wx, m21 = yz + wx
            np.subtract(first, second, out=m[i, k])
            np.add(first, second, out=m[k, i])


def quaternion_to_matrix(quaternion: np.ndarray) -> np.ndarray:
    """``(..., 4)`` quaternions (w, x, y, z), normalised first → ``(..., 3, 3)``."""
    q = np.asarray(quaternion, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    m = np.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
        ],
        axis=-1,
    )  # fmt: skip
    return m.reshape(*q.shape[:-1], 3, 3)


def matrix_to_quaternion(matrix: np.ndarray) -> np.ndarray:
    """``(..., 3, 3)`` rotation matrices → ``(..., 4)`` unit quaternions (w, x, y, z) with w ≥ 0.

    Uses the largest of the four candidate denominators, so it is stable for every rotation; each case is computed
    only for the matrices it applies to.
    """
    m = np.asarray(matrix, dtype=np.float64)
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    d21, d12 = m[..., 2, 1], m[..., 1, 2]
    d02, d20 = m[..., 0, 2], m[..., 2, 0]
    d10, d01 = m[..., 1, 0], m[..., 0, 1]
    candidates = np.stack(
        [
            1.0 + m00 + m11 + m22,
            1.0 + m00 - m11 - m22,
            1.0 - m00 + m11 - m22,
            1.0 - m00 - m11 + m22,
        ],
        axis=-1,
    )
    best = np.argmax(candidates, axis=-1)
    q = np.empty(m.shape[:-2] + (4,))
    for case in range(4):
        where = best == case
        if not where.any():
            continue
        r = np.sqrt(np.maximum(candidates[..., case][where], 1e-300))
        a21, a12, a02, a20, a10, a01 = (d[where] for d in (d21, d12, d02, d20, d10, d01))
        if case == 0:
            parts = (r, (a21 - a12) / r, (a02 - a20) / r, (a10 - a01) / r)
        elif case == 1:
            parts = ((a21 - a12) / r, r, (a01 + a10) / r, (a02 + a20) / r)
        elif case == 2:
            parts = ((a02 - a20) / r, (a01 + a10) / r, r, (a12 + a21) / r)
        else:
            parts = ((a10 - a01) / r, (a02 + a20) / r, (a12 + a21) / r, r)
        q[where] = np.stack(parts, axis=-1) * 0.5
    q = np.where(q[..., :1] < 0, -q, q)
    return q / np.sqrt(np.einsum("...i,...i->...", q, q))[..., None]


def vector_norm(v: np.ndarray, keepdims: bool = False) -> np.ndarray:
    """Euclidean length over the last axis (as ``np.linalg.norm(v, axis=-1)``, several times faster)."""
    out = np.sqrt(np.einsum("...i,...i->...", v, v))
    return out[..., None] if keepdims else out


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation taking direction ``a`` onto direction ``b``; ``(..., 3)`` each → ``(..., 3, 3)``.

    For opposite directions it turns 180° about an axis perpendicular to ``a``; where either
    vector is zero there is no direction to turn to, and it gives the identity.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a, b = np.broadcast_arrays(a, b)
    a_norm = vector_norm(a, keepdims=True)
    b_norm = vector_norm(b, keepdims=True)
    defined = (a_norm > 1e-12) & (b_norm > 1e-12)
    a = np.where(defined, a / np.maximum(a_norm, 1e-300), [1.0, 0.0, 0.0])
    b = np.where(defined, b / np.maximum(b_norm, 1e-300), [1.0, 0.0, 0.0])
    v = np.cross(a, b)
    cos = np.einsum("...i,...i->...", a, b)[..., None, None]
    # R = cos·I + [v]× + v vᵀ / (1 + cos), exact away from opposite directions.
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    zero = np.zeros_like(x)
    cross = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], axis=-1).reshape(*v.shape[:-1], 3, 3)
    near_opposite = cos[..., 0, 0] < -1.0 + 1e-6
    outer = v[..., :, None] * v[..., None, :] / np.where(near_opposite[..., None, None], 1.0, 1.0 + cos)
    rotation = cos * np.eye(3) + cross + outer
    if near_opposite.any():
        # Near 180° the cross product vanishes: turn about v if it still says where, else any axis ⟂ a.
        a_o, v_o = a[near_opposite], v[near_opposite]
        sin = vector_norm(v_o, keepdims=True)
        helper = np.where(np.abs(a_o[..., :1]) < 0.9, np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]))
        perp = np.cross(a_o, helper)
        perp /= vector_norm(perp, keepdims=True)
        axis = np.where(sin > 1e-9, v_o / np.where(sin > 1e-9, sin, 1.0), perp)
        angle = np.arctan2(sin, cos[near_opposite][..., 0])
        rotation[near_opposite] = axis_angle_to_matrix(axis * angle)
    return rotation


def frame_from_two(primary: np.ndarray, secondary: np.ndarray) -> np.ndarray:
    """Orthonormal frames ``(..., 3, 3)`` whose columns are ``primary``, the part of ``secondary``
    perpendicular to it, and their cross product.

    Where ``primary`` is zero or ``secondary`` parallel to it the frame is undefined: it is NaN there
    (silently), for the caller to replace.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        e1 = primary / vector_norm(primary, keepdims=True)
        e2 = secondary - np.sum(secondary * e1, axis=-1, keepdims=True) * e1
        e2 = e2 / vector_norm(e2, keepdims=True)
        e3 = np.cross(e1, e2)
    frames = np.stack([e1, e2, e3], axis=-1)
    small = (vector_norm(primary) < 1e-12) | ~np.isfinite(frames).all(axis=(-1, -2))
    return np.where(small[..., None, None], np.nan, frames)


def best_fit_rotation(source: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Rotation ``R`` minimising ``sum_i w_i |R source_i - target_i|^2`` (Kabsch, no translation).

    ``source``, ``target``: ``(..., N, 3)``; returns ``(..., 3, 3)`` with determinant +1.

    Solved as Horn's quaternion eigenproblem without a general eigensolver (the "QCP" method): the
    largest eigenvalue of the symmetric 4×4 matrix ``K`` by Newton's method on its characteristic
    polynomial, started above it, then its eigenvector from the adjugate of ``K − λI``; all of it
    elementwise over the batch, several times faster than a batched SVD of 3×3 matrices. Where the
    largest eigenvalue is (nearly) repeated — the points do not fix the rotation — a batched
    eigensolver picks one of the equally good rotations.
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if weights is not None:
        source = source * np.asarray(weights, dtype=np.float64)[..., None]
    h = np.swapaxes(source, -1, -2) @ target  # (..., 3, 3): h[a, b] = sum_i s_ia t_ib
    pairs = np.sum(vector_norm(source) * vector_norm(target), axis=-1).reshape(-1)
    batch = h.shape[:-2]
    h = h.reshape(-1, 3, 3)
    # The rotation does not depend on h's scale: entries up to 1 keep λ⁴ and the cofactors far from overflow.
    size = np.abs(h).max(axis=(1, 2))
    size = np.where(size > 0, size, 1.0)
    h = h / size[:, None, None]
    pairs = pairs / size
    (sxx, sxy, sxz), (syx, syy, syz), (szx, szy, szz) = np.moveaxis(h, 0, -1)
    # Horn's symmetric matrix K (its top eigenvector is the rotation's quaternion w, x, y, z), as 10 entries.
    k = {
        (0, 0): sxx + syy + szz, (0, 1): syz - szy, (0, 2): szx - sxz, (0, 3): sxy - syx,
        (1, 1): sxx - syy - szz, (1, 2): sxy + syx, (1, 3): szx + sxz,
        (2, 2): -sxx + syy - szz, (2, 3): syz + szy,
        (3, 3): -sxx - syy + szz,
    }  # fmt: skip
    # Characteristic polynomial of K (trace 0): λ⁴ + c2 λ² + c1 λ + c0.
    frobenius2 = np.einsum("nab,nab->n", h, h)
    c2 = -2.0 * frobenius2
    c1 = -8.0 * (sxx * (syy * szz - syz * szy) - sxy * (syx * szz - syz * szx) + sxz * (syx * szy - syy * szx))
    c0 = _determinant_and_null_vector(k, 0.0)[0]
    # λmax = max over rotations of trace(R h) = max of sum_i w_i t_i·(R s_i), at most sum_i w_i |s_i| |t_i|, and
    # at most the sum of h's singular values, so at most √3 |h|; at least any diagonal entry of K.
    # Newton started above the largest root of a polynomial whose roots are all real descends to it monotonically.
    lam = np.minimum(pairs, np.sqrt(3.0 * frobenius2))
    lowest = np.maximum.reduce([k[(i, i)] for i in range(4)])
    for _ in range(100):
        lam2 = lam * lam
        value = (lam2 + c2) * lam2 + c1 * lam + c0
        slope = 4.0 * lam2 * lam + 2.0 * c2 * lam + c1
        # At a (nearly) repeated root value and slope are both rounding noise, and their ratio any number: stop
        # where the value is within its rounding error, and never step below λmax's lower bound.
        noise = 2e-15 * (lam2 * lam2 - c2 * lam2 + np.abs(c1 * lam) + c2 * c2)
        step = np.divide(value, slope, out=np.zeros_like(value), where=(slope > 0) & (np.abs(value) > noise))
        step = np.where(lam - step >= lowest, step, 0.0)
        lam = lam - step
        if not np.any(np.abs(step) > 1e-14 * lam):
            break
    _, q, norm = _determinant_and_null_vector(k, lam)
    weak = norm <= 1e-6 * np.maximum(lam, 1e-300) ** 3
    if weak.any():
        full = np.empty((int(weak.sum()), 4, 4))
        for (i, j), value in k.items():
            full[:, i, j] = full[:, j, i] = value[weak]
        q[weak] = np.linalg.eigh(full)[1][..., -1]
    return quaternion_to_matrix(q).reshape(*batch, 3, 3)


def _determinant_and_null_vector(
    k: dict[tuple[int, int], np.ndarray], shift: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For the symmetric 4×4 matrices ``A = K − shift·I`` (upper entries ``k``, each ``(n,)``): ``det A``, the
    unit direction of the largest row of its adjugate (for rank 3, the null vector), and that row's norm."""

    def a(i: int, j: int) -> np.ndarray:
        value = k[(i, j)] if i <= j else k[(j, i)]
        return value - shift if i == j else value

    (a00, a01, a02, a03), (a10, a11, a12, a13) = [[a(i, j) for j in range(4)] for i in (0, 1)]
    (a20, a21, a22, a23), (a30, a31, a32, a33) = [[a(i, j) for j in range(4)] for i in (2, 3)]
    # 2×2 minors of rows (2, 3) and of rows (0, 1), then the cofactors C_ij (Laplace expansion).
    s0, s1, s2 = a20 * a31 - a21 * a30, a20 * a32 - a22 * a30, a20 * a33 - a23 * a30
    s3, s4, s5 = a21 * a32 - a22 * a31, a21 * a33 - a23 * a31, a22 * a33 - a23 * a32
    t0, t1, t2 = a00 * a11 - a01 * a10, a00 * a12 - a02 * a10, a00 * a13 - a03 * a10
    t3, t4, t5 = a01 * a12 - a02 * a11, a01 * a13 - a03 * a11, a02 * a13 - a03 * a12
    cof = np.stack(
        [
            np.stack([a11 * s5 - a12 * s4 + a13 * s3, -(a10 * s5 - a12 * s2 + a13 * s1),
                      a10 * s4 - a11 * s2 + a13 * s0, -(a10 * s3 - a11 * s1 + a12 * s0)], axis=-1),
            np.stack([-(a01 * s5 - a02 * s4 + a03 * s3), a00 * s5 - a02 * s2 + a03 * s1,
                      -(a00 * s4 - a01 * s2 + a03 * s0), a00 * s3 - a01 * s1 + a02 * s0], axis=-1),
            np.stack([a31 * t5 - a32 * t4 + a33 * t3, -(a30 * t5 - a32 * t2 + a33 * t1),
                      a30 * t4 - a31 * t2 + a33 * t0, -(a30 * t3 - a31 * t1 + a32 * t0)], axis=-1),
            np.stack([-(a21 * t5 - a22 * t4 + a23 * t3), a20 * t5 - a22 * t2 + a23 * t1,
                      -(a20 * t4 - a21 * t2 + a23 * t0), a20 * t3 - a21 * t1 + a22 * t0], axis=-1),
        ],
        axis=1,
    )  # fmt: skip
    determinant = a00 * cof[:, 0, 0] + a01 * cof[:, 0, 1] + a02 * cof[:, 0, 2] + a03 * cof[:, 0, 3]
    norms = np.sqrt(np.einsum("nij,nij->ni", cof, cof))
    best = np.argmax(norms, axis=-1)
    row = np.take_along_axis(cof, best[:, None, None], axis=1)[:, 0]
    norm = np.take_along_axis(norms, best[:, None], axis=1)[:, 0]
    return determinant, row / np.maximum(norm, 1e-300)[:, None], norm
