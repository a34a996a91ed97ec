"""Pose regression benchmark: inference speed and the GCR vs no-GCR comparison.

    python benchmarks/bench_regress.py --speed
    python benchmarks/bench_regress.py --compare gcr_s0=runs/regress_tiny_gcr/model.pt \
        nogcr_s0=runs/regress_tiny_nogcr/model.pt

Speed: the tiny model at batch 1 on this CPU (1 thread): network forward alone (frozen
stem included) and ``twoview.regress.estimate`` end to end (image decode + resize +
forward); target <= 30 ms per pair. CPU time (``time.process_time``) and wall time,
median and minimum over repeats (the machine is shared), with the load average.

Comparison: the bench harness itself (``twoview.bench.runner.run_benchmark``, the code
behind ``twoview bench``), every checkpoint as a method ``regress:checkpoint=PATH`` in
ONE run per held-out set (the equivalent ``twoview bench`` commands are printed):
- ICL-NUIM livingroom1 frames 160-210 (not trained on), all 871 pairs with gap 5-30
  (benchmarks/pairs/icl_livingroom1_heldout_160-210.txt; pseudo-GT trajectory);
- TUM fr1_xyz, all 15 pairs (real Kinect images, raw/distorted as stored).
Bench outputs go to runs/bench_regress/<set>/ (report.html, per_pair.csv, plots).

Writes benchmarks/results/regress.json and regress.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"


def _timed(fn, repeats: int) -> tuple[list[float], list[float]]:
    """Wall and CPU milliseconds of ``fn()`` over ``repeats`` calls (after 5 warm-up calls)."""
    for _ in range(5):
        fn()
    wall, cpu = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        cpu.append(1e3 * (time.process_time() - c0))
        wall.append(1e3 * (time.perf_counter() - w0))
    return wall, cpu


def bench_speed(checkpoint: str | None, repeats: int = 100, threads: int = 1) -> dict:
    """Batch-1 timings at ``threads`` torch threads: forward (stem included), stem alone,
    estimate()."""
    import torch

    from twoview.regress.config import preset
    from twoview.regress.infer import estimate, load_regressor
    from twoview.regress.model import RelPoseRegressor

    torch.set_num_threads(threads)
    model = load_regressor(checkpoint) if checkpoint else RelPoseRegressor(preset("tiny")).eval()
    cfg = model.cfg
    x = torch.randn(1, 3, cfg.img_height, cfg.img_width)
    out = {"input": f"{cfg.img_width}x{cfg.img_height}", "stem": cfg.stem,
           "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
           "load_avg_1min_before": os.getloadavg()[0]}
    with torch.inference_mode():
        parts = {"forward": lambda: model(x, x, both=False)}
        if model.stem is not None:
            xx = torch.cat((x, x))
            parts["stem"] = lambda: model.stem(xx)
        for name, fn in parts.items():
            wall, cpu = _timed(fn, repeats)
            out.update({f"{name}_cpu_ms_median": float(np.median(cpu)), f"{name}_cpu_ms_min": float(np.min(cpu)),
                        f"{name}_wall_ms_median": float(np.median(wall)), f"{name}_wall_ms_min": float(np.min(wall))})
    img0 = DATA / "icl_nuim_livingroom1" / "color" / "00160.jpg"
    img1 = DATA / "icl_nuim_livingroom1" / "color" / "00170.jpg"
    if img0.is_file():
        ck = checkpoint
        if ck is None:
            import tempfile

            ck = str(Path(tempfile.mkdtemp()) / "random.pt")
            torch.save({"format": "twoview-regress", "version": 1, "model_config": cfg.to_dict(), "model": model.state_dict()}, ck)
        wall, cpu = _timed(lambda: estimate(img0, img1, checkpoint=ck), max(20, repeats // 2))
        out.update({"estimate_cpu_ms_median": float(np.median(cpu)), "estimate_cpu_ms_min": float(np.min(cpu)),
                    "estimate_wall_ms_median": float(np.median(wall)), "estimate_wall_ms_min": float(np.min(wall))})
    out["load_avg_1min_after"] = os.getloadavg()[0]
    return out


PAIRS_ICL = ROOT / "benchmarks" / "pairs" / "icl_livingroom1_heldout_160-210.txt"


def heldout_pairs_file() -> Path:
    """The ICL held-out pair list (frames 160-210, every pair with gap 5-30)."""
    from twoview.io.atomic import atomic_write_text

    pairs = [(a, b) for a in range(160, 211) for b in range(a + 5, min(a + 30, 210) + 1)]
    text = "# ICL-NUIM livingroom1 held-out pairs (frames 160-210, gap 5-30); not in training (frames 0-150)\n"
    text += "".join(f"{a} {b}\n" for a, b in pairs)
    if not PAIRS_ICL.is_file() or PAIRS_ICL.read_text() != text:
        atomic_write_text(PAIRS_ICL, text)
    return PAIRS_ICL


def heldout_sets() -> dict:
    """Held-out set name -> BenchConfig fields (dataset, root, dataset_options)."""
    return {
        "icl_160-210": {"dataset": "icl_nuim", "root": str(DATA / "icl_nuim_livingroom1"),
                        "dataset_options": {"trajectory": "pseudo_gt_open3d_reconstruction.log",
                                            "pairs_file": str(heldout_pairs_file())}},
        "tum_fr1_xyz": {"dataset": "tum", "root": str(DATA / "tum" / "fr1_xyz"), "dataset_options": {"gaps": [1, 2, 3, 4, 5]}},
    }


def cli_command(fields: dict, methods: list[str], out: str) -> str:
    """The ``twoview bench`` command equivalent to a BenchConfig."""
    o = fields["dataset_options"]
    args = ["twoview bench", f"--dataset {fields['dataset']}", f"--root {os.path.relpath(fields['root'], ROOT)}"]
    if "trajectory" in o:
        args.append(f"--option trajectory={o['trajectory']}")
    if "pairs_file" in o:
        args.append(f"--pairs {Path(o['pairs_file']).relative_to(ROOT)}")
    if "gaps" in o:
        args.append("--gap " + " ".join(map(str, o["gaps"])))
    args += [f"--method {m}" for m in methods] + [f"--out {out}"]
    return " ".join(args)


def compare(models: dict[str, str], extra_methods: list[str] = (), out_root: Path | None = None) -> tuple[dict, list[str]]:
    """Every checkpoint (and extra methods) on each held-out set, one bench run per set.

    Returns:
        ({set: {name: bench summary}}, the equivalent ``twoview bench`` commands).
    """
    import torch

    from twoview.bench.runner import BenchConfig, run_benchmark

    torch.set_num_threads(1)
    out_root = out_root or ROOT / "runs" / "bench_regress"
    specs = {name: f"regress:checkpoint={path}" for name, path in models.items()}
    specs.update({m: m for m in extra_methods})
    out, commands = {}, []
    for dname, fields in heldout_sets().items():
        dest = out_root / dname
        cfg = BenchConfig.from_dict({**fields, "methods": list(specs.values()), "out": str(dest), "overwrite": True,
                                     "progress": False})
        commands.append(cli_command(fields, list(specs.values()), str(dest.relative_to(ROOT)) if dest.is_relative_to(ROOT) else str(dest)))
        summary = run_benchmark(cfg)
        out[dname] = {name: summary["methods"][spec] for name, spec in specs.items()}
    return out, commands


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
        lines += ["## Inference speed (shipped tiny model, batch 1; CPU ms = process time, all threads)", "",
                  "| torch threads | input | stem | params (M) | forward wall median / min | forward CPU median | "
                  "stem wall median | estimate() wall median / min | estimate() CPU median | load avg before / after |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for n, s in res["speed"].items():
            f = lambda k: _fmt(s.get(k))  # noqa: E731
            lines.append(
                f"| {n} | {s['input']} | {s.get('stem', 'patch')} | {s['params_M']:.2f} | {f('forward_wall_ms_median')} / "
                f"{f('forward_wall_ms_min')} | {f('forward_cpu_ms_median')} | {f('stem_wall_ms_median')} | "
                f"{f('estimate_wall_ms_median')} / {f('estimate_wall_ms_min')} | {f('estimate_cpu_ms_median')} | "
                f"{f('load_avg_1min_before')} / {f('load_avg_1min_after')} |")
        lines.append("")
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
        if res.get("bench_commands"):
            lines += ["Equivalent `twoview bench` runs (one per held-out set, all models in the same run):", ""]
            lines += [f"    {c}" for c in res["bench_commands"]] + [""]
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
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch thread counts for --speed")
    ap.add_argument("--checkpoint", help="checkpoint for --speed (default: the shipped one if present, else random init)")
    ap.add_argument("--compare", nargs="+", metavar="NAME=PATH", help="checkpoints to evaluate on the held-out pairs")
    ap.add_argument("--extra-method", action="append", default=[], metavar="SPEC",
                    help="another bench method in the same runs (e.g. sift), for context")
    ap.add_argument("--notes", default="", help="text for the Notes section")
    ap.add_argument("--out", default=str(RESULTS / "regress"), help="output prefix (.json and .md)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    prev = {}
    pj = Path(args.out + ".json")
    if pj.is_file():
        prev = json.loads(pj.read_text())
    res = {"machine": platform.processor() or platform.machine(), **{k: v for k, v in prev.items() if k in ("speed", "compare", "checkpoints", "bench_commands", "notes")}}
    if args.speed:
        from twoview.regress.infer import DEFAULT_CHECKPOINT

        ck = args.checkpoint or (str(DEFAULT_CHECKPOINT) if DEFAULT_CHECKPOINT.is_file() else None)
        res["speed"] = {}
        for n in args.threads:
            res["speed"][str(n)] = bench_speed(ck, threads=n)
            res["speed"][str(n)]["checkpoint"] = ck or "random init (tiny preset)"
        print(json.dumps(res["speed"], indent=1))
    if args.compare:
        models = dict(a.split("=", 1) for a in args.compare)
        res["compare"], res["bench_commands"] = compare(models, args.extra_method)
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
