"""Why the regressor's own rotation misses on an unseen room: how much of the true rotation
it predicts, and about which axis.

    python benchmarks/study_regress_shrinkage.py NAME=CKPT ... [--sets fr3_cabinet fr1_xyz] [--out PREFIX]

For every held-out pair (the lists of ``bench_regress.py``) the network's own rotation
(``rigid_from_matches=false``: no descriptor matches, no solver) is compared with the ground
truth as rotation vectors: the ratio of the predicted to the true angle, the angle between
the two axes, and the rotation error beside the error of predicting no rotation at all (the
true angle). Per set and frame gap, medians over the pairs. Writes PREFIX.json and PREFIX.md
(default ``benchmarks/results/regress_shrinkage``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_regress as br  # noqa: E402

from twoview.geometry.pose import Pose  # noqa: E402


def rotvec(R: np.ndarray) -> np.ndarray:
    return Pose(R, np.zeros(3)).rotvec()


def network_rotations(checkpoint: str, samples) -> list[np.ndarray]:
    """The network's own cam1_from_cam0 rotation per sample (torch, one pair at a time)."""
    import torch

    from twoview.regress.infer import PoseRegressor
    from twoview.regress.train import to_tensor_images

    reg = PoseRegressor.from_checkpoint(checkpoint, runtime="torch", rigid_from_matches=False)
    out = []
    for s in samples:
        p = reg._prepare(str(s.image0), str(s.image1), s.camera0, s.camera1, *s.load_depths())
        depth = [None if p[k] is None else torch.as_tensor(p[k][None].astype(np.float32)) for k in ("depth0", "depth1")]
        with torch.inference_mode():
            o = reg.model(to_tensor_images(p["net0"][None]), to_tensor_images(p["net1"][None]), False, *depth)
        out.append(o["R01"][0].double().numpy())
    return out


def per_gap(samples, rotations) -> list[dict]:
    rows = []
    for s, R in zip(samples, rotations):
        g, p = rotvec(s.cam1_from_cam0.R), rotvec(R)
        ag, ap = np.linalg.norm(g), np.linalg.norm(p)
        err = np.linalg.norm(rotvec(R @ s.cam1_from_cam0.R.T))
        axis = np.arccos(np.clip(g @ p / max(ag * ap, 1e-12), -1, 1)) if ap > 1e-9 else np.nan
        rows.append({"gap": s.meta.get("frame_gap"), "true_deg": np.degrees(ag), "ratio": ap / max(ag, 1e-12),
                     "axis_deg": np.degrees(axis), "error_deg": np.degrees(err)})
    out = []
    for gap in sorted({r["gap"] for r in rows}):
        sel = [r for r in rows if r["gap"] == gap]
        out.append({"gap": gap, "pairs": len(sel), **{k: float(np.nanmedian([r[k] for r in sel]))
                                                      for k in ("true_deg", "ratio", "axis_deg", "error_deg")}})
    return out


def markdown(res: dict) -> str:
    lines = ["# The regressor's own rotation on held-out pairs: how much of the motion it predicts", "",
             "`python benchmarks/study_regress_shrinkage.py " + " ".join(f"{k}={v}" for k, v in res["checkpoints"].items())
             + " --sets " + " ".join(res["sets"]) + "` (medians over the pairs of each frame gap; the pair lists of "
             "`bench_regress.py`). *no rotation* is the error of predicting none (the true angle); *predicted / true "
             "angle* and *axis error* compare the two rotation vectors.", ""]
    for name, per_ck in res["results"].items():
        lines += [f"## {name}", "", "| model | gap (index) | pairs | true angle = error of no rotation (deg) | network's error "
                  "(deg) | predicted / true angle | axis error (deg) |", "|---|---:|---:|---:|---:|---:|---:|"]
        for ck, rows in per_ck.items():
            lines += [f"| {ck} | {r['gap']} | {r['pairs']} | {r['true_deg']:.1f} | {r['error_deg']:.2f} | {r['ratio']:.2f} | "
                      f"{r['axis_deg']:.1f} |" for r in rows]
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    from twoview.datasets import get_dataset
    from twoview.io.atomic import atomic_write_json, atomic_write_text

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+", metavar="NAME=CKPT")
    ap.add_argument("--sets", nargs="+", default=["fr3_cabinet", "fr1_xyz"], choices=list(br.HELDOUT))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "regress_shrinkage"))
    a = ap.parse_args(argv)
    cks = dict(c.split("=", 1) for c in a.checkpoints)
    res = {"checkpoints": cks, "sets": a.sets, "results": {}}
    for name in a.sets:
        f = br.bench_fields(name)
        samples = list(get_dataset(f["dataset"], f["root"], **f["dataset_options"]).pairs())
        res["results"][name] = {ck: per_gap(samples, network_rotations(path, samples)) for ck, path in cks.items()}
    out = Path(a.out)
    atomic_write_json(out.with_suffix(".json"), res)
    atomic_write_text(out.with_suffix(".md"), markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
