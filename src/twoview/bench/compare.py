"""Paired comparison of two methods of one benchmark run: the difference of each summary
metric, with a bootstrap interval over pairs.

Both methods ran on the same pairs, so their errors are paired: a hard pair is hard for
both. Resampling the pairs with replacement and recomputing every metric on both methods
(the same resample for both) gives the sampling spread of the difference B - A; its
percentile interval says whether the pairs support the difference or whether another draw
of pairs of the same kind could reverse it. Failures count as infinite errors, as in the
summary (:func:`twoview.metrics.summarize_errors`).
"""

from __future__ import annotations

import numpy as np

from twoview.errors import InputError
from twoview.metrics import median_finite_or_inf, pose_auc, pose_precision, precision_key

#: resamples of the pairs (2000: the interval's ends move by < 0.1 AUC points between seeds)
RESAMPLES = 2000


def _columns(rows: list[dict]) -> dict[str, np.ndarray]:
    return {k: np.array([float(r[k]) for r in rows], dtype=np.float64) for k in ("max_deg", "rot_deg", "trans_m")}


def _metrics(c: dict[str, np.ndarray], idx: np.ndarray, metric: bool, thresholds) -> dict[str, float]:
    mx = c["max_deg"][idx]
    a5, a10, a20 = pose_auc(mx, (5.0, 10.0, 20.0))
    out = {"auc5": a5, "auc10": a10, "auc20": a20, "median_rot_deg": median_finite_or_inf(c["rot_deg"][idx])}
    if metric:
        out["median_trans_m"] = median_finite_or_inf(c["trans_m"][idx])
        for m, d in thresholds:
            out[precision_key(m, d)] = pose_precision(c["rot_deg"][idx], c["trans_m"][idx], d, m)
    return out


def paired_differences(rows_a: list[dict], rows_b: list[dict], metric: bool = True,
                       precision_thresholds=((0.25, 5.0),), resamples: int = RESAMPLES,
                       confidence: float = 0.95, seed: int = 0) -> dict:
    """B - A for each summary metric, with a paired bootstrap interval over pairs.

    Args:
        rows_a, rows_b: per-pair rows of the two methods (as ``per_pair.csv`` holds them:
            ``pair_id``, ``max_deg``, ``rot_deg``, ``trans_m``; inf for failures), the same
            pairs in any order.
        metric: compare the metric keys too (median translation, precisions); both
            methods must be scored metrically.
        precision_thresholds: ``(metres, degrees)`` pairs.
        resamples: bootstrap resamples of the pairs.
        confidence: coverage of the percentile interval.
        seed: of the resampling (the result is deterministic).

    Returns:
        ``{"num_pairs", "resamples", "confidence", "metrics": {key: {"a", "b", "diff",
        "low", "high"}}}`` with AUCs as fractions in [0, 1]. ``diff`` is None where either
        value is infinite (a median over more than half failures); ``low`` / ``high`` are
        None where fewer than half of the resamples give a finite difference.

    Raises:
        InputError: the two methods were not scored on the same pairs, or on none.
    """
    by_a = {r["pair_id"]: r for r in rows_a}
    by_b = {r["pair_id"]: r for r in rows_b}
    if set(by_a) != set(by_b) or len(by_a) != len(rows_a) or len(by_b) != len(rows_b):
        raise InputError("--compare", f"the two methods were scored on different pairs ({len(by_a)} and "
                         f"{len(by_b)} pair ids, {len(set(by_a) & set(by_b))} shared)")
    if not by_a:
        raise InputError("--compare", "no pairs to compare")
    if not 0 < confidence < 1 or resamples < 1:
        raise InputError("--compare", f"need 0 < confidence < 1 and resamples >= 1, got {confidence}, {resamples}")
    ids = sorted(by_a)
    ca, cb = _columns([by_a[i] for i in ids]), _columns([by_b[i] for i in ids])
    n = len(ids)
    thresholds = [tuple(t) for t in precision_thresholds]
    every = np.arange(n)
    point_a, point_b = _metrics(ca, every, metric, thresholds), _metrics(cb, every, metric, thresholds)
    rng = np.random.default_rng(seed)
    draws = {k: np.empty(resamples) for k in point_a}
    for s in range(resamples):
        idx = rng.integers(0, n, n)
        ma, mb = _metrics(ca, idx, metric, thresholds), _metrics(cb, idx, metric, thresholds)
        for k in draws:
            draws[k][s] = mb[k] - ma[k] if np.isfinite(ma[k]) and np.isfinite(mb[k]) else np.nan
    tail = 100 * (1 - confidence) / 2
    out = {}
    for k in point_a:
        a, b = point_a[k], point_b[k]
        d = draws[k][np.isfinite(draws[k])]
        lo, hi = (np.percentile(d, [tail, 100 - tail]) if d.size >= resamples / 2 else (None, None))
        out[k] = {"a": a, "b": b, "diff": b - a if np.isfinite(a) and np.isfinite(b) else None,
                  "low": None if lo is None else float(lo), "high": None if hi is None else float(hi)}
    return {"num_pairs": n, "resamples": resamples, "confidence": confidence, "metrics": out}


def comparison_table(comparisons: list[dict]) -> str:
    """Markdown: one row per comparison, each cell ``diff [low, high]`` (AUC and precision
    in points of %, medians in degrees / metres)."""
    if not comparisons:
        return ""
    keys = ["auc5", "auc10", "auc20", "median_rot_deg", "median_trans_m"]
    keys += sorted({k for c in comparisons for k in c["metrics"] if k.startswith("precision_")})
    names = {"auc5": "AUC@5", "auc10": "AUC@10", "auc20": "AUC@20", "median_rot_deg": "med. rot (°)",
             "median_trans_m": "med. t (m)"}
    c0 = comparisons[0]
    lines = [f"Paired differences B - A, {round(100 * c0['confidence'])} % bootstrap interval over pairs "
             f"({c0['resamples']} resamples; an interval that excludes 0 is a difference the pairs support):", "",
             "| A | B | pairs | " + " | ".join(names.get(k, k.replace("precision_", "prec. ").replace("_", ","))
                                           for k in keys) + " |",
             "|---|---|---:|" + "---:|" * len(keys)]

    def cell(m: dict | None, k: str) -> str:
        if m is None or m["diff"] is None:
            return "–"
        scale, fmt = (100.0, "+.1f") if k.startswith(("auc", "precision_")) else (1.0, "+.3f")
        body = format(scale * m["diff"], fmt)
        if m["low"] is not None:
            body += f" [{format(scale * m['low'], fmt)}, {format(scale * m['high'], fmt)}]"
        return body

    for c in comparisons:
        lines.append(f"| {c['a']} | {c['b']} | {c['num_pairs']} | "
                     + " | ".join(cell(c["metrics"].get(k), k) for k in keys) + " |")
    return "\n".join(lines) + "\n"
