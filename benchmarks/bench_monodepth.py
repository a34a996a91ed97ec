"""Pose accuracy under simulated monocular depth (issue 5), several draws per pair.

The pairs are those of the ``twoview bench`` runs in benchmarks/results/monodepth.md
(same dataset readers and selection; data read from ../shared/data, never copied):

- ``icl_nuim_livingroom1``: Open3D pseudo ground truth, frame gaps 10/30/60, every 15th frame;
- ``tum/fr1_xyz``: the 15 pairs of its 6 frames (official intrinsics and distortion).

Every pair is matched once per matcher; the solvers then run on the same matches with
the true depth maps and with simulated monocular depth (``degrade_depth``: a per-image
scale in [0.85, 1.15] and a smooth +-5% field for the "issue" protocol). Draw 0 uses the
seeds of ``twoview bench --depth-noise`` (``pair_seed(pair_id)``, view 1 + 1), so it is
the bench's corruption; draws k > 0 add 1000 k.

Besides the solvers, two reference numbers that no solver can beat on average:

- ``oracle``: the true-depth rigid3d pose with its translation multiplied by the simulated
  maps' own mean scale at the matches (the geometric mean over both views of the median
  ratio of simulated to true depth): an exact-as-true-depth direction with the scale the
  maps carry, which no photo can reveal;
- ``scale floor``: abs(mean scale - 1) x baseline.

With ``--gmm`` the GMM refinement runs after the rigid3d (true depth) and monodepth
solvers (true and simulated depth), as ``twoview bench``'s ``gmm@sift-rigid3d`` and
``gmm-mono@sift-monodepth`` do, for the photo-only pipeline's ratios.

Usage::

    python benchmarks/bench_monodepth.py [--data ../shared/data] [--matchers sift,xfeat] [--draws 20]
        [--protocol issue --protocol harsh] [--max-pairs N] [--gmm]

Writes benchmarks/results/monodepth_draws.json (summary) and monodepth_draws.md; ``--rows FILE``
keeps every run's row for ``--from-rows FILE`` (re-summarise without recomputing). Medians count
failures as infinite errors (as ``twoview bench`` does). Times are CPU seconds of the
solver stage (matching excluded) and wall seconds; the load average is recorded.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

PROTOCOLS = {
    "issue": {},  # DepthDegradation defaults: scale in [0.85, 1.15], smooth +-5% field
    "harsh": {"smooth_amplitude": 0.10, "edge_blur_px": 2.0},
}


def dataset_pairs(root: Path, max_pairs: int | None):
    from twoview.datasets import get_dataset

    icl = get_dataset("icl_nuim", root / "icl_nuim_livingroom1", trajectory="pseudo_gt_in_gt_world_frame.log",
                      gaps=[10, 30, 60], stride=15)
    tum = get_dataset("tum", root / "tum" / "fr1_xyz", gaps=[1, 2, 3, 4, 5])
    out = {"icl_nuim_livingroom1": icl.pairs(), "tum_fr1_xyz": tum.pairs()}
    return {k: (v[:max_pairs] if max_pairs else v) for k, v in out.items()}


def mean_scale_at_matches(D, T, matches) -> float:
    """Geometric mean over both views of the median ratio simulated / true depth at the matches."""
    from twoview.solvers.common import sample_depth

    logs = []
    for dd, tt, kk in ((D[0], T[0], matches.kpts0), (D[1], T[1], matches.kpts1)):
        a, b = sample_depth(dd, kk), sample_depth(tt, kk)
        ok = np.isfinite(a) & np.isfinite(b)
        logs.append(float(np.median(np.log(a[ok] / b[ok]))) if ok.any() else 0.0)
    return float(np.exp(np.mean(logs)))


# --gmm: the GMM refinement after a solver (method name, preset), as `twoview bench`'s
# gmm@sift-rigid3d and gmm-mono@sift-monodepth.
GMM_AFTER = {"rigid3d / true depth": ("gmm @ rigid3d", "default"),
             "monodepth / true depth": ("gmm-mono @ monodepth", "monocular"),
             "monodepth / simulated mono": ("gmm-mono @ monodepth", "monocular")}


def run(args) -> dict:
    from twoview.bench.runner import pair_seed
    from twoview.config import EstimatorConfig
    from twoview.depth.degrade import DepthDegradation, degrade_depth
    from twoview.estimator import estimate_relative_pose
    from twoview.io.images import load_image
    from twoview.matching import get_matcher
    from twoview.metrics import pose_errors

    from twoview.gmm import preset_config, refine_relative_pose

    gmm_cfg = {"default": preset_config("default"), "monocular": preset_config("monocular")}
    datasets = dataset_pairs(Path(args.data), args.max_pairs)
    protocols = {p: DepthDegradation.from_dict(PROTOCOLS[p]) for p in args.protocol}

    def cfg(mode, **mono):
        return EstimatorConfig.from_dict({"solver": {"mode": mode, **({"monodepth": mono} if mono else {})}})

    true_methods = {"rigid3d / true depth": cfg("rigid3d"), "pnp / true depth": cfg("pnp"),
                    "monodepth / true depth": cfg("monodepth")}
    sim_methods = {"pnp / simulated mono": cfg("pnp"), "rigid3d / simulated mono": cfg("rigid3d"),
                   "monodepth (pose-only refinement) / simulated mono": cfg("monodepth", joint_refinement=False),
                   "monodepth / simulated mono": cfg("monodepth")}
    rows = []

    def record(ds, matcher, proto, s, draw, name, res, cpu, wall, mean_scale=None):
        gt = s.cam1_from_cam0
        pose = res.cam1_from_cam0 if res is not None and res.success else None
        e = pose_errors(pose, gt, metric=True)
        oracle = float("nan")
        if pose is not None and mean_scale is not None:
            oracle = float(np.linalg.norm(pose.t / mean_scale - gt.t))
        rows.append({
            "dataset": ds, "matcher": matcher, "protocol": proto, "pair": s.pair_id, "draw": draw, "method": name,
            "success": pose is not None, "baseline_m": float(np.linalg.norm(gt.t)), "rot_deg": e["rot_deg"],
            "trans_m": e["trans_m"], "trans_deg": e["trans_deg"], "cpu_ms": cpu, "wall_ms": wall,
            "sim_mean_scale_at_matches": mean_scale, "trans_m_scale_divided": oracle,
            "relative_scale": res.info.get("relative_scale") if pose is not None else None,
            "sigma_rel": res.info.get("sigma_rel") if pose is not None else None,
            "reason": "" if res is None else res.reason,
        })

    for matcher_name in args.matchers:
        matcher = get_matcher(EstimatorConfig.from_dict({"matcher": {"name": matcher_name}}).matcher)
        for ds, samples in datasets.items():
            for s in samples:
                m = matcher.match(load_image(s.image0), load_image(s.image1))
                T = s.load_depths()

                def est(c, D):
                    t0, w0 = time.process_time(), time.perf_counter()
                    r = estimate_relative_pose(s.image0, s.image1, s.camera0, s.camera1, D[0], D[1], c, matches=m)
                    return r, (time.process_time() - t0) * 1e3, (time.perf_counter() - w0) * 1e3

                def refine(r, D, preset, cpu, wall):
                    """GMM refinement from the solver's pose; time includes the solver's."""
                    if not r.success:
                        return r, cpu, wall
                    t0, w0 = time.process_time(), time.perf_counter()
                    g = refine_relative_pose(s.image0, s.image1, s.camera0, s.camera1, D[0], D[1],
                                             init=r.cam1_from_cam0, config=gmm_cfg[preset])
                    return g, cpu + (time.process_time() - t0) * 1e3, wall + (time.perf_counter() - w0) * 1e3

                true_res = {}
                for name, c in true_methods.items():
                    r, cpu, wall = est(c, T)
                    true_res[name] = r
                    record(ds, matcher_name, "true", s, 0, name, r, cpu, wall)
                    if args.gmm and name in GMM_AFTER:
                        g_name, preset = GMM_AFTER[name]
                        record(ds, matcher_name, "true", s, 0, g_name + " / true depth", *refine(r, T, preset, cpu, wall))
                for proto, degr in protocols.items():
                    for draw in range(args.draws):
                        seed = pair_seed(s.pair_id) + 1000 * draw
                        D = (degrade_depth(T[0], degr, seed)[0], degrade_depth(T[1], degr, seed + 1)[0])
                        sc = mean_scale_at_matches(D, T, m)
                        for name, c in sim_methods.items():
                            r, cpu, wall = est(c, D)
                            record(ds, matcher_name, proto, s, draw, name, r, cpu, wall, sc)
                            if args.gmm and name in GMM_AFTER:
                                g_name, preset = GMM_AFTER[name]
                                record(ds, matcher_name, proto, s, draw, g_name + " / simulated mono",
                                       *refine(r, D, preset, cpu, wall), sc)
                        # the reference: true-depth rigid3d direction with the maps' own scale
                        ref = true_res["rigid3d / true depth"]
                        if ref.success:
                            ref = dataclasses.replace(ref, cam1_from_cam0=ref.cam1_from_cam0.scaled(sc))
                        record(ds, matcher_name, proto, s, draw, "oracle: rigid3d / true depth x maps' mean scale", ref, 0.0, 0.0, sc)
                print(f"{matcher_name} {s.pair_id}: {len(m)} matches", flush=True)
    return summarize(rows, {p: d.to_dict() for p, d in protocols.items()}, args)


_FLOAT_KEYS = ("rot_deg", "trans_m", "trans_deg", "trans_m_scale_divided")


def _median_inf(values) -> float:
    v = np.array([np.inf if (x is None or not np.isfinite(x)) else x for x in values], float)
    return float(np.median(v)) if len(v) else float("nan")


def _err(r) -> float:
    return r["trans_m"] if r["success"] and r["trans_m"] is not None and np.isfinite(r["trans_m"]) else np.inf


def paired(rows, ds, mt, proto, method, other, other_proto=None, boot=2000) -> dict:
    """``method`` against ``other`` on the same runs (pair, draw); ``other_proto`` (e.g. "true",
    one run per pair) compares every draw with that pair's one run.

    Returns the share of runs where ``method`` has the smaller error (runs where both fail are
    left out), the pairs whose median over draws is smaller, and a 90 % interval of the ratio of
    medians from a bootstrap over pairs (a pair keeps all its draws): the draws of one pair share
    its matches, so the pairs, not the runs, are the independent samples.
    """
    def table(name, pr):
        return {(r["pair"], r["draw"]): _err(r) for r in rows
                if (r["dataset"], r["matcher"], r["protocol"], r["method"]) == (ds, mt, pr, name)}

    a = table(method, proto)
    b = table(other, other_proto or proto)
    keys = sorted(a)
    ea = np.array([a[k] for k in keys])
    eb = np.array([b[k if other_proto is None else (k[0], 0)] for k in keys])
    both = np.isfinite(ea) | np.isfinite(eb)
    pairs = sorted({k[0] for k in keys})
    idx = {p: np.array([i for i, k in enumerate(keys) if k[0] == p]) for p in pairs}
    rng = np.random.default_rng(0)
    ratios = []
    for _ in range(boot):
        ii = np.concatenate([idx[p] for p in rng.choice(pairs, len(pairs))])
        ratios.append(np.median(ea[ii]) / np.median(eb[ii]))
    ratios = np.array(ratios)
    ratios = ratios[np.isfinite(ratios)]
    return {
        "wins_pct": float(100 * np.mean(ea[both] < eb[both])) if both.any() else float("nan"),
        "pairs_better": int(sum(np.median(ea[idx[p]]) < np.median(eb[idx[p]]) for p in pairs)),
        "pairs": len(pairs),
        "ratio_ci90": [float(np.percentile(ratios, 5)), float(np.percentile(ratios, 95))] if len(ratios) else [float("nan")] * 2,
    }


def summarize(rows, protocols, args) -> dict:
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["matcher"], r["protocol"], r["method"]), []).append(r)
    summary = []
    for (ds, mt, proto, name), rr in groups.items():
        ok = [r for r in rr if r["success"]]
        summary.append({
            "dataset": ds, "matcher": mt, "protocol": proto, "method": name,
            "pairs": len({r["pair"] for r in rr}), "runs": len(rr), "failures": len(rr) - len(ok),
            "median_trans_m": _median_inf([r["trans_m"] if r["success"] else None for r in rr]),
            "median_trans_rel_baseline": _median_inf([r["trans_m"] / r["baseline_m"] if r["success"] else None for r in rr]),
            "median_rot_deg": _median_inf([r["rot_deg"] if r["success"] else None for r in rr]),
            "median_trans_m_scale_divided": _median_inf([r["trans_m_scale_divided"] if r["success"] else None for r in rr])
            if proto != "true" else float("nan"),
            "median_sigma_rel": float(np.median([r["sigma_rel"] for r in ok if r["sigma_rel"] is not None]))
            if any(r["sigma_rel"] is not None for r in ok) else float("nan"),
            "median_cpu_ms": float(np.median([r["cpu_ms"] for r in rr])),
            "median_wall_ms": float(np.median([r["wall_ms"] for r in rr])),
        })
    checks = []
    get = {(s["dataset"], s["matcher"], s["protocol"], s["method"]): s["median_trans_m"] for s in summary}
    for ds, mt in dict.fromkeys((s["dataset"], s["matcher"]) for s in summary):
        true_r = get[(ds, mt, "true", "rigid3d / true depth")]
        true_m = get[(ds, mt, "true", "monodepth / true depth")]
        for proto in protocols:
            mono = get[(ds, mt, proto, "monodepth / simulated mono")]
            rr = [r for r in rows if (r["dataset"], r["matcher"], r["protocol"], r["method"]) == (ds, mt, proto, "monodepth / simulated mono")]
            floor = float(np.median([abs(r["sim_mean_scale_at_matches"] - 1) * r["baseline_m"] for r in rr]))
            checks.append({
                "dataset": ds, "matcher": mt, "protocol": proto,
                "mono_sim_over_rigid3d_true": mono / true_r, "mono_sim_over_mono_true": mono / true_m,
                "mono_sim_over_pnp_sim": mono / get[(ds, mt, proto, "pnp / simulated mono")],
                "oracle_over_rigid3d_true": get[(ds, mt, proto, "oracle: rigid3d / true depth x maps' mean scale")] / true_r,
                "scale_floor_m": floor, "floor_over_rigid3d_true": floor / true_r,
                "vs_pnp_sim": paired(rows, ds, mt, proto, "monodepth / simulated mono", "pnp / simulated mono"),
                "vs_rigid3d_true": paired(rows, ds, mt, proto, "monodepth / simulated mono", "rigid3d / true depth", "true"),
            })
            g_sim = get.get((ds, mt, proto, "gmm-mono @ monodepth / simulated mono"))
            if g_sim is not None:
                checks[-1].update({
                    "gmm_sim_over_rigid3d_true": g_sim / true_r,
                    "gmm_sim_over_gmm_true": g_sim / get[(ds, mt, "true", "gmm @ rigid3d / true depth")],
                    "gmm_sim_over_gmm_mono_true": g_sim / get[(ds, mt, "true", "gmm-mono @ monodepth / true depth")],
                    "gmm_sim_over_pnp_sim": g_sim / get[(ds, mt, proto, "pnp / simulated mono")],
                })
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {"protocols": protocols, "draws": args.draws, "matchers": args.matchers, "load_average_end": list(load),
            "summary": summary, "checks": checks, "rows": rows}


def markdown(res: dict) -> str:
    lines = ["# Pose under simulated monocular depth: several draws per pair", "",
             f"Protocols (simulated monocular depth, `DepthDegradation`): {res['protocols']}; {res['draws']} draws per pair "
             "(draw 0 = the corruption of `twoview bench --depth-noise`); 'true depth' = the datasets' depth maps, one run. "
             "Medians over all runs, failures counted as infinite. CPU / wall ms: the solver stage on given matches. "
             f"Load average at the end: {', '.join(f'{v:.1f}' for v in res['load_average_end'])}.", "",
             "| dataset | matcher | depth | method | pairs (runs) | fail | median t err (m) | t err / baseline | median rot err (deg) | "
             "t err, maps' mean scale divided out (m) | est. depth sigma | CPU ms | wall ms |",
             "|---|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s in res["summary"]:
        lines.append(
            f"| {s['dataset']} | {s['matcher']} | {s['protocol']} | {s['method']} | {s['pairs']} ({s['runs']}) | {s['failures']} | "
            f"{s['median_trans_m']:.4f} | {s['median_trans_rel_baseline']:.3f} | {s['median_rot_deg']:.3f} | "
            f"{s['median_trans_m_scale_divided']:.4f} | {s['median_sigma_rel']:.3f} | {s['median_cpu_ms']:.0f} | {s['median_wall_ms']:.0f} |"
            .replace("nan", "-"))
    lines += ["", "| dataset | matcher | protocol | monodepth(sim) / rigid3d(true) | monodepth(sim) / monodepth(true) | "
              "monodepth(sim) / pnp(sim) | oracle / rigid3d(true) | scale floor (m) | floor / rigid3d(true) |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for c in res["checks"]:
        lines.append(f"| {c['dataset']} | {c['matcher']} | {c['protocol']} | {c['mono_sim_over_rigid3d_true']:.2f} | "
                     f"{c['mono_sim_over_mono_true']:.2f} | {c['mono_sim_over_pnp_sim']:.2f} | {c['oracle_over_rigid3d_true']:.2f} | "
                     f"{c['scale_floor_m']:.4f} | {c['floor_over_rigid3d_true']:.2f} |")
    paired_checks = [c for c in res["checks"] if "vs_pnp_sim" in c]
    if paired_checks:
        lines += ["", "Paired over the same runs (the draws of a pair share its matches, so the pairs are the independent "
                  "samples): share of runs where monodepth on simulated depth has the smaller error, pairs whose median "
                  "over draws is smaller, and a 90 % interval of the ratio of medians (bootstrap over pairs).", "",
                  "| dataset | matcher | protocol | vs pnp(sim): runs won | pairs won | ratio 90 % interval | "
                  "vs rigid3d(true): runs won | pairs won | ratio 90 % interval |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
        for c in paired_checks:
            a, b = c["vs_pnp_sim"], c["vs_rigid3d_true"]
            lines.append(f"| {c['dataset']} | {c['matcher']} | {c['protocol']} | {a['wins_pct']:.0f} % | {a['pairs_better']}/{a['pairs']} | "
                         f"{a['ratio_ci90'][0]:.2f}-{a['ratio_ci90'][1]:.2f} | {b['wins_pct']:.0f} % | {b['pairs_better']}/{b['pairs']} | "
                         f"{b['ratio_ci90'][0]:.2f}-{b['ratio_ci90'][1]:.2f} |")
    gmm_checks = [c for c in res["checks"] if "gmm_sim_over_rigid3d_true" in c]
    if gmm_checks:
        lines += ["", "With the GMM refinement (`--gmm`; gmm-mono = monocular preset, relative scale between the "
                  "mixtures, after the monodepth solver): ratios of median metric translation errors.", "",
                  "| dataset | matcher | protocol | gmm-mono(sim) / rigid3d(true) | gmm-mono(sim) / gmm@rigid3d(true) | "
                  "gmm-mono(sim) / gmm-mono(true) | gmm-mono(sim) / pnp(sim) |", "|---|---|---|---:|---:|---:|---:|"]
        for c in gmm_checks:
            lines.append(f"| {c['dataset']} | {c['matcher']} | {c['protocol']} | {c['gmm_sim_over_rigid3d_true']:.2f} | "
                         f"{c['gmm_sim_over_gmm_true']:.2f} | {c['gmm_sim_over_gmm_mono_true']:.2f} | "
                         f"{c['gmm_sim_over_pnp_sim']:.2f} |")
    lines += ["", "oracle: the true-depth rigid3d pose with the simulated maps' own mean scale applied (what a solver "
              "with the true-depth direction would get); scale floor: median of abs(mean scale - 1) x baseline. Neither "
              "can be beaten on average from the photos: the two maps' shared scale error is invisible in them."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--matchers", default="sift,xfeat", help="comma-separated matcher names")
    p.add_argument("--draws", type=int, default=20, help="simulated-depth draws (seeds) per pair (4 left the ICL median "
                   "within +-10 %% of its 20-draw value)")
    p.add_argument("--protocol", action="append", choices=sorted(PROTOCOLS), help="repeatable; default: issue")
    p.add_argument("--max-pairs", type=int, default=None, help="per dataset")
    p.add_argument("--gmm", action="store_true", help="also the GMM refinement after rigid3d / monodepth (see GMM_AFTER)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "monodepth_draws"))
    p.add_argument("--rows", metavar="FILE", help="also write every run's row (JSON) here, e.g. runs/monodepth_draws_rows.json")
    p.add_argument("--from-rows", metavar="FILE", help="re-summarise the rows of an earlier run (no recomputation)")
    args = p.parse_args(argv)
    args.matchers = [m for m in args.matchers.split(",") if m]
    args.protocol = args.protocol or ["issue"]
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import cv2

        cv2.setNumThreads(1)
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    if args.from_rows:
        import json

        old = json.loads(Path(args.from_rows).read_text())
        args.draws, args.matchers = old["draws"], old["matchers"]
        rows = [{k: (float("nan") if v is None and k in _FLOAT_KEYS else v) for k, v in r.items()} for r in old["rows"]]
        res = summarize(rows, old["protocols"], args)
        res["load_average_end"] = old["load_average_end"]
    else:
        res = run(args)
    from twoview.io.atomic import atomic_write_json, atomic_write_text
    from twoview.result import _jsonable

    def _round(o):
        if isinstance(o, float):
            return float(f"{o:.5g}") if np.isfinite(o) else None
        if isinstance(o, dict):
            return {k: _round(v) for k, v in o.items()}
        if isinstance(o, list):
            return [_round(v) for v in o]
        return o

    if args.rows:
        atomic_write_json(args.rows, _round(_jsonable(res)))
    atomic_write_json(args.out + ".json", _round(_jsonable({k: v for k, v in res.items() if k != "rows"})))
    md = markdown(res)
    atomic_write_text(args.out + ".md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
