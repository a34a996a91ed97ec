#!/usr/bin/env python
"""Regenerate docs/results.md: `twoview bench` on the data in ../shared/data.

    python benchmarks/run_results.py                 # all suites, then writes docs/results.md
    python benchmarks/run_results.py --only icl_nuim # one suite (others keep their cached runs)
    python benchmarks/run_results.py --max-pairs 3   # smoke test: 3 pairs a suite, into
                                                     # <runs>/subset-3 and <runs>/subset-3/results.md

Runs go to --runs (default ~/.cache/twoview/results/<suite>); each is resumable (the
per-pair cache), so re-running after an interruption only predicts what is missing, and
re-running unchanged code only re-scores. Delete a suite's folder to recompute it.
Single worker, to be gentle on shared CI machines; --workers N to go faster.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"

#: the RGB-D comparison of this round (issues 16 and 17): the default pipeline, each front end
#: alone and refined, the dense peers from the same pose, and the refinement's ablation ladder
RGBD_METHODS = [
    "--method", "default",
    "--method", "sift-rigid3d", "--method", "xfeat-rigid3d", "--method", "xfeat",
    "--method", "gmm@sift-rigid3d", "--method", "gmm@xfeat-rigid3d",
    "--method", "small_gicp@xfeat-rigid3d", "--method", "open3d-colored-icp@xfeat-rigid3d",
    "--method", "gmm-geom@xfeat-rigid3d", "--method", "gmm-geom+cov@xfeat-rigid3d",
    "--method", "gmm-geom+cov+col@xfeat-rigid3d", "--method", "gmm-geom+cov+col+feat@xfeat-rigid3d",
    # braces doubled: every argument goes through str.format (the {data} / {repo} / {reference} placeholders)
    "--method", 'gmm:pipeline={{"depth":{{"register":false}}}}@xfeat-rigid3d',
    "--method", 'gmm:gmm={{"align":{{"polish":false}}}}@xfeat-rigid3d',
    "--precision", "0.05", "2", "--precision", "0.10", "5",
    # the issue-16 question on every RGB-D suite: the mixtures against GICP from the same pose, paired
    "--compare", "small_gicp@xfeat-rigid3d", "gmm@xfeat-rigid3d",
]
#: the held-out kind of data (a Kinect with a consumer camera's colour): the default, the front end
#: and the two refinements of its pose
KINECT_COLOUR_METHODS = [
    "--method", "default", "--method", "xfeat-rigid3d", "--method", "gmm@xfeat-rigid3d",
    "--method", "small_gicp@xfeat-rigid3d",
    "--precision", "0.05", "2", "--precision", "0.10", "5",
    "--compare", "small_gicp@xfeat-rigid3d", "gmm@xfeat-rigid3d",
]
RGBD_NOTE = (
    " `default` is the whole pipeline as `twoview estimate` runs it (one method name); the `*-rigid3d` "
    "methods are each front end alone, `gmm@B` the mixture refinement of B's pose, beside GICP and coloured ICP "
    "from the same pose. The ablation ladder of the refinement from the XFeat pose: `gmm-geom` (isotropic "
    "geometry), `gmm-geom+cov` (+ anisotropic covariances), `gmm-geom+cov+col` (+ colour: pair kernel and an "
    "appearance term at full weight), `gmm-geom+cov+col+feat` (+ XFeat descriptors: the first round's default); "
    "the default `gmm` weighs the appearance 0.3, registers sensor depth (`register:false` shows what that buys) "
    "and polishes on dense mixtures (`polish:false`). P(5cm,2°) and P(10cm,5°) are the extra precision columns."
)

#: ICL-NUIM livingroom1, scored on the reference refined from its noise-free depth
ICL_NUIM = ["--dataset", "icl_nuim", "--root", "{data}/icl_nuim_livingroom1", "--option", "trajectory={reference}"]

# suite name -> (twoview bench arguments without --out, what it shows)
SUITES = {
    "icl_nuim": (
        [*ICL_NUIM, "--gap", "10", "30", "60", "--stride", "5",
         "--method", "sift", "--method", "sift-pnp", "--method", "sift-rigid3d",
         "--method", "opencv-magsac", "--method", "pycolmap",
         "--method", "open3d-odometry", "--method", "open3d-colored-icp",
         "--method", "small_gicp", "--method", "small_gicp@sift-rigid3d", "--method", "open3d-colored-icp@sift-rigid3d",
         "--method", "gmm@sift-rigid3d", "--method", "gmm-geom@sift-rigid3d", "--method", "gmm-geom+cov@sift-rigid3d",
         "--method", "gmm-geom+cov+col@sift-rigid3d", "--method", "gmm-geom+cov+col+feat@sift-rigid3d",
         "--method", "default", "--precision", "0.05", "2", "--precision", "0.10", "5"],
        "ICL-NUIM livingroom1 (synthetic RGB-D, clean depth), frames 0-210, scored on the reference refined from "
        "the noise-free depth (`benchmarks/refine_reference_trajectory.py`: 0.004 deg and 0.0 mm from the true poses "
        "of frames 0-4, where Open3D's reconstruction shipped with the data drifts by up to 2 deg), pairs at frame gaps 10/30/60 every 5th frame. Ours and the "
        "peers side by side on the same 109 pairs in one run; its cold-run time (below) is the check that such a "
        "comparison fits in CI's 90 minutes. `gmm@sift-rigid3d` is Gaussian-mixture refinement of the SIFT rigid3d "
        "pose, beside the dense peers started from the same pose; `gmm-geom*` is its ablation ladder (geometry only, "
        "+ anisotropic covariances, + colour at full weight, + XFeat descriptors: the first round's default); `default` "
        "is the whole pipeline.",
    ),
    "icl_nuim_depth_noise": (
        [*ICL_NUIM, "--gap", "10", "30", "60", "--stride", "5", "--depth-noise",
         "--method", "sift-pnp", "--method", "sift-rigid3d", "--method", "sift-monodepth",
         "--method", "small_gicp@sift-rigid3d", "--method", "open3d-colored-icp@sift-rigid3d",
         "--method", "gmm@sift-rigid3d", "--method", "gmm-mono@sift-rigid3d", "--method", "gmm-mono@sift-monodepth"],
        "The same 109 pairs with simulated monocular depth (--depth-noise: global scale in [0.85, 1.15] and a smooth "
        "+-5% field per image, seeded per pair, the same for every method). `sift-monodepth` estimates the pose with "
        "a relative scale between the two maps; `gmm-mono` is mixture refinement with the monocular preset "
        "(relative scale, geometry down-weighted).",
    ),
    "icl_nuim_kinect7": (
        [*ICL_NUIM, "--gap", "10", "30", "60", "120", "--stride", "10", "--depth-noise", "kinect7", *RGBD_METHODS],
        "ICL-NUIM livingroom1 as a Kinect v1 would record it for 7-Scenes (--depth-noise kinect7: unregistered, "
        "noisy IR depth; the depth camera's intrinsics given for colour and depth; scored against the depth cameras' "
        "poses; colour and depth exposed apart), pairs at frame gaps 10/30/60/120 every 10th frame (0.03-1.5 m, "
        "2-68 deg): the sensor-model suite of issue 16. Unregistered, the colour pulls a mixture refinement off the "
        "geometry (`register:false`); registered from each view's own contours it no longer does." + RGBD_NOTE,
    ),
    "icl_nuim_kinect7_colour": (
        [*ICL_NUIM, "--gap", "10", "30", "60", "120", "--stride", "10", "--depth-noise", "kinect7-colour", *KINECT_COLOUR_METHODS],
        "The same 66 pairs with a consumer camera's colour (--depth-noise kinect7-colour: the simulated Kinect "
        "depth above, and colour blurred, motion-blurred, noisy and JPEG-compressed), the closest this data comes "
        "to the held-out real RGB-D set of issue 16. The comparison is the mixtures minus GICP from the same "
        "XFeat pose, with a 95 % paired bootstrap interval over the pairs.",
    ),
    "icl_nuim_kinect7_colour_wide": (
        [*ICL_NUIM, "--gap", "150", "180", "200", "--stride", "5", "--depth-noise", "kinect7-colour", *KINECT_COLOUR_METHODS],
        "As icl_nuim_kinect7_colour at ICL-NUIM's widest pairs, 150-200 frames apart (23 pairs, 1.0-1.4 m and "
        "27-62 deg apart): the front end is 10-28 deg off on most of them, so this is the refinements' basin.",
    ),
    "tum_fr3_cabinet": (
        ["--dataset", "tum", "--root", "{data}/tum/fr3_cabinet_keyframes", "--option", "max_gt_gap=1.0",
         "--gap", "1", "2", "4", "6", "--stride", "2", *RGBD_METHODS],
        "TUM fr3 cabinet keyframes (real Kinect, mocap GT): a texture-poor box on a floor, 0.15-0.9 m and "
        "3-40 deg apart at gaps 1-6, with heavily compressed JPEG colour." + RGBD_NOTE,
    ),
    "tum_fr1_rpy": (
        ["--dataset", "tum", "--root", "{data}/tum/fr1_rpy_sub12", "--gap", "1", "2", "3", "--stride", "2", *RGBD_METHODS],
        "TUM fr1 rpy, every 12th frame (real Kinect v1, mocap GT interpolated at the colour times): fast rotation "
        "with little translation, so the translation direction (and AUC) is poorly defined for every method; the "
        "depth frames are taken up to 20 ms apart from the colour frames the ground truth follows, which moves "
        "depth-only alignment by up to a degree." + RGBD_NOTE,
    ),
    "hololens": (
        ["--dataset", "redwood", "--root", "{data}/hololens_dvmvs_000", "--option", "trajectory=trajectory.log",
         "--gap", "1", "2", "--stride", "2", *RGBD_METHODS],
        "HoloLens 2 sequence (DeepVideoMVS sample, every 4th frame: 0.33 m / 16 deg apart per gap): device poses "
        "and depth consistent by construction, which favours depth-only registration." + RGBD_NOTE,
    ),
    "strecha": (
        ["--dataset", "superglue_pairs", "--root", "{data}/strecha_mvs/images", "--pairs", "{data}/strecha_mvs/pairs_gt.txt",
         "--method", "default-images", "--method", "sift", "--method", "xfeat", "--method", "opencv-magsac", "--method", "pycolmap"],
        "Strecha/EPFL outdoor photos (fountain, Herz-Jesu, entry, castle; LiDAR-based metric GT, 1536x1024, "
        "1.7-6 m baselines), all 120 pairs up to 3 positions apart: photos only, so the rotation and translation "
        "direction (`default-images` is the default pipeline given the photos alone). The metric scale of a "
        "photos-only estimate needs a monocular depth network, which cannot be fetched offline here (the depth backends are tested on tiny random models).",
    ),
    "tum_fr1_xyz": (
        ["--dataset", "tum", "--root", "{data}/tum/fr1_xyz", "--gap", "1", "2", "3", "4", "5",
         "--method", "sift", "--method", "sift-pnp", "--method", "sift-rigid3d", "--method", "opencv-magsac",
         "--method", "pycolmap", "--method", "open3d-colored-icp", "--method", "small_gicp",
         "--method", "small_gicp@sift-rigid3d", "--method", "open3d-colored-icp@sift-rigid3d",
         "--method", "gmm@sift-rigid3d", "--method", "gmm-geom@sift-rigid3d", "--method", "gmm-geom+cov@sift-rigid3d",
         "--method", "gmm-geom+cov+col@sift-rigid3d", "--method", "gmm-geom+cov+col+feat@sift-rigid3d",
         "--method", "default", "--precision", "0.05", "2", "--precision", "0.10", "5"],
        "TUM RGB-D fr1/xyz (real Kinect v1, mocap GT interpolated at the image times): all 15 pairs of the 6 frames. "
        "The depth frames are 8-15 ms off the colour frames of a camera moving at about 0.4 m/s, so depth-only "
        "alignment is up to 11 mm / 0.8 deg off the colour-time ground truth.",
    ),
    "tum_fr1_xyz_depth_noise": (
        ["--dataset", "tum", "--root", "{data}/tum/fr1_xyz", "--gap", "1", "2", "3", "4", "5", "--depth-noise",
         "--method", "sift-pnp", "--method", "sift-rigid3d", "--method", "sift-monodepth",
         "--method", "small_gicp@sift-rigid3d", "--method", "open3d-colored-icp@sift-rigid3d",
         "--method", "gmm@sift-rigid3d", "--method", "gmm-mono@sift-rigid3d", "--method", "gmm-mono@sift-monodepth"],
        "TUM fr1/xyz with simulated monocular depth (as icl_nuim_depth_noise).",
    ),
    "7scenes_cross_sequence": (
        ["--dataset", "7scenes", "--root", "{data}/7scenes_stairs/stairs", "--pairs", "{repo}/benchmarks/pairs/7scenes_stairs_cross_sequence.txt",
         "--method", "small_gicp", "--method", "open3d-colored-icp", "--method", "sift-rigid3d"],
        "7-Scenes stairs, wide-baseline pairs across sequences (0.2-1.5 m, 46-93 deg). The colour images of this sample "
        "are deliberately degraded, so image matching is expected to fail; depth-only registration from identity is "
        "the test.",
    ),
    "kitti": (
        ["--dataset", "kitti", "--root", "{data}/kitti_odometry/seq00", "--gap", "1", "2", "3", "4", "5",
         "--method", "sift", "--method", "xfeat", "--method", "aliked", "--method", "opencv-magsac", "--method", "pycolmap"],
        "KITTI odometry sequence 00, frames 0-5 (no depth: direction-only methods), all 15 pairs.",
    ),
    "scannet_superglue": (
        ["--dataset", "superglue_pairs", "--root", "{data}/scannet_pairs",
         "--method", "sift", "--method", "xfeat", "--method", "aliked", "--method", "disk",
         "--method", "opencv-magsac", "--method", "pycolmap"],
        "The 15 hard ScanNet pairs of SuperGlue's demo list (wide baselines, 32-172 deg rotations, RGB only): "
        "the learned matchers against SIFT.",
    ),
}


def icl_reference(runs: Path) -> Path:
    """ICL-NUIM's reference trajectory, refined from its noise-free depth (made once, about 8 min).

    The snippet's only full trajectory is Open3D's reconstruction, which drifts by up to 2 deg
    between frames 60-200 apart (``benchmarks/refine_reference_trajectory.py``)."""
    ref = runs / "icl_nuim_reference" / "refined.log"
    if not ref.is_file():
        cmd = [sys.executable, str(REPO / "benchmarks" / "refine_reference_trajectory.py"),
               str(DATA / "icl_nuim_livingroom1"), "--out", str(ref)]
        print("$", " ".join(shlex.quote(c) for c in cmd), flush=True)
        subprocess.run(cmd, check=True, cwd=REPO)
    return ref


def run_suite(name: str, runs: Path, workers: int, max_pairs: int | None = None) -> dict:
    args, _ = SUITES[name]
    reference = icl_reference(runs) if any("{reference}" in a for a in args) else None
    args = [a.format(data=DATA, repo=REPO, reference=reference) for a in args]
    if max_pairs:
        args += ["--max-pairs", str(max_pairs)]
    out = runs / name
    exe = shutil.which("twoview")
    entry = [exe] if exe else [sys.executable, "-c", "import sys; from twoview.cli import main; sys.exit(main())"]
    cmd = [*entry, "bench", *args, "--out", str(out), "--workers", str(workers), "--no-progress"]
    print("$", " ".join(shlex.quote(c) for c in cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO)
    wall = time.perf_counter() - t0
    summary = json.loads((out / "summary.json").read_text())
    cold = out / "cold_run.json"  # timing of the run that predicted everything (not a re-score)
    if summary["run"]["from_cache"] == 0:
        cold.write_text(json.dumps({"wall_s": wall, "workers": workers, **summary["run"]}))
    timing = json.loads(cold.read_text()) if cold.is_file() else None
    return {"args": args, "wall_s": wall, "summary": summary, "cold": timing,
            "table": (out / "results.md").read_text().split("\n\n", 2)[-1]}


def write_doc(results: dict, runs: Path, doc: Path) -> None:
    sys.path.insert(0, str(REPO / "src"))
    from twoview.io.atomic import atomic_write_text

    lines = [
        "# Results on the data in `../shared/data`",
        "",
        "Regenerate everything with one command (from the repository root):",
        "",
        "    python benchmarks/run_results.py",
        "",
        "Each table is one `twoview bench` run: every method on the same pairs, scored by the same code",
        "(`twoview.metrics`). AUC@5/10/20 is the SuperGlue/LoFTR trapezoid AUC of max(rotation error,",
        "translation angle error), failures counting as infinite error; AUC@30 (hist.) is the different",
        "Reloc3r/VGGT mean-accuracy variant. AUCs, precision (Map-free style, translation <= 25 cm and",
        "rotation < 5 deg) and success are in %. Direction-only methods (no depth) have no metric error (\"–\");",
        "their translation angle is sign-folded. `med. ms` / `med. CPU ms` are the median wall / process CPU",
        "time of the method per pair on a CPU core shared with other jobs (dataset I/O excluded; each section",
        "says how many workers shared the machine's two cores). `A@B`",
        "(A initialised from B's pose) reuses B's cached prediction when B is in the same run, and its time",
        "includes B's recorded time. Medians are ∞ when more than half the pairs failed.",
        "",
        "Outputs of each run (in `--out`): `config.json` (the resolved configuration; a different one into the",
        "same folder needs `--overwrite`), `cache/<method>/<pair>.json` (one prediction each, written atomically: an",
        "interrupted run resumes where it stopped), `summary.json`, `results.md`, `per_pair.csv`,",
        "`plots/*.png` (cumulative error curves, error vs frame gap / baseline) and a self-contained `report.html`.",
        "`--workers N` runs N local processes, `--engine ray [--address ADDR]` runs on Ray; `--depth-noise` feeds",
        "every method the same simulated monocular depth (seeded per pair), and `--depth-noise kinect` the same",
        "simulated raw Kinect v1-class depth, not registered to colour (`twoview.depth.sensor`: IR camera 2.5 cm",
        "beside the colour camera, noise growing with depth squared, 1/8 px disparity quantisation, projector",
        "shadows and holes at depth edges; seeded per pair and view). `--depth-noise kinect7` is that sensor as",
        "7-Scenes users meet it: the methods get the depth camera's intrinsics (585 px focal length for a 525 px",
        "colour camera) for colour and depth alike, poses are scored against the depth cameras' (7-Scenes' ground",
        "truth is KinectFusion's, from depth alone), and each view's colour and depth are exposed at different",
        "times (a Kinect v1 streams them unsynchronised at about 30 Hz each: 0.2 deg, 3 mm RMS apart).",
        "`--depth-noise kinect7-colour` adds the colour a consumer camera records where ICL-NUIM's is rendered",
        "(defocus 1 px, motion blur 9 px, noise 4 grey levels, JPEG quality 40).",
        "`twoview bench --list-methods` lists the methods (ours, peers when installed, and those other packages",
        "register in `BENCH_METHODS`). `--compare A B` (repeatable; both given as `--method`) adds to `results.md` and",
        "`summary.json` the difference B - A of every metric with a 95 % paired bootstrap interval over the pairs",
        "(`twoview.bench.compare`, 2000 resamples): whether the pairs support a difference, or another draw of pairs",
        "of the same kind could reverse it. Adding a comparison to a finished run re-scores it from the cache.",
        "",
        "Peers: OpenCV `findEssentialMat` (USAC_MAGSAC, 1 px) + `recoverPose` and pycolmap two-view",
        "geometry (1 px) on the same SIFT matches as `sift`; Open3D RGB-D odometry (hybrid Jacobian) and",
        "multi-scale coloured ICP; small_gicp GICP (coarse-to-fine) from identity and from `sift-rigid3d`",
        "(`small_gicp@sift-rigid3d`, likewise `open3d-colored-icp@sift-rigid3d`). Scales derive from each pair's",
        "depth (see `twoview.bench.peers`).",
        "",
        "Ours beyond the front end: `gmm@B` refines B's pose by aligning the two views' single-view Gaussian",
        "mixtures (`twoview.gmm`, default settings); `gmm-mono@B` uses the monocular preset. Time and memory",
        "of the refinement alone: `benchmarks/results/gmm.md`. The pose regressor (`twoview.regress`) is",
        "evaluated on frames it was not trained on, with and without GCR, in `benchmarks/results/regress.md`.",
        "",
        *headline_lines(results),
        *second_round_lines(),
    ]
    for name, r in results.items():
        _, what = SUITES[name]
        s = r["summary"]
        lines += [
            f"## {name}",
            "",
            what,
            "",
            "    twoview bench " + " ".join(shlex.quote(_portable(a, runs)) for a in r["args"]) + f" --out runs/{name}",
            "",
            r["table"].strip(),
            "",
            f"{s['num_pairs']} pairs x {len(s['methods'])} methods. "
            + (f"Cold run (nothing cached, {_workers(r['cold'])}, 2 shared CPU cores): predictions {r['cold']['predict_s']:.0f} s, "
               f"whole command {r['cold']['wall_s']:.0f} s" + (f" ({r['cold']['note']})." if r["cold"].get("note") else ".")
               if r["cold"] else "No cold-run time: part of the predictions came from an earlier run's cache.")
            + f" Last regeneration: {r['summary']['run']['predicted']} predicted, {r['summary']['run']['from_cache']} from cache"
            + _load_note(r),
            "",
        ]
    atomic_write_text(doc, "\n".join(lines))
    print(f"wrote {doc} (runs in {runs})")


def second_round_lines() -> list[str]:
    """The second round's summary, kept by hand in ``benchmarks/results/second_round.md``, and the
    confidence calibration (``benchmarks/results/confidence.md``, written by ``calibrate_confidence.py``)
    in full."""
    lines = []
    summary = REPO / "benchmarks" / "results" / "second_round.md"
    if summary.is_file():
        body = summary.read_text().strip().splitlines()
        lines += ["## " + body[0].lstrip("# "), *body[1:], ""]
    conf = REPO / "benchmarks" / "results" / "confidence.md"
    if conf.is_file():
        body = conf.read_text().strip().splitlines()
        lines += ["### " + body[0].lstrip("# ") + " (`benchmarks/results/confidence.md`)", ""]
        lines += [("#" + ln if ln.startswith("## ") else ln) for ln in body[1:]]
        lines += ["", "![reliability](../benchmarks/results/confidence.png)", ""]
    return lines


#: rows of the RGB-D headline table, in order
HEADLINE_METHODS = [
    ("default", "default pipeline"),
    ("xfeat-rigid3d", "front end: XFeat + LighterGlue, 3D-3D"),
    ("gmm@xfeat-rigid3d", "the front end + Gaussian mixtures"),
    ("small_gicp@xfeat-rigid3d", "the front end + GICP (small_gicp)"),
    ("open3d-colored-icp@xfeat-rigid3d", "the front end + coloured ICP (Open3D)"),
]


def headline_lines(results: dict) -> list[str]:
    """One table over every RGB-D suite with the mixtures and GICP from the same front-end pose,
    and their paired differences (each suite's own section has every method and the details)."""
    suites = {n: r["summary"] for n, r in results.items()
              if {"gmm@xfeat-rigid3d", "small_gicp@xfeat-rigid3d"} <= set(r["summary"]["methods"])}
    if not suites:
        return []

    def pct(x):
        return "–" if x is None else f"{100 * x:.1f}"

    def num(x, f):
        return "∞" if x is None or x != x or x == float("inf") else format(x, f)

    lines = [
        "## RGB-D suites at a glance",
        "",
        "The refinements of one front-end pose on every RGB-D suite below, and the default pipeline (each",
        "suite's section has all its methods and the command). AUC@5 and P(5 cm, 2°) in %, failures counted.",
        "",
        "| suite | pairs | method | AUC@5° | med. rot (°) | med. t (cm) | P(5cm,2°) | success |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for name, s in suites.items():
        for method, label in HEADLINE_METHODS:
            m = s["methods"].get(method)
            if m is None:
                continue
            t = m.get("median_trans_m")
            lines.append(f"| {name} | {m['num_pairs']} | {label} | {pct(m['auc5'])} | {num(m['median_rot_deg'], '.3f')} | "
                         f"{num(None if t is None else 100 * t, '.1f')} | {pct(m.get('precision_5cm_2deg'))} | "
                         f"{pct(m['success_rate'])} |")
    lines += [
        "",
        "The mixtures minus GICP from the same pose, pair by pair (95 % paired bootstrap interval over the",
        "pairs, 2000 resamples: an interval that excludes 0 is a difference these pairs support):",
        "",
        "| suite | AUC@5 (points) | med. rot (°) | P(5cm,2°) (points) |",
        "|---|---|---|---|",
    ]
    for name, s in suites.items():
        comp = next((c for c in s.get("comparisons", [])
                     if (c["a"], c["b"]) == ("small_gicp@xfeat-rigid3d", "gmm@xfeat-rigid3d")), None)
        if comp is None:
            continue
        cells = []
        for key, scale, f in (("auc5", 100, "+.1f"), ("median_rot_deg", 1, "+.3f"), ("precision_5cm_2deg", 100, "+.1f")):
            d = comp["metrics"].get(key)
            cells.append("–" if d is None or d["diff"] is None else
                         f"{format(scale * d['diff'], f)} [{format(scale * d['low'], f)}, {format(scale * d['high'], f)}]")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""]


def _portable(arg: str, runs: Path) -> str:
    """A command argument with this machine's folders written as the doc's (``../shared/data``,
    ``runs/``, paths inside the repository relative to it)."""
    return arg.replace(str(DATA), "../shared/data").replace(str(runs) + "/", "runs/").replace(str(REPO) + "/", "")


def _workers(cold: dict) -> str:
    n = cold.get("workers", 1)
    return f"{n} worker" + ("s" if n != 1 else "")


def _load_note(r: dict) -> str:
    run = r["cold"] or r["summary"]["run"]
    if not r["cold"] and not run.get("predicted"):  # a re-score: its load says nothing of the predictions
        return "."
    a, b = run.get("loadavg_1min_start"), run.get("loadavg_1min_end")
    return f"; load average {a:.1f} -> {b:.1f} during the predictions." if a is not None and b is not None else "."


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=Path, default=Path.home() / ".cache" / "twoview" / "results")
    ap.add_argument("--only", nargs="+", choices=sorted(SUITES), help="run these suites; the others are re-scored from their cache")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--max-pairs", type=int, metavar="N",
                    help="at most N pairs a suite (a smoke test): runs go to RUNS/subset-N and the doc to RUNS/subset-N/results.md")
    ap.add_argument("--doc", type=Path, help="where to write the results document (default docs/results.md)")
    a = ap.parse_args()
    if not DATA.is_dir():
        print(f"no data at {DATA}", file=sys.stderr)
        return 2
    runs = a.runs / f"subset-{a.max_pairs}" if a.max_pairs else a.runs
    doc = a.doc or (runs / "results.md" if a.max_pairs else REPO / "docs" / "results.md")
    results = {}
    for name in SUITES:
        if a.only and name not in a.only and not (runs / name / "summary.json").is_file():
            continue
        results[name] = run_suite(name, runs, a.workers, a.max_pairs)
    write_doc(results, runs, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
