"""How low the depth agreement of right poses goes, what a floor on it removes, and what
the depth's confirmation keeps.

    python benchmarks/study_depth_agreement.py RUN_DIR ... [--floors 0.1 0.15 0.2] [--out PREFIX]

Each RUN_DIR is a ``twoview bench`` run of the two calibration methods of
``benchmarks/calibrate_confidence.py`` (the default pipeline with raw scores and no
threshold, with and without the refinement) on RGB-D data with sensor depth, made by a
version that records ``info["depth_consistency"]`` (:mod:`twoview.depth.consistency`).
For every metric pose it reads the agreement (the share of the overlapping depth within
3 % of the other view's surface, the worse direction), and reports per suite the right
poses' lowest agreement, 1 % quantile and median, and per floor how many poses the
pipeline's rule (:func:`twoview.pipeline.confidence.depth_contradiction`, confidence 0
under ``ConfidenceConfig.min_depth_agreement``) would take from the successes at the
default ``min_confidence`` with the shipped model: right ones lost, wrong ones (over
10 deg or 25 cm) removed. Then the other side
(:func:`twoview.pipeline.confidence.depth_confirms`): how many poses the depth confirms,
how many of them are right and wrong, and which of them the model scores under
``min_confidence`` (kept at ``ConfidenceConfig.depth_confirmed_confidence``). Writes
PREFIX.json and PREFIX.md (default ``benchmarks/results/depth_agreement``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import calibrate_confidence as cc  # noqa: E402

from twoview.io.atomic import atomic_write_text  # noqa: E402
from twoview.pipeline import PipelineConfig  # noqa: E402
from twoview.pipeline.confidence import calibrated_probability, depth_confirms  # noqa: E402


def load(runs: list[Path]) -> list[dict]:
    rows = []
    for run in runs:
        for method in cc.DEFAULT_METHODS:
            for r in cc.load_run(run, method):
                if not (r["success"] and r["metric"]):
                    continue
                rec = json.loads((cc.cache_dir(run, method) / f"{r['pair']}.json").read_text())
                dc = (rec.get("info") or {}).get("depth_consistency")
                if dc is None:  # no overlap to judge, or a run made before the test was recorded
                    continue
                p = calibrated_probability(r["features"], True)
                if "sensor_depth" not in dc:  # recorded before the key existed: these runs are of sensor depth
                    dc["sensor_depth"] = True
                r.update(agreement=float(dc["agreement"]), violation=float(dc["violation"]),
                         confidence=r["features"]["raw"] if p is None else p,
                         confirmed=depth_confirms(cc.record_result(rec)))
                rows.append(r)
    return rows


def study(rows: list[dict], floors: list[float]) -> dict:
    t0 = PipelineConfig().confidence.min_confidence
    suites = sorted({r["suite"] for r in rows})
    right = {s: np.array([r["agreement"] for r in rows if r["suite"] == s and r["label"]]) for s in suites}
    out = {"poses": len(rows), "min_confidence": t0, "right_agreement": {
        s: {"n": int(len(a)), "min": float(a.min()), "q01": float(np.quantile(a, 0.01)), "median": float(np.median(a))}
        for s, a in right.items() if len(a)}, "floors": []}
    succ = [r for r in rows if r["confidence"] >= t0]
    for f in floors:
        cut = [r for r in succ if r["agreement"] < f]
        out["floors"].append({"floor": f, "successes": len(succ), "right_lost": sum(r["label"] for r in cut),
                              "wrong_removed": sum(r["wrong"] for r in cut),
                              "wrong_successes": sum(r["wrong"] for r in succ),
                              "other_removed": sum(not r["label"] and not r["wrong"] for r in cut)})
    for kind in sorted({r["kind"] for r in rows}):
        conf = [r for r in rows if r["kind"] == kind and r["confirmed"]]
        low = [r for r in conf if r["confidence"] < t0]
        out.setdefault("confirmed", {})[kind] = {
            "poses": sum(r["kind"] == kind for r in rows), "confirmed": len(conf), "right": sum(r["label"] for r in conf),
            "wrong": sum(r["wrong"] for r in conf), "model_below_min_confidence": [
                {"suite": r["suite"], "pair": r["pair"], "rot_deg": r["rot"], "trans_m": r["trans_m"], "right": r["label"],
                 "wrong": r["wrong"], "confidence": r["confidence"], "agreement": r["agreement"],
                 "violation": r["violation"]} for r in low]}
    out["wrong_successes"] = [{"suite": r["suite"], "pair": r["pair"], "kind": r["kind"], "rot_deg": r["rot"],
                               "agreement": r["agreement"], "violation": r["violation"], "confidence": r["confidence"]}
                              for r in succ if r["wrong"]]
    return out


def markdown(rep: dict) -> str:
    lines = ["# Depth agreement of right and wrong poses (the confidence's depth check)", "",
             "    python benchmarks/study_depth_agreement.py " + " ".join(rep.get("runs", [])), "",
             f"{rep['poses']} metric poses with depth agreement, both calibration methods.", "",
             "| suite | right poses | lowest agreement | 1 % quantile | median |", "|---|---:|---:|---:|---:|"]
    for s, a in rep["right_agreement"].items():
        lines.append(f"| {s} | {a['n']} | {a['min']:.3f} | {a['q01']:.3f} | {a['median']:.3f} |")
    lines += ["", f"Successes at min_confidence {rep['min_confidence']:g} (the shipped model):", "",
              "| floor | successes | wrong successes | wrong removed | right lost | others removed |",
              "|---:|---:|---:|---:|---:|---:|"]
    for f in rep["floors"]:
        lines.append(f"| {f['floor']:g} | {f['successes']} | {f['wrong_successes']} | {f['wrong_removed']} | "
                     f"{f['right_lost']} | {f['other_removed']} |")
    lines += ["", "Poses the depth confirms (at least 20 % of each view shared, under 5 % of it in free space, at least 50 % on the surface):", "",
              "| kind | poses | confirmed | right | wrong | the model under min_confidence |", "|---|---:|---:|---:|---:|---:|"]
    for kind, c in rep["confirmed"].items():
        lines.append(f"| {kind} | {c['poses']} | {c['confirmed']} | {c['right']} | {c['wrong']} | "
                     f"{len(c['model_below_min_confidence'])} |")
    lines += ["", "Confirmed poses the model scores under min_confidence:", "",
              "| kind | suite | pair | rotation error (deg) | translation error (m) | right | confidence | agreement | violation |",
              "|---|---|---|---:|---:|---|---:|---:|---:|"]
    for kind, c in rep["confirmed"].items():
        for w in c["model_below_min_confidence"]:
            verdict = "yes" if w["right"] else ("wrong" if w["wrong"] else "no (not wrong)")
            lines.append(f"| {kind} | {w['suite']} | {w['pair']} | {w['rot_deg']:.2f} | {w['trans_m']:.3f} | {verdict} | "
                         f"{w['confidence']:.3f} | {w['agreement']:.3f} | {w['violation']:.3f} |")
    lines += ["", "Wrong successes (over 10 deg or 25 cm) at that threshold:", "",
              "| suite | kind | rotation error (deg) | agreement | violation | confidence |", "|---|---|---:|---:|---:|---:|"]
    for w in sorted(rep["wrong_successes"], key=lambda w: w["agreement"]):
        lines.append(f"| {w['suite']} | {w['kind']} | {w['rot_deg']:.1f} | {w['agreement']:.3f} | {w['violation']:.3f} | "
                     f"{w['confidence']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--floors", nargs="+", type=float, default=[0.1, 0.15, 0.2, 0.3])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "depth_agreement"))
    a = ap.parse_args(argv)
    rep = study(load(a.runs), a.floors)
    rep["runs"] = [str(r) for r in a.runs]
    atomic_write_text(Path(a.out + ".json"), json.dumps(rep, indent=1))
    md = markdown(rep)
    atomic_write_text(Path(a.out + ".md"), md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
