"""Benchmark: how fast the command line answers, cold, and many pairs in one call.

    python benchmarks/bench_cli.py            # 5 cold starts each, 100 pairs both ways (~4 min)
    python benchmarks/bench_cli.py --quick    # 3 cold starts, 20 pairs

1. Cold start: wall time from the command's start to its printed pose (the process exits
   right after), median of ``--repeat`` fresh processes, for ``twoview estimate`` on an
   ICL-NUIM RGB-D pair with the default pipeline (which refines with Gaussian mixtures)
   and with ``--refine none``, each also with SIFT alone; XFeat under torch
   (``--matcher-runtime torch``) against the default onnxruntime; also ``twoview --help``.
   The first run (numba kernels compiled on a fresh install, XFeat exported to ONNX into
   an empty cache) is reported apart; the others are every later start.
2. Many pairs: ``twoview estimate --pairs`` on N ICL-NUIM pairs (one process) against N
   separate ``twoview estimate`` calls, and with ``--workers 2``.

Writes benchmarks/results/cli.json and cli.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
DATA = REPO.parent / "shared" / "data" / "icl_nuim_livingroom1"
K = "481.2,480.0,319.5,239.5"


def _twoview() -> list[str]:
    exe = shutil.which("twoview")
    return [exe] if exe else [sys.executable, "-m", "twoview.cli"]


def _pair(a: int, b: int) -> list[str]:
    return [str(DATA / "color" / f"{a:05d}.jpg"), str(DATA / "color" / f"{b:05d}.jpg"), "--K0", K,
            "--depth0", str(DATA / "depth_clean" / f"{a:05d}.png"), "--depth1", str(DATA / "depth_clean" / f"{b:05d}.png"),
            "--depth-scale", "1000"]


def _timed(cmd: list[str]) -> tuple[float, str]:
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    return time.perf_counter() - t, p.stdout + p.stderr


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--pairs", type=int, default=100)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "cli"))
    ap.add_argument("--cold-only", action="store_true",
                    help="time the cold starts only; keep the many-pairs table of the existing results (with its date)")
    a = ap.parse_args(argv)
    if a.quick:
        a.repeat, a.pairs = 3, 20
    tv = _twoview()
    load0 = os.getloadavg()[0]
    # as on a user's machine, the first run writes twoview's bytecode for the later ones (some
    # sandboxes set PYTHONDONTWRITEBYTECODE, which makes every start compile the sources: +0.1 s)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    # a cache of its own, so the first run shows the one-time ONNX export of XFeat
    os.environ["TWOVIEW_CACHE"] = tempfile.mkdtemp(prefix="twoview-bench-cli-")
    first_s, _ = _timed(tv + ["estimate", *_pair(10, 20)])  # also compiles the kernels on a fresh install
    cold = {"estimate, first run (empty cache: exports XFeat to ONNX)": {"median_s": first_s, "runs_s": [first_s]}}
    # the default runs XFeat under onnxruntime (no torch import); --matcher-runtime torch is
    # the same matcher in torch; SIFT alone needs neither
    for name, extra in (("estimate (default: refines)", []), ("estimate --refine none", ["--refine", "none"]),
                        ("estimate --matcher-runtime torch (refines)", ["--matcher-runtime", "torch"]),
                        ("estimate --matcher sift --cascade none (refines)", ["--matcher", "sift", "--cascade", "none"]),
                        ("estimate --matcher sift --cascade none --refine none", ["--matcher", "sift", "--cascade", "none", "--refine", "none"])):
        runs = []
        for _ in range(a.repeat):
            s, out = _timed(tv + ["estimate", *_pair(10, 20), *extra])
            if "cam1_from_cam0" not in out:
                raise SystemExit(f"no pose printed by {name}: {out[-500:]}")
            runs.append(s)
        cold[name] = {"median_s": float(np.median(runs)), "runs_s": runs}
    helps = [_timed(tv + ["--help"])[0] for _ in range(a.repeat)]
    cold["--help"] = {"median_s": float(np.median(helps)), "runs_s": helps}
    # the floor under any torch front end (XFeat, LightGlue, the regressor)
    torch_import = [_timed([sys.executable, "-c", "import torch"])[0] for _ in range(a.repeat)]
    cold["python -c 'import torch'"] = {"median_s": float(np.median(torch_import)), "runs_s": torch_import, "not_twoview": True}
    outp = Path(a.out)
    if a.cold_only:
        old = json.loads(outp.with_suffix(".json").read_text()) if outp.with_suffix(".json").exists() else {}
        many, many_meta = old.get("many_pairs", {}), old.get("many_pairs_meta") or old.get("meta")
    else:
        many, many_meta = _many_pairs(tv, a.pairs), None
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    meta = {"command": " ".join(["python", "benchmarks/bench_cli.py", *(argv if argv is not None else sys.argv[1:])]),
            "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "commit": commit, "machine": platform.machine(),
            "cpus": os.cpu_count(), "load_before": load0, "load_after": os.getloadavg()[0],
            "pairs": 0 if a.cold_only else min(a.pairs, 100)}  # pairs this run ran (100 frames at most)
    res = {"meta": meta, "cold_start": cold, "many_pairs": many, "many_pairs_meta": many_meta or meta}
    from twoview.io.atomic import atomic_write_json, atomic_write_text

    atomic_write_json(outp.with_suffix(".json"), res)
    md = _markdown(res)
    atomic_write_text(outp.with_suffix(".md"), md)
    print(md)
    return 0


def _many_pairs(tv: list[str], n: int) -> dict:
    """``--pairs`` on ``n`` ICL-NUIM pairs (1 and 2 workers) against ``n`` separate calls."""
    frames = list(range(0, 200, 2))
    pairs = [(frames[k], frames[k] + 10) for k in range(min(n, len(frames)))]
    many = {}
    with tempfile.TemporaryDirectory() as tmp:
        lst = Path(tmp) / "pairs.csv"
        with open(lst, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["image0", "image1", "K0", "depth0", "depth1", "depth_scale"])
            for a0, a1 in pairs:
                w.writerow([DATA / "color" / f"{a0:05d}.jpg", DATA / "color" / f"{a1:05d}.jpg", K.replace(",", " "),
                            DATA / "depth_clean" / f"{a0:05d}.png", DATA / "depth_clean" / f"{a1:05d}.png", 1000])
        for workers in (1, 2):
            out = Path(tmp) / f"out{workers}.jsonl"
            s, log = _timed(tv + ["estimate", "--pairs", str(lst), "--json", str(out), "--workers", str(workers), "--no-progress"])
            n_lines = sum(1 for _ in open(out))
            ok = sum(json.loads(line).get("success", False) for line in open(out))
            many[f"--pairs, {workers} worker{'s' if workers > 1 else ''}"] = {"total_s": s, "per_pair_s": s / len(pairs),
                                                                               "lines": n_lines, "poses": ok}
        t = time.perf_counter()
        for a0, a1 in pairs:
            subprocess.run(tv + ["estimate", *_pair(a0, a1)], capture_output=True, cwd=REPO)
        s = time.perf_counter() - t
        many["separate calls, one at a time"] = {"total_s": s, "per_pair_s": s / len(pairs), "lines": len(pairs)}
    return many


def _markdown(res) -> str:
    m = res["meta"]
    lines = ["# Command line: cold start and many pairs", "",
             f"`{m['command']}` at {m['commit']}, {m['date_utc']} UTC; {m['machine']}, {m['cpus']} cores, load average "
             f"{m['load_before']:.1f} before / {m['load_after']:.1f} after. ICL-NUIM livingroom1 640x480 RGB-D pairs.", "",
             "Cold start (command start to printed pose, fresh process, compiled kernels cached):", "",
             "| command | median (s) | runs (s) |", "|---|---:|---|"]
    for k, v in res["cold_start"].items():
        cmd = k if v.get("not_twoview") else f"twoview {k}"
        lines.append(f"| `{cmd}` | {v['median_s']:.2f} | {', '.join(f'{x:.2f}' for x in v['runs_s'])} |")
    mm = res.get("many_pairs_meta") or m
    when = "" if mm is m or mm.get("commit") == m["commit"] else f", measured at {mm['commit']}, {mm['date_utc']} UTC"
    lines += ["", f"{mm['pairs']} pairs (frame gap 10{when}):", "", "| how | total (s) | per pair (s) |", "|---|---:|---:|"]
    for k, v in res["many_pairs"].items():
        lines.append(f"| {k} | {v['total_s']:.1f} | {v['per_pair_s']:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
