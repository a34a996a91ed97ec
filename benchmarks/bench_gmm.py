"""Benchmark: SIFT front end vs front end + Gaussian-mixture alignment (and peers).

Pairs: icl_nuim_livingroom1 (frames i, i+gap for gap in 10/30/60, every ``--step``
frames; pseudo-GT trajectory, clean depth) and tum/fr1_xyz (all 15 pairs_gt.txt pairs,
Kinect depth). Every method starts from the same SIFT rigid3d pose:

- ``front``: SIFT + rigid3d (twoview.estimate_relative_pose with both depths)
- ``gmm``: front + mixture alignment at default settings (XFeat features)
- ablation ``gmm-geom`` (isotropic, no colour/features), ``gmm+cov``, ``gmm+cov+col``
- ``o3d-cicp``: Open3D multi-scale coloured ICP as in its tutorial (voxels 4/2/1 cm,
  correspondence distance = voxel, 50/30/14 iterations), if open3d is installed
- ``gicp``: small_gicp GICP (2 cm voxels), if small_gicp is installed
- TUM images are undistorted first (k1 = 0.26; depth remapped with nearest sampling), the
  same input for every method
- degraded depth (``--degrade``, on by default): both depth maps corrupted with
  twoview.depth.degrade.degrade_depth default parameters (global scale in [0.85, 1.15],
  smooth +-5 % field; seeds 2k and 2k+1 for pair k); front end recomputed on them, then
  ``gmm``, ``gmm+scale`` (relative scale estimated) and ``gmm-mono`` (scale plus the
  monocular preset ``MONO``: 30 % depth std along viewing rays, 30 % occlusion slack).

A front-end failure is a failure for every method that refines it (infinite error).
Writes benchmarks/results/gmm.json and gmm.md. Run:

    python benchmarks/bench_gmm.py            # about 5-10 min on 2 shared cores
    python benchmarks/bench_gmm.py --quick    # 2 pairs per gap, 5 TUM pairs
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

from twoview import estimate_relative_pose
from twoview.depth.degrade import degrade_depth
from twoview.geometry import Camera, Pose
from twoview.gmm import GMMConfig, refine_relative_pose
from twoview.gmm.bench_methods import MONO_PRESET
from twoview.io.atomic import atomic_write_json, atomic_write_text
from twoview.io.depth import load_depth
from twoview.io.images import load_image
from twoview.metrics import pose_errors, summarize_errors

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def icl_pairs(gaps, step):
    root = DATA / "icl_nuim_livingroom1"
    lines = [ln for ln in (root / "pseudo_gt_open3d_reconstruction.log").read_text().splitlines() if ln.strip()]
    world_from_cam = {}
    for k in range(0, len(lines), 5):
        i = int(lines[k].split()[0])
        world_from_cam[i] = np.array([[float(v) for v in lines[k + r].split()] for r in range(1, 5)])
    cam = Camera(525.0, 525.0, 319.5, 239.5, 640, 480)
    for gap in gaps:
        for i in range(0, max(world_from_cam) - gap + 1, step):
            j = i + gap
            T = np.linalg.inv(world_from_cam[j]) @ world_from_cam[i]
            yield {
                "id": f"icl/{i:05d}-{j:05d}", "group": f"icl gap {gap}",
                "image0": root / f"color/{i:05d}.jpg", "image1": root / f"color/{j:05d}.jpg",
                "depth0": root / f"depth_clean/{i:05d}.png", "depth1": root / f"depth_clean/{j:05d}.png",
                "scale": 1000.0, "cam": cam, "gt": Pose.from_matrix(T),
            }


TUM_DIST = np.array([0.2624, -0.9531, -0.0054, 0.0026, 1.1633])  # fr1 colour camera, intrinsics.txt


def tum_pairs(limit=None):
    root = DATA / "tum" / "fr1_xyz"
    cam = Camera(517.3, 516.5, 318.6, 255.3, 640, 480)
    rows = [ln.split() for ln in (root / "pairs_gt.txt").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    for r in rows[:limit]:
        T = np.array([float(v) for v in r[4:20]]).reshape(4, 4)
        yield {
            "id": f"tum/{Path(r[0]).stem}-{Path(r[1]).stem}", "group": "tum fr1_xyz",
            "image0": root / r[0], "image1": root / r[1], "depth0": root / r[2], "depth1": root / r[3],
            "scale": 5000.0, "cam": cam, "gt": Pose.from_matrix(T), "dist": TUM_DIST,
        }


def undistort(image, depth, cam: Camera, dist):
    """Images are stored distorted (TUM fr1): remap image (bilinear) and registered depth
    (nearest) to the pinhole model with the same K, for every method alike."""
    import cv2

    m1, m2 = cv2.initUndistortRectifyMap(cam.K, dist, None, cam.K, (cam.width, cam.height), cv2.CV_32FC1)
    im = cv2.remap(image, m1, m2, cv2.INTER_LINEAR)
    d = cv2.remap(np.nan_to_num(depth, nan=0.0), m1, m2, cv2.INTER_NEAREST)
    return im, np.where(d > 0, d, np.nan)


def _cloud(depth, image, cam, stride=2):
    d = depth[::stride, ::stride]
    vv, uu = np.mgrid[0 : depth.shape[0] : stride, 0 : depth.shape[1] : stride]
    ok = np.isfinite(d)
    pts = cam.unproject(np.stack([uu[ok], vv[ok]], 1).astype(float), d[ok])
    return pts, image[::stride, ::stride][ok] / 255.0


def run_o3d_cicp(im0, im1, cam0, cam1, d0, d1, init: Pose) -> Pose | None:
    import open3d as o3d

    reg = o3d.pipelines.registration
    pcs = []
    for d, im, cam in ((d0, im0, cam0), (d1, im1, cam1)):
        p, c = _cloud(d, im, cam)
        pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(p))
        pc.colors = o3d.utility.Vector3dVector(c)
        pcs.append(pc)
    T = init.matrix
    for voxel, iters in ((0.04, 50), (0.02, 30), (0.01, 14)):
        s = pcs[0].voxel_down_sample(voxel)
        t = pcs[1].voxel_down_sample(voxel)
        for pc in (s, t):
            pc.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=2 * voxel, max_nn=30))
        try:
            out = reg.registration_colored_icp(
                s, t, voxel, T, reg.TransformationEstimationForColoredICP(),
                reg.ICPConvergenceCriteria(relative_fitness=1e-6, relative_rmse=1e-6, max_iteration=iters))
        except RuntimeError:
            return None
        T = out.transformation
    return Pose.from_matrix(np.asarray(T))


def run_gicp(d0, d1, cam0, cam1, init: Pose) -> Pose | None:
    import small_gicp

    p0, _ = _cloud(d0, np.zeros(d0.shape + (3,)), cam0)
    p1, _ = _cloud(d1, np.zeros(d1.shape + (3,)), cam1)
    res = small_gicp.align(p1, p0, init.matrix, registration_type="GICP", downsampling_resolution=0.02,
                           max_correspondence_distance=0.1, num_threads=1, max_iterations=30)
    return Pose.from_matrix(np.asarray(res.T_target_source)) if res.converged or res.iterations > 0 else None


GMM_VARIANTS = {
    "gmm": {},
    "gmm-geom": {"build": {"features": "none"},
                 "align": {"use_covariance": False, "use_colour": False, "use_features": False}},
    "gmm+cov": {"build": {"features": "none"}, "align": {"use_colour": False, "use_features": False}},
    "gmm+cov+col": {"build": {"features": "none"}, "align": {"use_features": False}},
}


#: preset for depth from a monocular estimator: relative scale, depth uncertainty along rays
MONO = MONO_PRESET


def _record(method, pair, pose, ms, extra=None):
    e = pose_errors(pose, pair["gt"], metric=True)
    rec = {"method": method, "pair": pair["id"], "group": pair["group"], "success": pose is not None, "ms": ms, **e}
    rec.update(extra or {})
    return rec


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gaps", type=int, nargs="+", default=[10, 30, 60])
    ap.add_argument("--step", type=int, default=20, help="frames between ICL pair starts")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-degrade", action="store_true")
    ap.add_argument("--all-degraded", action="store_true", help="also run gmm+scale (no ray uncertainty)")
    ap.add_argument("--no-peers", action="store_true", help="skip Open3D / small_gicp")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "gmm"))
    args = ap.parse_args(argv)
    if not DATA.is_dir():
        print(f"data not found at {DATA}", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(1)  # 2 shared cores: one intra-op thread is faster and steadier
    pairs = list(icl_pairs(args.gaps, 100 if args.quick else args.step)) + list(tum_pairs(5 if args.quick else None))
    cfgs = {k: GMMConfig.from_dict(v) for k, v in GMM_VARIANTS.items()}
    cfg_scale = GMMConfig.from_dict({"align": {"estimate_scale": True}})
    cfg_mono = GMMConfig.from_dict(MONO)
    have_o3d = have_gicp = False
    if not args.no_peers:
        try:
            import open3d  # noqa: F401

            have_o3d = True
        except ImportError:
            pass
        try:
            import small_gicp  # noqa: F401

            have_gicp = True
        except ImportError:
            pass
    records, timing = [], []
    tracemalloc.start()
    peak_refine = 0
    # warm up the lazy feature network once (loading weights is not per-pair cost)
    p0 = pairs[0]
    im = load_image(p0["image0"])
    d = load_depth(p0["depth0"], p0["scale"])
    refine_relative_pose(im, im, p0["cam"], p0["cam"], d, d, Pose.identity(), cfgs["gmm"])
    for k, pair in enumerate(pairs):
        im0, im1 = load_image(pair["image0"]), load_image(pair["image1"])
        d0, d1 = load_depth(pair["depth0"], pair["scale"]), load_depth(pair["depth1"], pair["scale"])
        cam = pair["cam"]
        if "dist" in pair:
            im0, d0 = undistort(im0, d0, cam, pair["dist"])
            im1, d1 = undistort(im1, d1, cam, pair["dist"])
        t = time.perf_counter()
        front = estimate_relative_pose(im0, im1, cam, cam, d0, d1)
        front_ms = (time.perf_counter() - t) * 1e3
        init = front.cam1_from_cam0 if front.success else None
        records.append(_record("front", pair, init, front_ms, {"inliers": front.num_inliers}))
        for name, cfg in cfgs.items():
            if init is None:
                records.append(_record(name, pair, None, np.nan))
                continue
            tracemalloc.reset_peak()
            t, c = time.perf_counter(), time.process_time()
            r = refine_relative_pose(im0, im1, cam, cam, d0, d1, init, cfg)
            ms = (time.perf_counter() - t) * 1e3
            cpu_ms = (time.process_time() - c) * 1e3
            peak_refine = max(peak_refine, tracemalloc.get_traced_memory()[1])
            records.append(_record(name, pair, r.cam1_from_cam0 if r.success else None, ms,
                                   {"score_before": r.info.get("score_before"), "score_after": r.info.get("score_after"),
                                    "rejected": r.info.get("rejected")}))
            if name == "gmm":
                timing.append({"build": r.timings_ms.get("build", np.nan), "optimize": r.timings_ms.get("optimize", np.nan),
                               "total": ms, "total_cpu": cpu_ms, "iterations": r.info.get("iterations", 0),
                               "gaussians": r.info.get("num_gaussians", [0, 0])})
        if have_o3d:
            t = time.perf_counter()
            pose = run_o3d_cicp(im0, im1, cam, cam, d0, d1, init) if init is not None else None
            records.append(_record("o3d-cicp", pair, pose, (time.perf_counter() - t) * 1e3))
        if have_gicp:
            t = time.perf_counter()
            pose = run_gicp(d0, d1, cam, cam, init) if init is not None else None
            records.append(_record("gicp", pair, pose, (time.perf_counter() - t) * 1e3))
        if not args.no_degrade:
            dd0, _ = degrade_depth(d0, seed=2 * k)
            dd1, _ = degrade_depth(d1, seed=2 * k + 1)
            t = time.perf_counter()
            fd = estimate_relative_pose(im0, im1, cam, cam, dd0, dd1)
            records.append(_record("degraded: front", pair, fd.cam1_from_cam0 if fd.success else None,
                                   (time.perf_counter() - t) * 1e3))
            for name, cfg in (("degraded: gmm", cfgs["gmm"]), ("degraded: gmm+scale", cfg_scale),
                              ("degraded: gmm-mono", cfg_mono)):
                if name == "degraded: gmm+scale" and not args.all_degraded:
                    continue
                if not fd.success:
                    records.append(_record(name, pair, None, np.nan))
                    continue
                t = time.perf_counter()
                r = refine_relative_pose(im0, im1, cam, cam, dd0, dd1, fd.cam1_from_cam0, cfg)
                records.append(_record(name, pair, r.cam1_from_cam0 if r.success else None,
                                       (time.perf_counter() - t) * 1e3, {"scale": r.info.get("scale")}))
        print(f"[{k + 1}/{len(pairs)}] {pair['id']}: " + ", ".join(
            f"{r['method']} {r['rot_deg']:.3f}deg" for r in records if r["pair"] == pair["id"]), flush=True)

    methods = list(dict.fromkeys(r["method"] for r in records))
    groups = ["all"] + list(dict.fromkeys(r["group"] for r in records))
    summary = {}
    for g in groups:
        for m in methods:
            rs = [r for r in records if r["method"] == m and (g == "all" or r["group"] == g)]
            summary.setdefault(g, {})[m] = summarize_errors(rs, metric=True)
    tarr = {k: np.array([t[k] for t in timing], float) for k in ("build", "optimize", "total", "total_cpu", "iterations")}
    timing_summary = {k: {"median": float(np.median(v)), "p90": float(np.percentile(v, 90))} for k, v in tarr.items()} if timing else {}
    mem = {"peak_rss_mb_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "peak_traced_mb_refinement": peak_refine / 2**20}
    meta = {"command": " ".join(["python", "benchmarks/bench_gmm.py", *(argv or sys.argv[1:])]),
            "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "machine": platform.machine(),
            "cpus": __import__("os").cpu_count(), "num_pairs": len(pairs), "torch_threads": 1,
            "load_avg": __import__("os").getloadavg()[0]}
    out = Path(args.out)
    atomic_write_json(out.with_suffix(".json"), _clean({"meta": meta, "summary": summary, "timing_gmm_ms": timing_summary,
                                                        "memory": mem, "records": records}))
    atomic_write_text(out.with_suffix(".md"), _markdown(meta, summary, timing_summary, mem))
    print(_markdown(meta, summary, timing_summary, mem))
    return 0


def _clean(o):
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, (float, np.floating)):
        return float(o) if np.isfinite(o) else None
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.bool_):
        return bool(o)
    return o


def _fmt(v, f="{:.3f}"):
    return "-" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f.format(v)


def _markdown(meta, summary, timing, mem) -> str:
    lines = [f"# GMM alignment benchmark ({meta['date_utc']} UTC)", "",
             f"`{meta['command']}` - {meta['num_pairs']} pairs, {meta['cpus']} CPUs (shared), torch threads 1.", ""]
    for g, rows in summary.items():
        lines += [f"## {g}", "", "| method | pairs | success | AUC@5 | AUC@10 | AUC@20 | med rot (deg) | med t (deg) | med t (mm) | med ms |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for m, s in rows.items():
            tm = s.get("median_trans_m")
            lines.append(f"| {m} | {s['num_pairs']} | {s['success_rate']:.2f} | {s['auc5'] * 100:.1f} | {s['auc10'] * 100:.1f} | "
                         f"{s['auc20'] * 100:.1f} | {_fmt(s['median_rot_deg'])} | {_fmt(s['median_trans_deg'])} | "
                         f"{_fmt(tm * 1000 if tm is not None and np.isfinite(tm) else None, '{:.1f}')} | {_fmt(s['median_ms'], '{:.0f}')} |")
        lines.append("")
    if timing:
        lines += ["## gmm time per pair (ms, default settings)", "",
                  f"Wall-clock on 2 cores shared with other jobs (load average {meta['load_avg']:.1f} at the end); "
                  "total_cpu = process CPU time of one refinement.", "",
                  "| stage | median | p90 |", "|---|---|---|"]
        lines += [f"| {k} | {v['median']:.1f} | {v['p90']:.1f} |" for k, v in timing.items()]
        lines.append("")
    lines += [f"Memory: process peak RSS {mem['peak_rss_mb_process']:.0f} MB (includes torch, Open3D); "
              f"peak traced numpy allocation during one refinement {mem['peak_traced_mb_refinement']:.1f} MB.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
