"""The field's pose-error metrics, one shared implementation.

- :func:`rotation_error_deg`: geodesic angle of ``R_est.T @ R_gt``.
- :func:`translation_angle_deg`: angle between translation directions. For
  direction-only estimates the sign is ambiguous and the error is folded,
  ``min(e, 180 - e)``; metric estimates are not folded.
- :func:`translation_error_m`: Euclidean distance of metric translations.
- :func:`pose_auc`: SuperGlue/LoFTR AUC of the max(rotation, translation angle)
  error curve, trapezoidal, failures count as infinite error.
- :func:`pose_auc_histogram`: the "AUC@30" variant of Reloc3r/VGGT (mean accuracy over
  integer thresholds 1..T): a different number; never mix the two. Reported as
  ``auc30_hist``, never as ``auc30``.
- :func:`pose_precision`: Map-free style precision, both errors strictly under the
  thresholds (25 cm, 5 deg by default), failures counting as misses.

Reference implementations these follow exactly: SuperGlue's ``pose_auc`` /
LoFTR's ``error_auc`` (trapezoid, recall steps of 1/N from (0, 0), the curve cut at
the threshold), PoseDiffusion/VGGT's ``calculate_auc_np`` (``np.histogram`` over
``0, 1, ..., T`` whose last bin is closed, then the mean of the cumulative sum) and
Map-free's ``trans_err < 0.25 and rot_err < 5``. One difference is deliberate: VGGT's
evaluation folds the translation angle for every method, twoview folds it only for
direction-only estimates (a metric method pointing backwards is wrong), so for metric
methods ``auc30_hist`` can only be lower than VGGT's script would give.
"""

from __future__ import annotations

import numpy as np

from twoview.geometry.pose import Pose
from twoview.geometry.rotation import rotation_angle_deg


def rotation_error_deg(R_est: np.ndarray, R_gt: np.ndarray) -> float:
    """Geodesic rotation error in degrees. (3, 3), (3, 3) -> float."""
    return rotation_angle_deg(np.asarray(R_est).T @ np.asarray(R_gt))


def translation_angle_deg(t_est: np.ndarray, t_gt: np.ndarray, fold: bool = False) -> float:
    """Angle between translation vectors in degrees.

    Args:
        fold: fold the sign ambiguity of direction-only estimates (``min(e, 180-e)``).

    Returns:
        NaN when the ground truth is (near) zero: a pure rotation has no direction to
        compare. A (near) zero estimate against a real baseline is an answer without a
        direction: the worst error, 90 folded, 180 unfolded (never NaN, which would let
        it escape the translation part of the pose error).
    """
    a, b = np.asarray(t_est, float), np.asarray(t_gt, float)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if nb < 1e-12:
        return float("nan")
    if na < 1e-12:
        return 90.0 if fold else 180.0
    e = float(np.degrees(np.arccos(np.clip(a @ b / (na * nb), -1.0, 1.0))))
    return min(e, 180.0 - e) if fold else e


def translation_error_m(t_est: np.ndarray, t_gt: np.ndarray) -> float:
    """Metric translation error ||t_est - t_gt|| in metres."""
    return float(np.linalg.norm(np.asarray(t_est, float) - np.asarray(t_gt, float)))


def pose_errors(est: Pose | None, gt: Pose, metric: bool) -> dict[str, float]:
    """All per-pair errors; inf for a failed estimate, NaN where a metric does not apply.

    Returns keys ``rot_deg``, ``trans_deg``, ``trans_m`` (NaN unless ``metric``), ``max_deg``.
    The translation angle is folded for direction-only estimates (``metric`` False) only.
    For a ground truth without translation (pure rotation) the translation angle is NaN
    and ``max_deg`` is the rotation error alone (as LoFTR's ``ignore_gt_t_thr``; no
    baseline threshold is applied, matching its default of 0).
    """
    if est is None:
        inf = float("inf")
        return {"rot_deg": inf, "trans_deg": inf, "trans_m": inf if metric else float("nan"), "max_deg": inf}
    r = rotation_error_deg(est.R, gt.R)
    ta = translation_angle_deg(est.t, gt.t, fold=not metric)
    tm = translation_error_m(est.t, gt.t) if metric else float("nan")
    mx = r if not np.isfinite(ta) else max(r, ta)
    return {"rot_deg": r, "trans_deg": ta, "trans_m": tm, "max_deg": mx}


def _checked_errors(errors) -> np.ndarray:
    """(N,) float64 copy with NaN (a failure) as inf; negative errors are refused."""
    if np.ndim(errors) > 1:
        raise ValueError("errors must be a 1-D sequence of per-pair errors (degrees)")
    errors = np.array(errors, dtype=np.float64).reshape(-1)
    errors[~np.isfinite(errors)] = np.inf
    if np.any(errors < 0):
        raise ValueError("errors must be >= 0 (degrees; inf or NaN for a failure)")
    return errors


def pose_auc(errors, thresholds=(5.0, 10.0, 20.0)) -> list[float]:
    """SuperGlue/LoFTR pose AUC: area under the recall-vs-error curve up to each threshold.

    Args:
        errors: per-pair max(rotation, translation-angle) errors in degrees; inf/NaN for
            failures.

    Returns:
        one AUC in [0, 1] per threshold.
    """
    errors = _checked_errors(errors)
    if not all(t > 0 for t in thresholds):
        raise ValueError(f"thresholds must be positive degrees, got {list(thresholds)}")
    if errors.size == 0:
        return [0.0 for _ in thresholds]
    n = len(errors)
    errors = np.sort(errors)
    recall = (np.arange(n) + 1) / n
    errors = np.r_[0.0, errors]
    recall = np.r_[0.0, recall]
    aucs = []
    for thr in thresholds:
        last = np.searchsorted(errors, thr)
        e = np.r_[errors[:last], thr]
        r = np.r_[recall[:last], recall[last - 1]]
        aucs.append(float(np.trapezoid(r, x=e) / thr))
    return aucs


def pose_auc_histogram(errors, max_threshold: int = 30) -> float:
    """Reloc3r/VGGT-style "AUC@T" (PoseDiffusion's ``calculate_auc_np``).

    The mean over integer thresholds ``k = 1..T`` of the fraction of pairs with error
    ``< k`` (``<= T`` for the last one: ``np.histogram``'s last bin is closed). A
    histogram, not SuperGlue's trapezoid: a different number for the same errors.

    Args:
        errors: per-pair max(rotation, translation-angle) errors in degrees; inf/NaN for
            failures (never counted).
    """
    errors = _checked_errors(errors)
    if not max_threshold >= 1:
        raise ValueError(f"max_threshold must be >= 1 degree, got {max_threshold}")
    if errors.size == 0:
        return 0.0
    T = int(max_threshold)
    below = [np.mean(errors < k) for k in range(1, T)] + [np.mean(errors <= T)]
    return float(np.mean(below))


def pose_precision(rot_deg, trans_m, max_rot_deg: float = 5.0, max_trans_m: float = 0.25) -> float:
    """Map-free style precision: fraction of pairs with ``trans_m < max_trans_m`` and
    ``rot_deg < max_rot_deg`` (strict, as Map-free's benchmark); failures count as misses."""
    r = np.asarray(rot_deg, float)
    t = np.asarray(trans_m, float)
    if r.size == 0:
        return 0.0
    ok = np.isfinite(r) & np.isfinite(t) & (r < max_rot_deg) & (t < max_trans_m)
    return float(np.mean(ok))


def median_finite_or_inf(values) -> float:
    """Median where failures are +inf (so a run with >= 50% failures has an inf median).

    NaN entries (metric not applicable) are ignored; returns NaN if nothing is left.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return float("nan")
    return float(np.median(v))


#: Keys of :func:`summarize_errors`, in the order reports print them.
SUMMARY_KEYS = (
    "num_pairs",
    "success_rate",
    "auc5",
    "auc10",
    "auc20",
    "auc30_hist",
    "median_rot_deg",
    "median_trans_deg",
    "median_trans_m",
    "precision_25cm_5deg",
    "median_ms",
    "median_cpu_ms",
)


def summarize_errors(
    records,
    metric: bool,
    precision_thresholds: tuple[tuple[float, float], ...] = ((0.25, 5.0),),
) -> dict[str, float | int | None]:
    """The per-method summary of a benchmark run.

    Args:
        records: per-pair dicts with ``rot_deg``, ``trans_deg``, ``trans_m``, ``max_deg``
            (inf for failures, as :func:`pose_errors` returns), ``success`` (bool) and
            ``ms`` (wall time of the prediction, milliseconds, NaN if unknown) and
            optionally ``cpu_ms`` (its process CPU time).
        metric: whether the method claims metric translations. A direction-only method is
            never scored on metric error: ``median_trans_m`` and every precision are None.
        precision_thresholds: ``(metres, degrees)`` pairs; each gives a key
            ``precision_{cm}cm_{deg}deg`` (Map-free style, failures count as misses).

    Returns:
        ``auc5/10/20`` (SuperGlue/LoFTR trapezoid, fractions in [0, 1]), ``auc30_hist``
        (Reloc3r/VGGT mean-accuracy "AUC@30", a different number), medians in degrees /
        metres (inf when more than half the pairs failed), ``success_rate``, ``median_ms``,
        ``median_cpu_ms`` and ``num_pairs``. Non-finite floats are for the caller to map to JSON null.
    """
    records = list(records)
    n = len(records)
    col = lambda k: np.array([float(r.get(k, np.nan)) for r in records], dtype=np.float64)  # noqa: E731
    mx = col("max_deg") if n else np.zeros(0)
    a5, a10, a20 = pose_auc(mx, (5.0, 10.0, 20.0))
    out: dict[str, float | int | None] = {
        "num_pairs": n,
        "success_rate": float(np.mean([bool(r.get("success")) for r in records])) if n else 0.0,
        "auc5": a5,
        "auc10": a10,
        "auc20": a20,
        "auc30_hist": pose_auc_histogram(mx, 30),
        "median_rot_deg": median_finite_or_inf(col("rot_deg")) if n else float("nan"),
        "median_trans_deg": median_finite_or_inf(col("trans_deg")) if n else float("nan"),
    }
    for m, d in precision_thresholds:
        out[precision_key(m, d)] = pose_precision(col("rot_deg"), col("trans_m"), d, m) if (metric and n) else None
    out["median_trans_m"] = median_finite_or_inf(col("trans_m")) if (metric and n) else None
    for key, name in (("ms", "median_ms"), ("cpu_ms", "median_cpu_ms")):
        v = col(key) if n else np.zeros(0)
        v = v[np.isfinite(v)]
        out[name] = float(np.median(v)) if v.size else float("nan")
    return out


def precision_key(metres: float, degrees: float) -> str:
    """The summary key of a precision threshold, e.g. ``precision_5cm_2deg``."""
    return f"precision_{_fmt_num(metres * 100)}cm_{_fmt_num(degrees)}deg"


def _fmt_num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}".replace(".", "p")
