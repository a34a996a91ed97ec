"""Fit the calibrated confidence (twoview.pipeline.confidence) on bench runs of real data.

    python benchmarks/calibrate_confidence.py RUN_DIR[:METHOD] ... [--write]

Each RUN_DIR is a ``twoview bench`` output folder holding a run of METHOD (default: both
``default:config={"confidence":{"calibrated":false,"min_confidence":0.0}}``, the default
pipeline with its raw scores and no threshold, so every pose it finds is kept, and the
same with ``"refine":{"method":"none"}``, the front end's poses). For every successful
prediction the stages' evidence (:func:`twoview.pipeline.confidence.evidence`; the
stage's raw score from ``info["confidence_raw"]``) is paired with whether the pose is
right: within 5 deg and 10 cm of the ground truth (direction only: 5 deg rotation and
5 deg translation direction).

A logistic model per kind of result (:func:`twoview.pipeline.confidence.model_kind`: a
refined metric pose, a front-end metric pose, a direction), L2-regularised, standardised
features, is scored leave-one-suite-out (each suite's pairs predicted by a model fitted on
the others): reliability diagram (10 bins), Brier score, AUROC, and the success rate and
the count of wrong successes (over 10 deg or 25 cm) at each min_confidence. ``--write``
refits on all suites and writes ``src/twoview/pipeline/confidence_model.json``; the report
goes to ``benchmarks/results/confidence.{json,md}`` and a reliability plot beside them.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from twoview.geometry.pose import Pose  # noqa: E402
from twoview.metrics import pose_auc  # noqa: E402
from twoview.pipeline import PipelineConfig  # noqa: E402
from twoview.pipeline.confidence import FEATURES, MODEL_PATH, evidence, model_kind, sigma_kind  # noqa: E402
from twoview.regress.confidence import fit_logistic as newton_logistic  # noqa: E402
from twoview.result import PoseResult  # noqa: E402

DEFAULT_METHODS = ('default:config={"confidence":{"calibrated":false,"min_confidence":0.0}}',
                   'default:config={"refine":{"method":"none"},"confidence":{"calibrated":false,"min_confidence":0.0}}')
KINDS = (("metric", True), ("metric_front_end", True), ("direction", False))
THRESHOLDS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7)


def cache_dir(run: Path, method: str) -> Path:
    from twoview.bench.runner import cache_path

    return cache_path(run, method, "x").parent


def load_run(run: Path, method: str) -> list[dict]:
    """One row per pair: features, label, errors, success."""
    rows = {}
    with open(run / "per_pair.csv") as f:
        for r in csv.DictReader(f):
            if r["method"] == method:
                rows[r["pair_id"]] = r
    if not rows:
        raise SystemExit(f"{run}: no rows of {method!r} in per_pair.csv (run the bench with it first)")
    out = []
    for pid, r in rows.items():
        rec = json.loads((cache_dir(run, method) / f"{pid}.json").read_text())
        ok = r["success"] == "True"
        row = {"suite": run.name, "method": method, "pair": pid, "success": ok, "metric": r["metric"] == "True"}
        if ok:
            res = record_result(rec)
            rot, tm, tdeg = float(r["rot_deg"]), float(r["trans_m"] or "nan"), float(r["trans_deg"])
            f = evidence(res)
            row.update(features=f, kind=model_kind(f, res.metric), rot=rot, trans_m=tm, trans_deg=tdeg,
                       label=bool(rot < 5 and (tm < 0.10 if res.metric else tdeg < 5)),
                       wrong=bool(rot > 10 or (tm > 0.25 if res.metric else tdeg > 10)),
                       sigma_rot=(rec.get("sigmas") or {}).get("rotation_sigma_deg"),
                       sigma_t=(rec.get("sigmas") or {}).get("translation_sigma"),
                       sigma_kind=sigma_kind(res))
        out.append(row)
    return out


def record_result(rec: dict) -> PoseResult:
    """The PoseResult a bench cache record describes (what :func:`evidence` reads), with
    the stage's raw score (a run with the calibrated confidence on records the calibrated one)."""
    cov = rec.get("covariance")
    raw = (rec.get("info") or {}).get("confidence_raw", rec["confidence"])
    return PoseResult(success=True, cam1_from_cam0=Pose.from_matrix(np.asarray(rec["cam1_from_cam0"])), metric=rec["metric"],
                      solver=rec["solver"], num_matches=rec["num_matches"], num_inliers=rec["num_inliers"],
                      confidence=raw, info=rec.get("info") or {}, motion=rec.get("motion", "unknown"),
                      covariance=None if cov is None else np.asarray(cov, float))


def dominant_kind(rows: list[dict], method: str) -> str | None:
    """The kind of most of ``method``'s successful results."""
    kinds = [r["kind"] for r in rows if r["method"] == method and r["success"]]
    return max(set(kinds), key=kinds.count) if kinds else None


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1.0) -> dict:
    """L2-regularised logistic regression on standardised features (Newton's method)."""
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale[scale < 1e-9] = 1.0
    Z = (X - mean) / scale
    A = np.column_stack([np.ones(len(Z)), Z])
    w = newton_logistic(A, y, l2)  # the regressor's calibration uses the same fit
    # a feature that never varied in the fit (no recovered or regressed pose among the runs):
    # results with another value are left to their stage's own score, not extrapolated
    constant = {f: float(mean[i]) for i, f in enumerate(FEATURES) if X[:, i].std() < 1e-9}
    return {"features": list(FEATURES), "mean": mean.tolist(), "scale": scale.tolist(), "intercept": float(w[0]),
            "coef": w[1:].tolist(), "constant_in_fit": constant}


def predict(model: dict, X: np.ndarray) -> np.ndarray:
    Z = (X - np.asarray(model["mean"])) / np.asarray(model["scale"])
    return 1 / (1 + np.exp(-(model["intercept"] + Z @ np.asarray(model["coef"]))))


def auroc(p: np.ndarray, y: np.ndarray) -> float:
    pos, neg = p[y], p[~y]
    if not len(pos) or not len(neg):
        return float("nan")
    r = np.argsort(np.argsort(np.concatenate([pos, neg]))) + 1
    return float((r[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def reliability(p: np.ndarray, y: np.ndarray, bins: int = 10) -> list[dict]:
    edges = np.linspace(0, 1, bins + 1)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        s = (p >= lo) & ((p < hi) if hi < 1 else (p <= hi))
        if s.any():
            out.append({"bin": [float(lo), float(hi)], "n": int(s.sum()), "mean_confidence": float(p[s].mean()),
                        "fraction_right": float(y[s].mean())})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="RUN_DIR[:METHOD]")
    ap.add_argument("--l2", type=float, default=1.0)
    ap.add_argument("--write", action="store_true", help="write the fitted model into the package")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "confidence"))
    a = ap.parse_args(argv)
    rows = []
    for spec in a.runs:
        run, _, method = spec.partition(":")
        for m in [method] if method else DEFAULT_METHODS:
            rows += load_run(Path(run), m)
    report = {"suites": sorted({r["suite"] for r in rows}), "methods": sorted({r["method"] for r in rows}),
              "pairs": len({(r["suite"], r["pair"]) for r in rows}), "kinds": {}}
    models = {}
    for kind, metric in KINDS:
        ok = [r for r in rows if r["success"] and r["kind"] == kind]
        if len(ok) < 20:
            continue
        # the runs this kind of result mostly comes from; their failures count against its success rate
        methods = {m for m in {r["method"] for r in ok} if dominant_kind(rows, m) == kind}
        runs = [r for r in rows if r["method"] in methods and (not r["success"] or r["kind"] == kind)]
        X = np.array([[r["features"][k] for k in FEATURES] for r in ok])
        y = np.array([r["label"] for r in ok])
        suite = np.array([r["suite"] for r in ok])
        held = np.zeros(len(ok))
        for s in np.unique(suite):  # leave one suite out
            m = fit_logistic(X[suite != s], y[suite != s], a.l2)
            held[suite == s] = predict(m, X[suite == s])
        raw = X[:, FEATURES.index("raw")]
        wrong = np.array([r["wrong"] for r in ok])
        n_all = len(runs)  # every pair of the suites: failures count against the success rate
        sweep = [{"min_confidence": t, "success_rate": float(np.mean(held >= t) * len(ok) / max(n_all, 1)),
                  "wrong_successes": int(np.sum((held >= t) & wrong)),
                  "right_fraction_of_successes": float(y[held >= t].mean()) if (held >= t).any() else None}
                 for t in THRESHOLDS]
        cover = {}
        for key, err, sig in (("rotation", "rot", "sigma_rot"), ("translation", "trans_m", "sigma_t")):
            # a direction's translation error is an angle, not metres: no translation coverage for it
            use = [r for r in ok if r.get(sig) and np.isfinite(r[err])]
            e = np.array([r[err] for r in use], float)
            sg = np.array([r[sig] for r in use], float)
            if len(e):
                cover[key] = {"n": int(len(e)), "within_1_sigma": float(np.mean(e <= sg)),
                              "within_2_sigma": float(np.mean(e <= 2 * sg)), "median_error_over_sigma": float(np.median(e / sg))}
        # per suite, the default threshold applied to the held-out confidence (every pair of the suite:
        # a failure or a pose below the threshold counts as an infinite error in the AUC)
        t0 = PipelineConfig().confidence.min_confidence
        per_suite = {}
        for s in sorted({r["suite"] for r in runs}):
            allr = [r for r in runs if r["suite"] == s]
            kept = [(r, h) for r, h in zip(ok, held) if r["suite"] == s and h >= t0]
            errs = [max(r["rot"], r["trans_deg"]) for r, _ in kept] + [np.inf] * (len(allr) - len(kept))
            per_suite[s] = {"pairs": len(allr), "success_rate": len(kept) / max(len(allr), 1),
                            "wrong_successes": int(sum(r["wrong"] for r, _ in kept)),
                            "auc5": float(pose_auc(errs, (5.0,))[0]),
                            "p_5cm_2deg": float(np.mean([r["trans_m"] <= 0.05 and r["rot"] <= 2 for r, _ in kept] +
                                                        [False] * (len(allr) - len(kept))))}
        report["kinds"][kind] = {
            "n": len(ok), "methods": sorted(methods), "fraction_right": float(y.mean()), "min_confidence": t0, "per_suite_held_out": per_suite,
            "held_out": {"brier": float(np.mean((held - y) ** 2)), "auroc": auroc(held, y), "reliability": reliability(held, y)},
            "raw_score": {"brier": float(np.mean((raw - y) ** 2)), "auroc": auroc(raw, y), "reliability": reliability(raw, y)},
            "min_confidence_sweep": sweep, "sigma_coverage": cover,
        }
        models[kind] = fit_logistic(X, y, a.l2)
    # sigma scales: per kind of result, the factor putting 68 % of the rotation errors within one sigma
    scales, cover = {}, {}
    ok = [r for r in rows if r["success"] and r.get("sigma_rot")]
    for kind in sorted({r["sigma_kind"] for r in ok}):
        sel = [r for r in ok if r["sigma_kind"] == kind]
        if len(sel) < 20:
            continue
        ratio = np.array([r["rot"] / r["sigma_rot"] for r in sel])
        k = float(np.quantile(ratio, 0.68))
        scales[kind] = k
        e_t = np.array([r["trans_m"] for r in sel if r["metric"] and r.get("sigma_t")])
        s_t = np.array([r["sigma_t"] for r in sel if r["metric"] and r.get("sigma_t")])
        cover[kind] = {"n": len(sel), "scale": k, "raw_within_1_sigma": float(np.mean(ratio <= 1)),
                       "scaled_rotation_within_1_sigma": float(np.mean(ratio <= k)),
                       "scaled_rotation_within_2_sigma": float(np.mean(ratio <= 2 * k)),
                       "scaled_translation_within_1_sigma": float(np.mean(e_t <= k * s_t)) if len(e_t) else None,
                       "scaled_translation_within_2_sigma": float(np.mean(e_t <= 2 * k * s_t)) if len(e_t) else None}
    report["sigma_scale"] = cover
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from twoview.io.atomic import atomic_write_json, atomic_write_text

    atomic_write_json(out.with_suffix(".json"), report)
    atomic_write_text(out.with_suffix(".md"), markdown(report))
    plot(report, out.with_suffix(".png"))
    if a.write:
        atomic_write_json(MODEL_PATH, {"fitted_on": report["suites"], "pairs": report["pairs"], **models,
                                       "sigma_scale": scales})
        print(f"wrote {MODEL_PATH}")
    print(markdown(report))
    return 0


def _sigma_lines(report: dict) -> list[str]:
    c = report.get("sigma_scale") or {}
    if not c:
        return []
    lines = ["## Sigmas", "",
             "The covariance of a result (its sigmas) counts the measurement noise of its own residuals only; "
             "the real errors are larger. Per kind of result, the factor that puts 68 % of the rotation errors "
             "within one sigma is fitted here and applied by the pipeline (`info[\"covariance_scale\"]`).", "",
             "| result | pairs | scale | raw: rotation within 1 sigma | scaled: rotation within 1 / 2 sigma | "
             "scaled: translation within 1 / 2 sigma |", "|---|---:|---:|---:|---:|---:|"]
    for kind, v in c.items():
        tr = "-" if v["scaled_translation_within_1_sigma"] is None else \
            f"{100 * v['scaled_translation_within_1_sigma']:.0f} % / {100 * v['scaled_translation_within_2_sigma']:.0f} %"
        lines.append(f"| {kind} | {v['n']} | {v['scale']:.1f} | {100 * v['raw_within_1_sigma']:.0f} % | "
                     f"{100 * v['scaled_rotation_within_1_sigma']:.0f} % / {100 * v['scaled_rotation_within_2_sigma']:.0f} % | {tr} |")
    return lines + [""]


def markdown(report: dict) -> str:
    lines = ["# Confidence calibration", "",
             f"Suites: {', '.join(report['suites'])} ({report['pairs']} pairs). A pose is right within 5 deg and 10 cm "
             "(direction only: 5 deg and 5 deg); held-out = each suite predicted by a model fitted on the others. "
             "One model per kind of result (`twoview.pipeline.confidence.model_kind`): `metric`, a metric pose the "
             "mixtures refined (the default); `metric_front_end`, a metric pose as the front end gave it (`--refine "
             "none`); `direction`, a pose without depth. A refined and an unrefined pose carry different evidence, so "
             "one model for both read a missing refinement as a failed one.", ""]
    for kind, k in report["kinds"].items():
        h, r = k["held_out"], k["raw_score"]
        lines += [f"## {kind} ({k['n']} successful estimates, {100 * k['fraction_right']:.1f} % right)", "",
                  "From: " + ", ".join(f"`{m}`" for m in k.get("methods", [])) + ".", "",
                  "| score | Brier | AUROC |", "|---|---:|---:|",
                  f"| calibrated (held-out) | {h['brier']:.3f} | {h['auroc']:.3f} |",
                  f"| stages' raw score | {r['brier']:.3f} | {r['auroc']:.3f} |", "",
                  "Reliability (held-out):", "", "| confidence bin | pairs | mean confidence | fraction right |", "|---|---:|---:|---:|"]
        lines += [f"| {b['bin'][0]:.1f}-{b['bin'][1]:.1f} | {b['n']} | {b['mean_confidence']:.2f} | {b['fraction_right']:.2f} |"
                  for b in h["reliability"]]
        if k.get("per_suite_held_out"):
            lines += ["", f"Per suite at the default min_confidence {k['min_confidence']:g}, each suite's confidence from the "
                      "model fitted on the others (all pairs counted; failures and rejected poses as infinite errors):", "",
                      "| suite | pairs | success | wrong successes (>10 deg or >25 cm) | AUC@5 | P(5 cm, 2 deg) |",
                      "|---|---:|---:|---:|---:|---:|"]
            lines += [f"| {s} | {v['pairs']} | {100 * v['success_rate']:.1f} % | {v['wrong_successes']} | {100 * v['auc5']:.1f} | "
                      f"{100 * v['p_5cm_2deg']:.1f} % |" for s, v in k["per_suite_held_out"].items()]
        lines += ["", "| min_confidence | success rate | wrong successes (>10 deg or >25 cm) | right among successes |",
                  "|---:|---:|---:|---:|"]
        for sw in k["min_confidence_sweep"]:
            right = sw["right_fraction_of_successes"]
            right_txt = "-" if right is None else f"{100 * right:.1f} %"
            lines.append(f"| {sw['min_confidence']:.2f} | {100 * sw['success_rate']:.1f} % | {sw['wrong_successes']} | {right_txt} |")
        if k["sigma_coverage"]:
            lines += ["", "Sigma coverage (errors within the reported 1 / 2 sigma):", ""]
            lines += [f"- {n}: {100 * c['within_1_sigma']:.0f} % / {100 * c['within_2_sigma']:.0f} % of {c['n']} "
                      f"(median error / sigma {c['median_error_over_sigma']:.2f})" for n, c in k["sigma_coverage"].items()]
        lines.append("")
    lines += _sigma_lines(report)
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    for kind, k in report["kinds"].items():
        rel = k["held_out"]["reliability"]
        ax.plot([b["mean_confidence"] for b in rel], [b["fraction_right"] for b in rel], "o-", label=f"{kind} (held-out)")
    ax.set_xlabel("confidence")
    ax.set_ylabel("fraction of poses within 5 deg / 10 cm")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
