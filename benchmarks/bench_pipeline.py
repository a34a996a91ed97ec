"""Benchmark: time per pair of the default pipeline, stage by stage (warm process).

    python benchmarks/bench_pipeline.py            # ~40 RGB-D pairs, 640x480 and 540x360
    python benchmarks/bench_pipeline.py --quick    # 10 pairs

What `twoview estimate` (and `twoview.estimate_relative_pose`) runs, on real RGB-D pairs
of ICL-NUIM livingroom1, TUM fr3 cabinet and the HoloLens sequence, in one process that
has already estimated a pair (models loaded, compiled kernels loaded): the wall time of
each estimate and of each of its stages (`result.timings_ms`), median and p90 over the
pairs, for the default configuration and for the same pipeline with SIFT as its first
matcher (the default without torch). The budget of issue 17 is 400 ms per 640x480 pair on
two cores.

Writes benchmarks/results/pipeline.json and pipeline.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
DATA = REPO.parent / "shared" / "data"

CONFIGS = {"default": {}, "default with SIFT first": {"matcher": {"name": "sift"}, "cascade": {"fallback": "xfeat"}}}


def pairs(quick: bool):
    from twoview.datasets import get_dataset

    icl = get_dataset("icl_nuim", DATA / "icl_nuim_livingroom1", trajectory="pseudo_gt_in_gt_world_frame.log",
                      gaps=[10, 30], stride=40 if quick else 10)
    cab = get_dataset("tum", DATA / "tum" / "fr3_cabinet_keyframes", max_gt_gap=1.0, gaps=[1, 2], stride=12 if quick else 4)
    holo = get_dataset("redwood", DATA / "hololens_dvmvs_000", trajectory="trajectory.log", gaps=[1], stride=30 if quick else 8)
    return icl.pairs() + cab.pairs() + holo.pairs()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "pipeline"))
    a = ap.parse_args(argv)
    from twoview import Pipeline, load_views

    samples = pairs(a.quick)
    load0 = os.getloadavg()[0]
    views = [load_views(s.image0, s.image1, s.camera0, s.camera1, *s.load_depths()) for s in samples]
    report = {}
    for name, cfg in CONFIGS.items():
        pipe = Pipeline(cfg)
        pipe(*views[0])  # warm: models and compiled kernels loaded
        walls, stages, ok = [], {}, 0
        for v in views:
            t = time.perf_counter()
            r = pipe(*v)
            walls.append((time.perf_counter() - t) * 1e3)
            ok += r.success
            for k, ms in r.timings_ms.items():
                stages.setdefault(k, []).append(ms)
        report[name] = {
            "config": pipe.config.to_dict(), "pairs": len(views), "poses": ok,
            "wall_ms": {"median": float(np.median(walls)), "p90": float(np.percentile(walls, 90))},
            # a stage that did not run on a pair counts as 0 ms there
            "stages_ms": {k: {"median": float(np.median(v + [0.0] * (len(views) - len(v)))),
                              "mean": float(np.sum(v) / len(views)), "ran_on": len(v)} for k, v in stages.items()},
        }
        print(f"{name}: median {report[name]['wall_ms']['median']:.0f} ms per pair", flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    meta = {"command": " ".join(["python", "benchmarks/bench_pipeline.py", *(argv if argv is not None else sys.argv[1:])]),
            "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "commit": commit, "machine": platform.machine(),
            "cpus": os.cpu_count(), "load_before": load0, "load_after": os.getloadavg()[0]}
    from twoview.io.atomic import atomic_write_json, atomic_write_text

    out = Path(a.out)
    atomic_write_json(out.with_suffix(".json"), {"meta": meta, "results": report})
    md = markdown(meta, report)
    atomic_write_text(out.with_suffix(".md"), md)
    print(md)
    return 0


def markdown(meta, report) -> str:
    lines = ["# The default pipeline: time per pair, stage by stage", "",
             f"`{meta['command']}` at {meta['commit']}, {meta['date_utc']} UTC; {meta['machine']}, {meta['cpus']} cores, "
             f"load average {meta['load_before']:.1f} before / {meta['load_after']:.1f} after. Warm process (models and "
             "compiled kernels loaded); RGB-D pairs of ICL-NUIM (640x480), TUM fr3 cabinet (640x480) and HoloLens "
             "(540x360). Budget (issue 17): 400 ms per 640x480 pair on two cores.", ""]
    for name, r in report.items():
        lines += [f"## {name} ({r['poses']} poses of {r['pairs']} pairs)", "",
                  f"Per pair: median {r['wall_ms']['median']:.0f} ms, p90 {r['wall_ms']['p90']:.0f} ms.", "",
                  "| stage | median ms | mean ms | ran on |", "|---|---:|---:|---:|"]
        for k, v in sorted(r["stages_ms"].items(), key=lambda kv: -kv[1]["mean"]):
            lines.append(f"| {k} | {v['median']:.0f} | {v['mean']:.0f} | {v['ran_on']} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
