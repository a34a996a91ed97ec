"""Metric functions against hand-computed values."""

import math

import numpy as np
import pytest

from twoview.geometry.pose import Pose
from twoview.geometry.rotation import so3_exp
from twoview.metrics import (
    pose_auc,
    pose_auc_histogram,
    pose_errors,
    pose_precision,
    rotation_error_deg,
    summarize_errors,
    translation_angle_deg,
    translation_error_m,
)

INF = float("inf")


def test_rotation_error_is_the_geodesic_angle():
    R = so3_exp(np.radians(10.0) * np.array([0, 0, 1.0]))
    assert rotation_error_deg(R, np.eye(3)) == pytest.approx(10.0, abs=1e-9)
    R2 = so3_exp(np.radians(25.0) * np.array([1.0, 0, 0]))
    assert rotation_error_deg(R2, R2) == pytest.approx(0.0, abs=1e-6)
    # composition: error of R_a vs R_b about the same axis is the angle difference
    Ra = so3_exp(np.radians(40.0) * np.array([0, 1.0, 0]))
    Rb = so3_exp(np.radians(15.0) * np.array([0, 1.0, 0]))
    assert rotation_error_deg(Ra, Rb) == pytest.approx(25.0, abs=1e-9)


def test_translation_angle_folded_only_when_asked():
    t = np.array([1.0, 0, 0])
    assert translation_angle_deg(-t, t) == pytest.approx(180.0)
    assert translation_angle_deg(-t, t, fold=True) == pytest.approx(0.0)
    assert translation_angle_deg(np.array([1.0, 1.0, 0]), t) == pytest.approx(45.0)
    assert translation_angle_deg(np.array([-1.0, 1.0, 0]), t, fold=True) == pytest.approx(45.0)
    assert math.isnan(translation_angle_deg(t, np.zeros(3)))  # no ground-truth direction
    assert translation_error_m(np.array([0.0, 3, 4]), np.zeros(3)) == pytest.approx(5.0)


def test_auc_hand_computed():
    # recall curve: 0 at 0, 1/4 at 1, 2/4 at 3, flat to the threshold
    # @5: (0.125 + 0.75 + 1.0) / 5 ; @10: (0.125 + 0.75 + 3.5) / 10
    a5, a10 = pose_auc([1.0, 3.0, INF, float("nan")], (5.0, 10.0))
    assert a5 == pytest.approx(0.375)
    assert a10 == pytest.approx(0.4375)


def test_auc_all_failures_zero_and_perfect_one():
    assert pose_auc([INF] * 7) == [0.0, 0.0, 0.0]
    assert pose_auc([0.0] * 7) == pytest.approx([1.0, 1.0, 1.0])
    assert pose_auc([]) == [0.0, 0.0, 0.0]
    assert pose_auc_histogram([INF] * 3) == 0.0
    assert pose_auc_histogram([0.0] * 3) == 1.0


def test_auc_refuses_what_is_not_an_error_list():
    with pytest.raises(ValueError, match="thresholds must be positive"):
        pose_auc([1.0], [0.0])
    with pytest.raises(ValueError, match=">= 0"):
        pose_auc([1.0, -0.5])
    with pytest.raises(ValueError, match="1-D"):
        pose_auc_histogram(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="max_threshold"):
        pose_auc_histogram([1.0], 0)
    assert pose_auc([np.nan, 1.0]) == pose_auc([np.inf, 1.0])  # NaN is a failure


def test_auc_histogram_is_a_different_number():
    # thresholds 1, 2, 3: fractions below are 1/3, 2/3, 2/3
    assert pose_auc_histogram([0.5, 1.5, INF], 3) == pytest.approx(5 / 9)
    e = [0.5, 1.5, 4.0, 12.0]
    assert pose_auc_histogram(e, 30) != pytest.approx(pose_auc(e, (30.0,))[0])


def test_precision():
    assert pose_precision([1, 6, 1, INF], [0.1, 0.1, 0.3, INF]) == pytest.approx(0.25)
    assert pose_precision([1, 1], [0.04, 0.06], max_rot_deg=2, max_trans_m=0.05) == pytest.approx(0.5)


def test_pose_errors_direction_only_never_metric():
    gt = Pose(np.eye(3), [0.0, 0, 2.0])
    est = Pose(np.eye(3), [0.0, 0, -1.0])  # opposite direction, unit scale
    e = pose_errors(est, gt, metric=False)
    assert e["trans_deg"] == pytest.approx(0.0)
    assert math.isnan(e["trans_m"])
    e = pose_errors(est, gt, metric=True)
    assert e["trans_deg"] == pytest.approx(180.0) and e["trans_m"] == pytest.approx(3.0)
    f = pose_errors(None, gt, metric=False)
    assert f["max_deg"] == INF and math.isnan(f["trans_m"])


def _rec(rot, tdeg, tm, ok=True, ms=10.0):
    return {"rot_deg": rot, "trans_deg": tdeg, "trans_m": tm, "max_deg": max(rot, tdeg), "success": ok, "ms": ms}


def test_summary_fields_and_direction_only():
    recs = [_rec(1.0, 2.0, 0.1), _rec(3.0, 1.0, 0.3, ms=30.0), _rec(INF, INF, INF, ok=False, ms=20.0)]
    s = summarize_errors(recs, metric=True, precision_thresholds=((0.25, 5.0), (0.5, 10.0)))
    assert s["num_pairs"] == 3
    assert s["success_rate"] == pytest.approx(2 / 3)
    assert s["median_rot_deg"] == pytest.approx(3.0)
    assert s["median_trans_m"] == pytest.approx(0.3)
    assert s["precision_25cm_5deg"] == pytest.approx(1 / 3)
    assert s["precision_50cm_10deg"] == pytest.approx(2 / 3)
    assert s["median_ms"] == pytest.approx(20.0)
    assert s["auc5"] == pytest.approx(pose_auc([2.0, 3.0, INF], (5.0,))[0])
    d = summarize_errors(recs, metric=False)
    assert d["median_trans_m"] is None and d["precision_25cm_5deg"] is None
    assert d["auc5"] == s["auc5"]


def test_summary_all_fail_and_perfect():
    s = summarize_errors([_rec(INF, INF, INF, ok=False)] * 5, metric=True)
    assert s["auc5"] == s["auc10"] == s["auc20"] == s["auc30_hist"] == 0.0 and s["success_rate"] == 0.0
    assert s["precision_25cm_5deg"] == 0.0 and s["median_rot_deg"] == INF
    p = summarize_errors([_rec(0.0, 0.0, 0.0)] * 5, metric=True)
    assert p["auc5"] == p["auc10"] == p["auc20"] == p["auc30_hist"] == pytest.approx(1.0)
    assert p["precision_25cm_5deg"] == 1.0


# --- the reference implementations, restated from their published definitions ---------------
def _loftr_error_auc(errors, thresholds):
    """LoFTR's ``error_auc``: recall on a linspace from (0, 0), trapezoid cut at each threshold."""
    errors = [0.0] + sorted(errors)
    recall = list(np.linspace(0, 1, len(errors)))
    out = []
    for thr in thresholds:
        last = int(np.searchsorted(errors, thr))
        out.append(np.trapezoid(recall[:last] + [recall[last - 1]], errors[:last] + [thr]) / thr)
    return out


def _vggt_calculate_auc_np(max_errors, max_threshold):
    """PoseDiffusion/VGGT ``calculate_auc_np`` on precomputed max errors."""
    hist, _ = np.histogram(max_errors, bins=np.arange(max_threshold + 1))
    return float(np.mean(np.cumsum(hist.astype(float) / len(max_errors))))


def test_auc_equals_the_reference_implementations():
    rng = np.random.default_rng(3)
    for n in (1, 2, 17, 300):
        e = np.abs(rng.normal(scale=12.0, size=n))
        e[rng.random(n) < 0.2] = INF  # failures
        e[:1] = 10.0  # exactly on a threshold
        assert pose_auc(e, (5.0, 10.0, 20.0)) == pytest.approx(_loftr_error_auc(list(e), (5.0, 10.0, 20.0)), abs=1e-12)
        for T in (3, 5, 15, 30):
            assert pose_auc_histogram(e, T) == pytest.approx(_vggt_calculate_auc_np(e, T), abs=1e-12)


def test_auc_histogram_bin_edges():
    # integer errors: k counts below thresholds k+1.., and exactly T counts (closed last bin)
    assert pose_auc_histogram([1.0], 3) == pytest.approx(2 / 3)  # below 2 and 3, not below 1
    assert pose_auc_histogram([3.0], 3) == pytest.approx(1 / 3)  # only the closed last bin
    assert pose_auc_histogram([3.0 + 1e-9], 3) == 0.0
    assert pose_auc_histogram([float("nan"), 0.0], 1) == pytest.approx(0.5)


def test_precision_is_strict_as_map_free():
    assert pose_precision([5.0, 4.999], [0.1, 0.1]) == pytest.approx(0.5)
    assert pose_precision([1.0, 1.0], [0.25, 0.2499]) == pytest.approx(0.5)


def test_zero_translation_estimate_is_the_worst_direction_not_nan():
    t = np.array([0.0, 0, 1.0])
    assert translation_angle_deg(np.zeros(3), t) == 180.0
    assert translation_angle_deg(np.zeros(3), t, fold=True) == 90.0
    assert math.isnan(translation_angle_deg(t, np.zeros(3)))  # pure rotation: no direction to compare
    R = so3_exp(np.radians(2.0) * np.array([1.0, 0, 0]))
    e = pose_errors(Pose(R, np.zeros(3)), Pose(np.eye(3), t), metric=True)
    assert e["max_deg"] == 180.0 and e["trans_m"] == pytest.approx(1.0)
    e = pose_errors(Pose(R, t), Pose(np.eye(3), np.zeros(3)), metric=False)
    assert e["max_deg"] == pytest.approx(2.0) and math.isnan(e["trans_deg"])


def test_summary_cpu_time_median():
    recs = [{**_rec(1.0, 1.0, 0.1), "cpu_ms": c} for c in (5.0, 7.0, float("nan"))]
    assert summarize_errors(recs, metric=True)["median_cpu_ms"] == pytest.approx(6.0)
    assert math.isnan(summarize_errors([_rec(1.0, 1.0, 0.1)], metric=True)["median_cpu_ms"])
