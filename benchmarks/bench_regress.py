"""Pose regression benchmark: inference speed and the GCR vs no-GCR comparison.

    python benchmarks/bench_regress.py --speed
    python benchmarks/bench_regress.py --compare gcr=runs/regress_tiny_gcr/model.pt \
        nogcr=runs/regress_tiny_nogcr/model.pt

Speed: the tiny model at batch 1 on this CPU (1 thread), network forward alone and
``twoview.regress.estimate`` end to end (image decode + resize + forward); target
<= 30 ms per pair. Reported as median and minimum over repeats (the machine is shared).

Comparison: every model on the same held-out pairs in one run, through the bench
method contract (``make_method("regress", {"checkpoint": ...})``) and the bench's
dataset readers and scoring (``twoview.metrics.summarize_errors``):
- ICL-NUIM livingroom1 frames 160-210 (not trained on), all pairs with gap 5-30
  (pseudo-GT trajectory);
- TUM fr1_xyz, all 15 pairs (real Kinect images, raw/distorted as stored).

Writes benchmarks/results/regress.json and regress.md (and regress.icl_heldout_pairs.txt,
the pair list used).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"


def bench_speed(checkpoint: str | None, repeats: int = 50) -> dict:
    import torch

    from twoview.regress.config import preset
    from twoview.regress.infer import estimate, load_regressor
    from twoview.regress.model import RelPoseRegressor

    torch.set_num_threads(1)
    if checkpoint:
        model = load_regressor(checkpoint)
    else:
        model = RelPoseRegressor(preset("tiny")).eval()
    cfg = model.cfg
    x = torch.randn(1, 3, cfg.img_height, cfg.img_width)
    ts = []
    with torch.inference_mode():
        for _ in range(5):
            model(x, x, both=False)
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x, x, both=False)
            ts.append(1e3 * (time.perf_counter() - t0))
    out = {"input": f"{cfg.img_width}x{cfg.img_height}", "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
           "forward_ms_median": float(np.median(ts)), "forward_ms_min": float(np.min(ts))}
    img0 = DATA / "icl_nuim_livingroom1" / "color" / "00160.jpg"
    img1 = DATA / "icl_nuim_livingroom1" / "color" / "00170.jpg"
    if checkpoint and img0.is_file():
        te = []
        for _ in range(max(5, repeats // 2)):
            t0 = time.perf_counter()
            estimate(img0, img1, checkpoint=checkpoint)
            te.append(1e3 * (time.perf_counter() - t0))
        out.update({"estimate_ms_median": float(np.median(te)), "estimate_ms_min": float(np.min(te))})
    try:
        import os

        out["load_avg_1min"] = os.getloadavg()[0]
    except OSError:
        pass
    return out


def heldout_datasets() -> dict:
    from twoview.datasets import get_dataset

    icl = DATA / "icl_nuim_livingroom1"
    pairs = [(a, b) for a in range(160, 211) for b in range(a + 5, min(a + 30, 210) + 1)]
    pf = RESULTS / "regress.icl_heldout_pairs.txt"
    RESULTS.mkdir(parents=True, exist_ok=True)
    from twoview.io.atomic import atomic_write_text

    atomic_write_text(pf, "# ICL-NUIM livingroom1 held-out pairs (frames 160-210, gap 5-30)\n" + "".join(f"{a} {b}\n" for a, b in pairs))
    return {
        "icl_160-210": get_dataset("icl_nuim", icl, trajectory="pseudo_gt_open3d_reconstruction.log", pairs_file=str(pf)),
        "tum_fr1_xyz": get_dataset("tum", DATA / "tum" / "fr1_xyz", gaps=[1, 2, 3, 4, 5]),
    }


def compare(models: dict[str, str]) -> dict:
    import torch

    from twoview.bench.methods import make_method
    from twoview.metrics import pose_errors, summarize_errors

    torch.set_num_threads(1)
    methods = {name: make_method("regress", {"checkpoint": path}) for name, path in models.items()}
    out = {}
    for dname, ds in heldout_datasets().items():
        samples = list(ds.pairs())
        out[dname] = {}
        for name, m in methods.items():
            recs = []
            for s in samples:
                t0 = time.perf_counter()
                res = m(s)
                ms = 1e3 * (time.perf_counter() - t0)
                e = pose_errors(res.cam1_from_cam0 if res.success else None, s.cam1_from_cam0, m.metric)
                recs.append({**e, "success": res.success, "ms": ms})
            out[dname][name] = summarize_errors(recs, m.metric)
    return out


def _fmt(v, pct=False):
    if v is None:
        return "-"
    if isinstance(v, float):
        if not np.isfinite(v):
            return "inf" if v > 0 else "nan"
        return f"{100 * v:.1f}" if pct else f"{v:.3g}"
    return str(v)


def markdown(res: dict) -> str:
    lines = ["# Pose regression benchmark (twoview.regress)", ""]
    if "speed" in res:
        s = res["speed"]
        lines += ["## Inference speed (tiny model, batch 1, 1 CPU thread, shared machine)", "",
                  "| input | params (M) | forward median ms | forward min ms | estimate() median ms | estimate() min ms | load avg |",
                  "|---|---|---|---|---|---|---|",
                  f"| {s['input']} | {s['params_M']:.2f} | {s['forward_ms_median']:.1f} | {s['forward_ms_min']:.1f} | "
                  f"{_fmt(s.get('estimate_ms_median'))} | {_fmt(s.get('estimate_ms_min'))} | {_fmt(s.get('load_avg_1min'))} |", ""]
    if "compare" in res:
        lines += ["## Held-out accuracy (AUC in %, SuperGlue trapezoid; medians in degrees / metres)", "",
                  "| dataset | model | pairs | AUC@5 | AUC@10 | AUC@20 | med rot | med t-angle | med t (m) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for d, per in res["compare"].items():
            for name, s in per.items():
                lines.append(f"| {d} | {name} | {s['num_pairs']} | {_fmt(s['auc5'], 1)} | {_fmt(s['auc10'], 1)} | "
                             f"{_fmt(s['auc20'], 1)} | {_fmt(s['median_rot_deg'])} | {_fmt(s['median_trans_deg'])} | "
                             f"{_fmt(s.get('median_trans_m'))} |")
        lines += ["", "Checkpoints: " + ", ".join(f"{k} = `{v}`" for k, v in res.get("checkpoints", {}).items()), ""]
    if res.get("notes"):
        lines += ["## Notes", "", res["notes"], ""]
    return "\n".join(lines)


def _clean(o):
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_clean(v) for v in o]
    if isinstance(o, float) and not np.isfinite(o):
        return None
    return o


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--speed", action="store_true", help="time the tiny model at batch 1")
    ap.add_argument("--checkpoint", help="checkpoint for --speed (default: the shipped one if present, else random init)")
    ap.add_argument("--compare", nargs="+", metavar="NAME=PATH", help="checkpoints to evaluate on the held-out pairs")
    ap.add_argument("--notes", default="", help="text for the Notes section")
    ap.add_argument("--out", default=str(RESULTS / "regress"), help="output prefix (.json and .md)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    prev = {}
    pj = Path(args.out + ".json")
    if pj.is_file():
        prev = json.loads(pj.read_text())
    res = {"machine": platform.processor() or platform.machine(), **{k: v for k, v in prev.items() if k in ("speed", "compare", "checkpoints", "notes")}}
    if args.speed:
        from twoview.regress.infer import DEFAULT_CHECKPOINT

        ck = args.checkpoint or (str(DEFAULT_CHECKPOINT) if DEFAULT_CHECKPOINT.is_file() else None)
        res["speed"] = bench_speed(ck)
        res["speed"]["checkpoint"] = ck or "random init (tiny preset)"
        print(json.dumps(res["speed"], indent=1))
    if args.compare:
        models = dict(a.split("=", 1) for a in args.compare)
        res["compare"] = compare(models)
        res["checkpoints"] = models
        print(json.dumps(_clean(res["compare"]), indent=1))
    if args.notes:
        res["notes"] = args.notes
    from twoview.io.atomic import atomic_write_json, atomic_write_text

    atomic_write_json(args.out + ".json", _clean(res))
    atomic_write_text(args.out + ".md", markdown(res))
    print(f"wrote {args.out}.json and {args.out}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
