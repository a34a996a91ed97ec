"""Calibrated confidence of a regressed pose, and the "no overlap" failure rule.

The confidence is a logistic model of the pose's agreement with the descriptor matches
(:class:`twoview.regress.check.Agreement`): the shares of matches within 4 and 12 px of
their epipolar lines, the share of cells with a mutual match and, with depth, the share
of matched 3D points the pose aligns. It is fitted (:func:`fit_calibration`) on pairs
that neither trained the network nor judge it (the split's calibration pairs, see
``benchmarks/bench_regress.py --calibrate``), to read as the probability that the pose is
*good*: rotation error < 5 deg and translation error < 10 cm (metric) or translation
direction error < 10 deg (direction only).

A pair is a failure when its matches do not support *any* overlap, whatever the pose:
fewer than ``min_coherent`` mutual matches that move like a neighbouring match (unrelated
images match at random positions; the same surface seen again gives a smooth flow). A
wrong pose of overlapping images is not a failure but a low confidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from twoview.config import StrictConfig, _check
from twoview.regress.check import Agreement

#: Feature names, in order, without and with depth.
FEATURES = ("bias", "epipolar_4px", "epipolar_12px", "match_share")
FEATURES_DEPTH = (*FEATURES, "aligned")
#: What "good" means for the calibration target.
GOOD_ROT_DEG, GOOD_TRANS_M, GOOD_TDIR_DEG = 5.0, 0.10, 10.0


@dataclass
class Calibration(StrictConfig):
    """Logistic weights (see :data:`FEATURES`, :data:`FEATURES_DEPTH`) and the failure rule.

    The defaults are a hand-set prior (used until a checkpoint carries fitted weights):
    confidence rises with the share of epipolar-consistent matches.
    """

    weights: list[float] = field(default_factory=lambda: [-3.0, 2.0, 4.0, 1.0])
    weights_depth: list[float] = field(default_factory=lambda: [-3.5, 1.0, 3.0, 1.0, 3.0])
    min_coherent: int = 12
    fitted_on: str = "prior (not fitted)"

    def validate(self):
        _check(len(self.weights) == len(FEATURES), f"calibration.weights needs {len(FEATURES)} values")
        _check(len(self.weights_depth) == len(FEATURES_DEPTH), f"calibration.weights_depth needs {len(FEATURES_DEPTH)} values")
        _check(self.min_coherent >= 0, "calibration.min_coherent must be >= 0")


def features(a: Agreement, depth: bool) -> np.ndarray:
    """The feature vector of an agreement (with the depth feature when ``depth`` and measured)."""
    f = [1.0, a.epipolar[0], a.epipolar[1], a.match_share]
    if depth:
        f.append(a.aligned if a.aligned is not None else 0.0)
    return np.array(f)


def uses_depth_features(a: Agreement) -> bool:
    return a.aligned is not None


def confidence(a: Agreement, cal: Calibration) -> float:
    """P(good pose) in [0, 1]."""
    depth = uses_depth_features(a)
    w = np.array(cal.weights_depth if depth else cal.weights)
    return float(1.0 / (1.0 + np.exp(-features(a, depth) @ w)))


def no_overlap_reason(a: Agreement, cal: Calibration) -> str | None:
    """Why the pair shows no common view, or None when the matches support one."""
    if a.coherent < cal.min_coherent:
        return (f"the two images do not appear to overlap: {a.coherent} of {a.num_cells} image cells have a mutual "
                f"descriptor match that moves like its neighbours' (at least {cal.min_coherent} needed)")
    return None


def is_good(rot_deg: float, trans_m: float | None, tdir_deg: float | None) -> bool:
    """The calibration target of a pose error (metric when ``trans_m`` is given)."""
    if not rot_deg < GOOD_ROT_DEG:
        return False
    if trans_m is not None and np.isfinite(trans_m):
        return bool(trans_m < GOOD_TRANS_M)
    return bool(tdir_deg is not None and tdir_deg < GOOD_TDIR_DEG)


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1e-2, iters: int = 50) -> np.ndarray:
    """L2-regularised logistic regression by Newton's method (bias not penalised)."""
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64)
    w = np.zeros(X.shape[1])
    reg = np.full(X.shape[1], l2)
    reg[0] = 0.0
    for _ in range(iters):
        p = 1 / (1 + np.exp(-X @ w))
        g = X.T @ (p - y) + reg * w
        H = (X * (p * (1 - p))[:, None]).T @ X + np.diag(reg) + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(H, g)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def fit_calibration(agreements: list[Agreement], good: list[bool], fitted_on: str,
                    base: Calibration | None = None) -> Calibration:
    """Fit both logistic models on measured agreements and their good/bad labels (pairs
    without depth features fit ``weights``; with, ``weights_depth``)."""
    base = base or Calibration()
    out = base.to_dict()
    for depth, key in ((False, "weights"), (True, "weights_depth")):
        rows = [(features(a, depth), g) for a, g in zip(agreements, good) if uses_depth_features(a) == depth]
        n, n_good = len(rows), sum(g for _, g in rows)
        if n >= 20 and 0 < n_good < n:
            out[key] = fit_logistic(np.array([r[0] for r in rows]), np.array([r[1] for r in rows])).tolist()
        elif n >= 20:  # all bad (or all good): a constant, the rule of succession's rate
            p = (n_good + 1) / (n + 2)
            out[key] = [float(np.log(p / (1 - p)))] + [0.0] * (len(rows[0][0]) - 1)
    out["fitted_on"] = fitted_on
    return Calibration.from_dict(out)
