"""Scoring a run's cache against the ground truth of its pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from twoview.bench.runner import _read_record, cache_path
from twoview.errors import InputError
from twoview.geometry.pose import Pose
from twoview.metrics import pose_errors, summarize_errors

PER_PAIR_COLUMNS = (
    "method", "pair_id", "frame0", "frame1", "frame_gap", "gt_baseline_m", "gt_rotation_deg",
    "success", "metric", "solver", "rot_deg", "trans_deg", "trans_m", "max_deg", "ms",
    "cpu_ms", "init_reused", "num_matches", "num_inliers", "reason",
)


def score_record(rec: dict, sample, method_metric: bool) -> dict:
    """Per-pair errors of one cached prediction.

    A method is scored on metric translation error only if it claims metric output
    (``method_metric``) and the dataset's ground truth is metric. Such a method that
    returns a direction-only pose on a pair gets ``trans_m = inf`` there (no metric
    answer); direction-only poses have their translation angle folded.
    """
    scored_metric = bool(method_metric and sample.meta.get("metric_gt", True))
    gt = sample.cam1_from_cam0
    est = None
    if rec.get("success") and rec.get("cam1_from_cam0") is not None:
        est = Pose.from_matrix(np.asarray(rec["cam1_from_cam0"], dtype=np.float64))
    if est is None:
        err = pose_errors(None, gt, metric=scored_metric)
    else:
        pred_metric = bool(rec.get("metric"))
        err = pose_errors(est, gt, metric=pred_metric and scored_metric)
        if scored_metric and not pred_metric:
            err["trans_m"] = float("inf")
    m = sample.meta
    return {
        "method": rec["method"],
        "pair_id": sample.pair_id,
        "frame0": m.get("frame0", ""),
        "frame1": m.get("frame1", ""),
        "frame_gap": m["frame_gap"] if m.get("frame_gap") is not None else "",
        "gt_baseline_m": float(np.linalg.norm(gt.t)),
        "gt_rotation_deg": float(m.get("rotation_deg", np.nan)),
        "success": bool(rec.get("success")),
        "metric": bool(rec.get("metric")),
        "solver": rec.get("solver", ""),
        **err,
        "ms": float(rec["ms"]) if rec.get("ms") is not None else float("nan"),
        "cpu_ms": float(rec["cpu_ms"]) if rec.get("cpu_ms") is not None else float("nan"),
        "init_reused": " ".join(rec.get("init_reused") or {}),
        "num_matches": int(rec.get("num_matches") or 0),
        "num_inliers": int(rec.get("num_inliers") or 0),
        "reason": rec.get("reason", ""),
    }


def score_run(out: Path, pairs, methods: dict, precision_thresholds) -> tuple[list[dict], dict]:
    """Read every (method, pair) cache file and summarise.

    Returns:
        (per-pair rows, summary dict ``{"methods": {name: metrics}, "num_pairs": n}``).
    """
    rows: list[dict] = []
    summary: dict = {"num_pairs": len(pairs), "methods": {}}
    for name, method in methods.items():
        mrows = []
        for p in pairs:
            path = cache_path(out, name, p.pair_id)
            rec = _read_record(path)
            if rec is None:
                raise InputError(str(path), "missing or unreadable prediction; re-run to complete the cache")
            mrows.append(score_record(rec, p, method.metric))
        metric = bool(method.metric and all(p.meta.get("metric_gt", True) for p in pairs))
        s = summarize_errors(mrows, metric, tuple(tuple(t) for t in precision_thresholds))
        s["metric"] = metric
        s["uses_depth"] = list(method.uses_depth)
        s["num_errors"] = sum(1 for r in mrows if str(r["reason"]).startswith("exception:"))
        summary["methods"][name] = s
        rows.extend(mrows)
    return rows, summary
