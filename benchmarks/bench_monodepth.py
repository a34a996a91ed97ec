"""Pose accuracy under simulated monocular depth (issue 5).

Pairs (self-contained parsing, data read from ../shared/data, never copied):
- ``icl_nuim_livingroom1``: frames i, i+gap with gap cycling 10/20/30, clean depth
  (PNG mm), pose from ``pseudo_gt_open3d_reconstruction.log`` (camera-to-world, about
  2 mm accurate), K fx=fy=525, cx=319.5, cy=239.5.
- ``tum/fr1_xyz``: the 15 pairs of ``pairs_gt.txt`` (T_0to1 = cam1_from_cam0), depth
  PNG / 5000, official intrinsics and distortion (the estimator undistorts keypoints and depth).

Every pair is matched once with SIFT; the solvers then run on the same matches with:
- the true depth maps (rigid3d, PnP, monodepth), and
- simulated monocular depth: ``degrade_depth`` with its default (the issue's protocol:
  a per-image scale in [0.85, 1.15] and a smooth +-5% field), seeds fixed per pair and view.

Usage::

    python benchmarks/bench_monodepth.py [--data ../shared/data] [--max-pairs N]

Writes benchmarks/results/monodepth.json and monodepth.md.
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def icl_pairs(root: Path, max_pairs: int | None, step: int = 4):
    from twoview.datasets.base import PairSample
    from twoview.geometry import Camera, Pose

    d = root / "icl_nuim_livingroom1"
    lines = [ln.split() for ln in (d / "pseudo_gt_open3d_reconstruction.log").read_text().splitlines() if ln.strip()]
    poses = {}
    for k in range(0, len(lines), 5):
        idx = int(lines[k][0])
        poses[idx] = np.array([[float(v) for v in row] for row in lines[k + 1 : k + 5]])
    cam = Camera(525.0, 525.0, 319.5, 239.5, 640, 480)
    gaps = (10, 20, 30)
    out = []
    for j, i in enumerate(range(0, 211, step)):
        gap = gaps[j % 3]
        if i + gap not in poses or i not in poses:
            continue
        T = np.linalg.inv(poses[i + gap]) @ poses[i]
        out.append(
            PairSample(
                f"icl/{i:05d}-{i + gap:05d}", d / "color" / f"{i:05d}.jpg", d / "color" / f"{i + gap:05d}.jpg",
                cam, cam, Pose.from_matrix(T),
                d / "depth_clean" / f"{i:05d}.png", d / "depth_clean" / f"{i + gap:05d}.png", 1000.0,
                {"gap": gap, "dataset": "icl_nuim_livingroom1"},
            )
        )
    return out[:max_pairs] if max_pairs else out


def tum_pairs(root: Path, max_pairs: int | None):
    from twoview.datasets.base import PairSample
    from twoview.geometry import Camera, Pose

    d = root / "tum" / "fr1_xyz"
    nums = [ln.split() for ln in (d / "intrinsics.txt").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    fx, fy, cx, cy = (float(v) for v in nums[0])
    dist = tuple(float(v) for v in nums[1])  # k1 k2 p1 p2 k3: the estimator undistorts
    cam = Camera(fx, fy, cx, cy, 640, 480, dist=dist)
    out = []
    for ln in (d / "pairs_gt.txt").read_text().splitlines():
        if not ln.strip() or ln.startswith("#"):
            continue
        f = ln.split()
        T = np.array([float(v) for v in f[4:20]]).reshape(4, 4)
        out.append(
            PairSample(
                f"tum/{Path(f[0]).stem}-{Path(f[1]).stem}", d / f[0], d / f[1], cam, cam, Pose.from_matrix(T),
                d / f[2], d / f[3], 5000.0, {"dataset": "tum_fr1_xyz"},
            )
        )
    return out[:max_pairs] if max_pairs else out


def run(args) -> dict:
    from twoview.config import EstimatorConfig
    from twoview.depth.degrade import DepthDegradation, degrade_depth
    from twoview.estimator import estimate_relative_pose
    from twoview.io.images import load_image
    from twoview.matching import get_matcher
    from twoview.metrics import pose_errors
    from twoview.solvers.common import sample_depth

    root = Path(args.data)
    datasets = {"icl_nuim_livingroom1": icl_pairs(root, args.max_pairs, args.icl_step), "tum_fr1_xyz": tum_pairs(root, args.max_pairs)}
    matcher = get_matcher(EstimatorConfig().matcher)
    degr = DepthDegradation()

    def est(mode, m, s, d0, d1):
        cfg = EstimatorConfig.from_dict({"solver": {"mode": mode}})
        return estimate_relative_pose(s.image0, s.image1, s.camera0, s.camera1, d0, d1, cfg, matches=m)

    def mono(m, s, d0, d1):
        return est("monodepth", m, s, d0, d1)

    methods = {
        "rigid3d / true depth": lambda m, s, T, D: est("rigid3d", m, s, *T),
        "pnp / true depth": lambda m, s, T, D: est("pnp", m, s, *T),
        "monodepth / true depth": lambda m, s, T, D: mono(m, s, *T),
        "pnp / simulated mono": lambda m, s, T, D: est("pnp", m, s, *D),
        "rigid3d / simulated mono": lambda m, s, T, D: est("rigid3d", m, s, *D),
        "monodepth / simulated mono": lambda m, s, T, D: mono(m, s, *D),
    }
    rows = []
    for ds, samples in datasets.items():
        for s, draw in ((s, k) for s in samples for k in range(args.draws)):
            if draw == 0:
                im0, im1 = load_image(s.image0), load_image(s.image1)
                m = matcher.match(im0, im1)
                T = s.load_depths()
            seed = zlib.crc32(s.pair_id.encode()) + 1000 * draw
            D = tuple(degrade_depth(d, degr, seed=seed + v) for v, d in enumerate(T))
            scales = [info["scale"] for _, info in D]
            D = tuple(d for d, _ in D)
            base = float(np.linalg.norm(s.cam1_from_cam0.t))
            # the simulated maps' actual mean scale over the matched points (global scale
            # times the smooth field there): geometric mean over both views
            logs = []
            for dd, tt, kk in ((D[0], T[0], m.kpts0), (D[1], T[1], m.kpts1)):
                a, b = sample_depth(dd, kk), sample_depth(tt, kk)
                ok = np.isfinite(a) & np.isfinite(b)
                logs.append(float(np.median(np.log(a[ok] / b[ok]))) if ok.any() else 0.0)
            mean_scale = float(np.exp(np.mean(logs)))
            for name, fn in methods.items():
                t0 = time.perf_counter()
                r = fn(m, s, T, D)
                ms = (time.perf_counter() - t0) * 1e3
                e = pose_errors(r.cam1_from_cam0 if r.success else None, s.cam1_from_cam0, metric=True)
                # diagnostic only (the solver cannot know it): error once the simulated maps'
                # mean scale at the matches is divided out, i.e. what is left besides the
                # scale that no photo can reveal
                oracle = float("nan")
                if r.success and "simulated" in name:
                    oracle = float(np.linalg.norm(r.cam1_from_cam0.t / mean_scale - s.cam1_from_cam0.t))
                rows.append({
                    "dataset": ds, "pair": s.pair_id, "draw": draw, "method": name, "success": r.success,
                    "solver": r.solver, "baseline_m": base, "sim_scales": scales,
                    "rot_deg": e["rot_deg"], "trans_m": e["trans_m"], "time_ms": ms, "trans_m_scale_oracle": oracle,
                    "sim_mean_scale_at_matches": mean_scale,
                    "relative_scale": r.info.get("relative_scale") if r.success else None,
                    "reason": r.reason,
                })
            print(f"{s.pair_id} draw {draw}: baseline {base:.3f} m, scales {scales[0]:.3f}/{scales[1]:.3f}, matches {len(m)}", flush=True)
    return summarize(rows, datasets, degr)


def summarize(rows, datasets, degr) -> dict:
    summary = {}
    for ds in datasets:
        for name in dict.fromkeys(r["method"] for r in rows):
            rr = [r for r in rows if r["dataset"] == ds and r["method"] == name]
            npairs = len({r["pair"] for r in rr})
            if not rr:
                continue
            tm = np.array([r["trans_m"] for r in rr], float)
            rd = np.array([r["rot_deg"] for r in rr], float)
            rel = np.array([r["trans_m"] / max(r["baseline_m"], 1e-9) for r in rr], float)
            summary.setdefault(ds, {})[name] = {
                "pairs": npairs,
                "runs": len(rr),
                "failures": int(sum(not r["success"] for r in rr)),
                "median_trans_m": float(np.median(tm)),
                "median_trans_rel_baseline": float(np.median(rel)),
                "median_rot_deg": float(np.median(rd)),
                "median_time_ms": float(np.median([r["time_ms"] for r in rr])),
                "median_trans_m_scale_oracle": float(np.median([r["trans_m_scale_oracle"] for r in rr])),
                "median_baseline_m": float(np.median([r["baseline_m"] for r in rr])),
            }
    floors = {}
    for ds in datasets:
        rr = [r for r in rows if r["dataset"] == ds and r["method"] == "monodepth / simulated mono"]
        # what even an exact direction would leave: the maps' mean-scale error times the baseline
        floors[ds] = float(np.median([abs(r["sim_mean_scale_at_matches"] - 1) * r["baseline_m"] for r in rr])) if rr else float("nan")
    checks = {}
    for ds, s in summary.items():
        mono_sim = s["monodepth / simulated mono"]["median_trans_m"]
        true_ref = s["rigid3d / true depth"]["median_trans_m"]
        pnp_sim = s["pnp / simulated mono"]["median_trans_m"]
        mono_true = s["monodepth / true depth"]["median_trans_m"]
        checks[ds] = {
            "ratio_mono_sim_to_true_depth": mono_sim / true_ref,
            "ratio_mono_sim_to_mono_true_depth": mono_sim / mono_true,
            "within_2x_of_true_depth": bool(mono_sim <= 2 * true_ref),
            "ratio_mono_sim_to_pnp_sim": mono_sim / pnp_sim,
            "scale_floor_m": floors[ds],
            "ratio_scale_floor_to_true_depth": floors[ds] / true_ref,
        }
    return {"protocol": {"degradation": degr.to_dict(), "matcher": "sift (default MatcherConfig)"},
            "summary": summary, "checks": checks, "rows": rows}


def markdown(res: dict) -> str:
    lines = ["# Pose under simulated monocular depth", "",
             f"Degradation (simulated monocular depth): {res['protocol']['degradation']} (per image, seeded per pair and draw); "
             "matcher: SIFT; 'true depth' = the datasets' depth maps. Errors are medians over all runs.", "",
             "| dataset | method | pairs (runs) | fail | median t err (m) | median t err / baseline | median rot err (deg) | "
             "t err with the maps' mean scale divided out (m, diagnostic) | median time (ms) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for ds, s in res["summary"].items():
        for name, v in s.items():
            lines.append(f"| {ds} | {name} | {v['pairs']} ({v['runs']}) | {v['failures']} | {v['median_trans_m']:.4f} | "
                         f"{v['median_trans_rel_baseline']:.3f} | {v['median_rot_deg']:.3f} | "
                         f"{v['median_trans_m_scale_oracle']:.4f} | {v['median_time_ms']:.0f} |".replace("nan", "-"))
    lines += ["", "| dataset | monodepth(sim) / rigid3d(true) | within 2x | monodepth(sim) / monodepth(true) | "
              "monodepth(sim) / pnp(sim) | scale floor (m): median abs(mean scale - 1) x baseline | floor / rigid3d(true) |",
              "|---|---|---|---|---|---|---|"]
    for ds, c in res["checks"].items():
        lines.append(f"| {ds} | {c['ratio_mono_sim_to_true_depth']:.2f} | {c['within_2x_of_true_depth']} | "
                     f"{c['ratio_mono_sim_to_mono_true_depth']:.2f} | "
                     f"{c['ratio_mono_sim_to_pnp_sim']:.2f} | {c['scale_floor_m']:.4f} | {c['ratio_scale_floor_to_true_depth']:.2f} |")
    lines += ["", "The scale floor is the error a solver with an exact direction would still have: the simulated "
              "maps' own mean scale at the matched points (global factor times the smooth field) is off by "
              "abs(mean scale - 1), and no photo can reveal it."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--max-pairs", type=int, default=None, help="per dataset")
    p.add_argument("--draws", type=int, default=3, help="simulated-depth draws (seeds) per pair")
    p.add_argument("--icl-step", type=int, default=4, help="first-frame step of the ICL pairs")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "monodepth"))
    p.add_argument("--from-json", metavar="FILE", help="re-summarise the rows of an earlier run's JSON")
    args = p.parse_args(argv)
    try:
        import cv2

        cv2.setNumThreads(1)
    except Exception:
        pass
    if args.from_json:  # re-summarise stored rows (no recomputation)
        import json

        old = json.loads(Path(args.from_json).read_text())
        from twoview.depth.degrade import DepthDegradation

        rows = []
        for r in old["rows"]:  # JSON has null for NaN/inf: failures are inf, diagnostics NaN
            r = dict(r)
            for k in ("rot_deg", "trans_m", "trans_m_scale_oracle"):
                if r.get(k) is None:
                    r[k] = float("inf") if (not r["success"] and k != "trans_m_scale_oracle") else float("nan")
            rows.append(r)
        res = summarize(rows, list(dict.fromkeys(r["dataset"] for r in rows)), DepthDegradation.from_dict(old["protocol"]["degradation"]))
    else:
        res = run(args)
    from twoview.io.atomic import atomic_write_json, atomic_write_text
    from twoview.result import _jsonable

    def _round(o):
        if isinstance(o, float):
            return float(f"{o:.5g}")
        if isinstance(o, dict):
            return {k: _round(v) for k, v in o.items()}
        if isinstance(o, list):
            return [_round(v) for v in o]
        return o

    atomic_write_json(args.out + ".json", _round(_jsonable(res)))
    md = markdown(res)
    atomic_write_text(args.out + ".md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
