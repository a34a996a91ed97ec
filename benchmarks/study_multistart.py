"""Study: align the mixtures from several starting poses where the initial pose is rough.

    python benchmarks/study_multistart.py RUN_DIR [--init xfeat-rigid3d] [--angles -30 30]
        [--axes y] [--wide] [--noise 0.025] [--json OUT.json]

RUN_DIR is a ``twoview bench`` output folder (its ``config.json`` names the dataset) holding
a run of the method ``--init``: its cached poses are the initial poses. For each pair the
default refinement (:func:`twoview.gmm.align_mixtures`, default :class:`GMMConfig`) runs
from that pose. Where the registration noise at the initial pose is over ``--noise`` of the
median depth, it also runs from hypotheses: the initial pose turned about the scene's centre
(the median of view 1's Gaussians) about the camera's ``--axes`` by ``--angles`` degrees,
and with ``--wide`` from the initial pose with a first level twice as wide. Every hypothesis
runs all levels without ``reject_worse``. For those pairs it prints every run's error and
the choice of several rules (the lowest objective at one common level, dense depth
agreement, the same minus free-space violations, the best by the ground truth), then the
summary of each rule over all pairs. Not a library feature: the study behind the section
"Seventh session" of ``benchmarks/results/gmm_polish_study.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from twoview.bench.runner import cache_path  # noqa: E402
from twoview.datasets import get_dataset  # noqa: E402
from twoview.geometry.pose import Pose  # noqa: E402
from twoview.geometry.rotation import so3_exp  # noqa: E402
from twoview.gmm.align import _build_both, _Level, align_mixtures  # noqa: E402
from twoview.gmm.config import GMMConfig  # noqa: E402
from twoview.gmm.objective import Prepared  # noqa: E402
from twoview.io.images import load_image  # noqa: E402
from twoview.metrics import pose_auc, pose_errors  # noqa: E402

AXES = {"x": np.array([1.0, 0.0, 0.0]), "y": np.array([0.0, 1.0, 0.0])}
RULES = ("initial", "objective", "depth", "depth-free-space", "oracle")


def depth_agreement(pair, d0, d1, T: np.ndarray, rel: float = 0.03, ahead: float = 0.1, step: int = 4):
    """(agreeing, violating) shares of both maps' pixels (every ``step``-th): a pixel moved
    into the other view agrees within ``rel`` of its depth, and violates free space when it
    lands over ``ahead`` in front of the other map's surface."""
    R, t = T[:3, :3], T[:3, 3]
    agree = viol = 0.0
    for da, db, ca, cb, RR, tt in ((d0, d1, pair.camera0, pair.camera1, R, t),
                                   (d1, d0, pair.camera1, pair.camera0, R.T, -R.T @ t)):
        v, u = np.mgrid[0:da.shape[0]:step, 0:da.shape[1]:step]
        z = da[v, u]
        m = np.isfinite(z) & (z > 0)
        Y = ca.unproject(np.c_[u[m], v[m]].astype(float), z[m]) @ RR.T + tt
        Y = Y[Y[:, 2] > 0.1]
        uv = np.round(cb.project(Y)).astype(int)
        inside = (uv[:, 0] >= 0) & (uv[:, 1] >= 0) & (uv[:, 0] < db.shape[1]) & (uv[:, 1] < db.shape[0])
        zo, zp = db[uv[inside, 1], uv[inside, 0]], Y[inside, 2]
        ok = np.isfinite(zo) & (zo > 0)
        agree += float(np.sum(ok & (np.abs(zo - zp) < rel * zp))) / m.sum()
        viol += float(np.sum(ok & (zp < zo * (1 - ahead)))) / m.sum()
    return agree, viol


def errors(T, gt: Pose):
    """(rotation deg, max(rotation, translation angle) deg, translation m) of a 4x4 pose or None."""
    e = pose_errors(None if T is None else Pose.from_matrix(T), gt, metric=True)
    return e["rot_deg"], e["max_deg"], e["trans_m"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--init", default="xfeat-rigid3d")
    ap.add_argument("--angles", type=float, nargs="+", default=[-30.0, 30.0])
    ap.add_argument("--axes", default="y", choices=["y", "x", "xy"])
    ap.add_argument("--wide", action="store_true")
    ap.add_argument("--noise", type=float, default=0.025)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    cfg_run = json.loads((a.run / "config.json").read_text())
    pairs = get_dataset(cfg_run["dataset"], cfg_run["root"], **cfg_run["dataset_options"]).pairs()
    cfg = GMMConfig()
    free = cfg.align.replace(skip_coarse=False, reject_worse=False)
    wide = free.replace(inflation=[0.3, 0.1, 0.03, 0.01, 0.0], blur_px=[24.0, 12.0, 6.0, 3.0, 1.5])
    chosen = {r: [] for r in RULES}
    rows = []
    for pair in pairs:
        rec = json.loads(cache_path(a.run, a.init, pair.pair_id).read_text())
        gt = pair.cam1_from_cam0
        if not rec["success"]:
            for r in RULES:
                chosen[r].append((np.inf, np.inf, np.inf))
            continue
        T0 = np.asarray(rec["cam1_from_cam0"])
        init = Pose(T0[:3, :3], T0[:3, 3])
        d0, d1 = pair.load_depths()
        m0, m1 = _build_both(load_image(pair.image0), load_image(pair.image1), pair.camera0, pair.camera1,
                             d0, d1, cfg.build)
        first = align_mixtures(m0, m1, init, cfg.align)
        depth = 0.5 * (m0.median_depth() + m1.median_depth())
        if not first.success or first.info["registration_noise_m"] <= a.noise * depth:
            e = errors(first.cam1_from_cam0.matrix if first.success else None, gt)
            for r in RULES:
                chosen[r].append(e)
            continue
        runs = [("initial", first)]
        if a.wide:
            runs.append(("wide", align_mixtures(m0, m1, init, wide)))
        centre = np.nanmedian(m1.means, axis=0)
        for ax in a.axes:
            for ang in a.angles:
                Ra = so3_exp(np.radians(ang) * AXES[ax])
                runs.append((f"{ax}{ang:+g}", align_mixtures(m0, m1, Pose(Ra @ init.R, Ra @ (init.t - centre) + centre),
                                                             free)))
        runs = [(n, r) for n, r in runs if r.success]
        judge = _Level(Prepared.from_mixture(m0, cfg.align), Prepared.from_mixture(m1, cfg.align),
                       (0.01 * depth) ** 2, cfg.align.blur_px[-2], cfg.align)
        cand = []
        for n, r in runs:
            T = r.cam1_from_cam0.matrix
            ag, vi = depth_agreement(pair, d0, d1, T)
            rot, mx, tm = errors(T, gt)
            cand.append({"start": n, "rot_deg": rot, "max_deg": mx, "trans_m": tm,
                         "objective": judge.score(T[:3, :3], T[:3, 3], 1.0)[0], "agree": ag, "violate": vi})
        pick = {"initial": 0, "objective": int(np.argmin([c["objective"] for c in cand])),
                "depth": int(np.argmax([c["agree"] for c in cand])),
                "depth-free-space": int(np.argmax([c["agree"] - c["violate"] for c in cand])),
                "oracle": int(np.argmin([c["max_deg"] for c in cand]))}
        for r, i in pick.items():
            chosen[r].append((cand[i]["rot_deg"], cand[i]["max_deg"], cand[i]["trans_m"]))
        rows.append({"pair": pair.pair_id, "gt_rotation_deg": pair.meta.get("rotation_deg"), "runs": cand,
                     "chosen": {r: cand[i]["start"] for r, i in pick.items()}})
        print(pair.pair_id, " ".join(f"{c['start']}:{c['rot_deg']:.1f}" for c in cand),
              "| chosen:", {r: round(cand[i]["rot_deg"], 1) for r, i in pick.items()}, flush=True)
    summary = {}
    print(f"{len(rows)} of {len(pairs)} pairs rough (noise over {a.noise:g} of the median depth)")
    for r in RULES:
        E = np.array(chosen[r])
        auc = pose_auc(E[:, 1], (5.0, 10.0, 20.0))
        p = float(np.mean((E[:, 0] < 2) & (E[:, 2] < 0.05)) * 100)
        summary[r] = {"auc": auc, "median_rot_deg": float(np.median(E[:, 0])), "p_5cm_2deg": p}
        print(f"  {r:18s} AUC@5/10/20 {auc[0] * 100:5.1f} {auc[1] * 100:5.1f} {auc[2] * 100:5.1f}"
              f"  median rot {np.median(E[:, 0]):.3f}  P(5cm,2deg) {p:.1f}")
    if a.json:
        from twoview.io.atomic import atomic_write_json

        atomic_write_json(a.json, {"args": {k: str(v) for k, v in vars(a).items()}, "summary": summary, "rough": rows})


if __name__ == "__main__":
    main()
