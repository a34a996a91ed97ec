"""Pose regression benchmark: held-out accuracy (GCR vs plain, seeds, bootstrap intervals),
beside the matching front ends, confidence quality, calibration and inference speed.

    python benchmarks/bench_regress.py --pairs                       # (re)write the held-out pair lists
    python benchmarks/bench_regress.py --calibrate CKPT              # fit CKPT's confidence (calibration pairs)
    python benchmarks/bench_regress.py --compare gcr_s0=runs/.../model.pt plain_s0=... \\
        --extra sift-rigid3d sift-rigid3d --extra gmm@regress gmm@regress:checkpoint=... --confidence gcr_s0
    python benchmarks/bench_regress.py --speed [--checkpoint CKPT]

Held-out sets (from configs/regress_split.json; pair lists in benchmarks/pairs/, frames
never trained on): TUM fr3_cabinet (an unseen room; keyframe gaps 1, 2, 3, 6, 12 = 20-240
frames at 30 Hz), TUM fr1_rpy frames 42-57 (gaps 1, 2, 5, 10 = 12-120 frames), TUM fr1_xyz
(all 15 pairs), ICL-NUIM frames 160-210 (gaps 10, 20, 30, 40). Each set is ONE run of the
bench harness (``twoview.bench.runner.run_benchmark``, the code behind ``twoview bench``)
with every method in it; the equivalent ``twoview bench`` commands are printed and saved.

Statistics: AUC@5/10/20 (SuperGlue trapezoid over max(rotation, translation-angle)
error), median rotation / translation errors, P(5 cm, 2 deg); per group of seeds (names
``<group>_s<seed>``) the mean over seeds with a 95 % bootstrap interval over pairs (pairs
resampled, the same resample for every seed and method: paired); the GCR - plain
difference with its interval. Per 30 Hz frame gap: TUM gaps from the timestamps.
Confidence: AUROC for "good" (rotation < 5 deg and translation < 10 cm) and a reliability
table, read from the bench's prediction cache. Outputs: benchmarks/results/regress.json/.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
PAIRS = ROOT / "benchmarks" / "pairs"
RUNS = ROOT.parent / "runs" / "regress" / "bench"

#: held-out set -> (split sequence, frame gaps of its pair list)
HELDOUT = {
    "fr3_cabinet": ("tum_fr3_cabinet", [1, 2, 3, 6, 12]),
    "fr1_rpy_42-57": ("tum_fr1_rpy", [1, 2, 5, 10]),
    "fr1_xyz": ("tum_fr1_xyz", [1, 2, 3, 4, 5]),
    "icl_160-210": ("icl_livingroom1", [10, 20, 30, 40]),
}
#: calibration pairs of the confidence: held-out frames of seen rooms, other gaps than the test lists
CALIBRATION = {"icl_livingroom1": [5, 15, 25, 35, 45], "tum_fr1_rpy": [1, 2, 3, 4, 6, 8]}
#: 30 Hz frames per frame index of each sequence (TUM: measured from the timestamps instead)
FRAMES_PER_INDEX = {"icl_livingroom1": 1}


# --- pair lists ---------------------------------------------------------------------------
def heldout_frames(seq_name: str):
    """(dataset reader, held-out frames) of a split sequence."""
    from twoview.regress.split import load_split, open_sequence

    split, root = load_split()
    spec = split.sequence(seq_name)
    ds = open_sequence(spec, root)
    return spec, ds, [f for f in ds.frames if spec.selects("heldout", f.index)]


def pair_list(seq_name: str, gaps: list[int]) -> list[tuple[str, str]]:
    """Every pair of held-out frames of ``seq_name`` ``gap`` indices apart (both in the held-out set)."""
    _, _, frames = heldout_frames(seq_name)
    by_index = {f.index: f for f in frames}
    return [(f.frame_id, by_index[f.index + g].frame_id) for g in gaps for f in frames if f.index + g in by_index]


def write_pairs(name: str, seq_name: str, gaps: list[int], prefix: str = "") -> Path:
    from twoview.io.atomic import atomic_write_text

    path = PAIRS / f"{prefix}{name}.txt"
    text = (f"# {prefix or 'held-out '}pairs of split sequence {seq_name} (configs/regress_split.json), frame-index gaps "
            f"{gaps}; frames never trained on. Written by benchmarks/bench_regress.py --pairs.\n")
    text += "".join(f"{a} {b}\n" for a, b in pair_list(seq_name, gaps))
    if not path.is_file() or path.read_text() != text:
        atomic_write_text(path, text)
    return path


def bench_fields(name: str) -> dict:
    """BenchConfig fields of a held-out set."""
    from twoview.regress.split import load_split

    seq_name, _ = HELDOUT[name]
    split, root = load_split()
    spec = split.sequence(seq_name)
    return {"dataset": spec.dataset, "root": str(root / spec.root),
            "dataset_options": {**spec.options, "pairs_file": str(PAIRS / f"{name}.txt")}}


def cli_command(fields: dict, methods: list[str], out: str) -> str:
    """The ``twoview bench`` command equivalent to a BenchConfig."""
    o = dict(fields["dataset_options"])
    args = ["twoview bench", f"--dataset {fields['dataset']}", f"--root {os.path.relpath(fields['root'], ROOT)}",
            f"--pairs {Path(o.pop('pairs_file')).relative_to(ROOT)}"]
    args += [f"--option {k}={json.dumps(v)}" for k, v in o.items()]
    args += ["--precision 0.05 2"] + [f"--method {m}" for m in methods] + [f"--out {out}"]
    return " ".join(args)


# --- running --------------------------------------------------------------------------------
def run_set(name: str, specs: dict[str, str], out_root: Path) -> tuple[dict, list[dict], str]:
    """One bench run of the held-out set ``name`` with every method; (summary per label,
    per-pair rows with a ``label`` and ``gap30`` column, the equivalent command)."""
    from twoview.bench.runner import BenchConfig, run_benchmark

    fields = bench_fields(name)
    dest = out_root / name
    cfg = BenchConfig.from_dict({**fields, "methods": list(specs.values()), "out": str(dest), "overwrite": True,
                                 "progress": False, "workers": 1,
                                 "precision_thresholds": [[0.25, 5.0], [0.05, 2.0]]})
    summary = run_benchmark(cfg)
    rows = read_rows(dest / "per_pair.csv")
    label_of = {v: k for k, v in specs.items()}
    seq_name = HELDOUT[name][0]
    for r in rows:
        r["label"] = label_of.get(r["method"], r["method"])
        r["gap30"] = gap30(seq_name, r)
        r["confidence"] = read_confidence(dest, r["method"], r["pair_id"])
    out = {label_of[m]: s for m, s in summary["methods"].items() if m in label_of}
    return out, rows, cli_command(fields, list(specs.values()), os.path.relpath(dest, ROOT))


def read_rows(path: Path) -> list[dict]:
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            for k in ("rot_deg", "trans_deg", "trans_m", "max_deg", "ms", "cpu_ms", "gt_baseline_m", "gt_rotation_deg"):
                r[k] = float(r[k]) if r.get(k) not in (None, "") else float("nan")
            r["success"] = r["success"] in ("True", "true", "1")
            rows.append(r)
    return rows


def read_confidence(dest: Path, method: str, pair_id: str) -> float:
    from twoview.bench.runner import cache_path

    try:
        rec = json.loads(cache_path(dest, method, pair_id).read_text())
    except (OSError, ValueError):
        return float("nan")
    return float(rec.get("confidence") or 0.0) if rec.get("success") else 0.0


def gap30(seq_name: str, row: dict) -> int | None:
    """The pair's gap in 30 Hz frames: TUM from the timestamps (frame ids), else by index."""
    if seq_name.startswith("tum"):
        try:
            return int(round(30 * abs(float(row["frame1"]) - float(row["frame0"]))))
        except ValueError:
            return None
    g = row.get("frame_gap")
    return int(g) * FRAMES_PER_INDEX.get(seq_name, 1) if g not in (None, "") else None


# --- statistics -----------------------------------------------------------------------------
def metrics_of(rows: list[dict]) -> dict:
    from twoview.metrics import pose_auc

    mx = np.array([r["max_deg"] for r in rows], dtype=float)
    rot = np.array([r["rot_deg"] for r in rows], dtype=float)
    tm = np.array([r["trans_m"] for r in rows], dtype=float)
    a5, a10, a20 = pose_auc(list(mx), (5.0, 10.0, 20.0))
    return {"auc5": 100 * a5, "auc10": 100 * a10, "auc20": 100 * a20, "median_rot_deg": float(np.median(rot)),
            "median_trans_deg": float(np.median([r["trans_deg"] for r in rows])),
            "median_trans_m": float(np.median(tm)) if np.isfinite(tm).any() else float("nan"),
            "p_5cm_2deg": 100 * float(np.mean((tm < 0.05) & (rot < 2.0))), "pairs": len(rows)}


STATS = ("auc5", "auc10", "auc20", "median_rot_deg", "p_5cm_2deg")


def group_stats(rows: list[dict], groups: dict[str, list[str]], n_boot: int = 1000, seed: int = 0,
                diff=None) -> dict:
    """Per group of labels (seeds): the mean over its labels of each statistic, with a 95 %
    bootstrap interval over pairs (one resample of the pair ids shared by every label).
    ``diff``: (A, B) or a list of them, groups whose difference A - B gets an interval
    (paired: the same resamples)."""
    pair_ids = sorted({r["pair_id"] for r in rows})
    by = {(r["label"], r["pair_id"]): r for r in rows}
    rng = np.random.default_rng(seed)
    idx = [rng.integers(0, len(pair_ids), len(pair_ids)) for _ in range(n_boot)]

    def value(labels, sample):
        vals = [metrics_of([by[(lb, pair_ids[i])] for i in sample]) for lb in labels]
        return {k: float(np.mean([v[k] for v in vals])) for k in STATS}

    full = np.arange(len(pair_ids))
    out = {}
    boots = {}
    for g, labels in groups.items():
        labels = [lb for lb in labels if all((lb, p) in by for p in pair_ids)]
        if not labels:
            continue
        point = value(labels, full)
        boots[g] = [value(labels, s) for s in idx]
        out[g] = {k: {"mean": point[k], "lo": float(np.percentile([b[k] for b in boots[g]], 2.5)),
                      "hi": float(np.percentile([b[k] for b in boots[g]], 97.5))} for k in STATS}
        out[g]["seeds"] = labels
        out[g]["per_seed"] = {lb: metrics_of([by[(lb, p)] for p in pair_ids]) for lb in labels}
    diffs = [diff] if diff and isinstance(diff[0], str) else list(diff or [])
    for a, b in diffs:
        if a not in boots or b not in boots:
            continue
        out[f"{a} - {b}"] = {k: {"mean": out[a][k]["mean"] - out[b][k]["mean"],
                                 "lo": float(np.percentile([x[k] - y[k] for x, y in zip(boots[a], boots[b])], 2.5)),
                                 "hi": float(np.percentile([x[k] - y[k] for x, y in zip(boots[a], boots[b])], 97.5))}
                             for k in STATS}
    return out


def by_gap(rows: list[dict], labels: list[str]) -> dict:
    """{label: {gap30: metrics}}; gaps binned at 10/30/60/120/240 (the nearest at or above)."""
    bins = [10, 30, 60, 120, 240, 10**9]
    out = {}
    for lb in labels:
        rs = [r for r in rows if r["label"] == lb and r["gap30"] is not None]
        per = {}
        for lo, hi in zip([0] + bins[:-1], bins):
            sel = [r for r in rs if lo < r["gap30"] <= hi]
            if sel:
                per[f"{lo + 1}-{hi}" if hi < 10**9 else f">{lo}"] = metrics_of(sel)
        out[lb] = per
    return out


def auroc(score: np.ndarray, label: np.ndarray) -> float:
    pos, neg = score[label], score[~label]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    allv = np.concatenate([pos, neg])
    ranks = np.argsort(np.argsort(allv, kind="mergesort"), kind="mergesort") + 1.0
    # average ranks of ties
    for v in np.unique(allv):
        m = allv == v
        ranks[m] = ranks[m].mean()
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def confidence_quality(rows: list[dict], label: str) -> dict:
    """AUROC of the confidence for "good" and a reliability table (5 bins)."""
    from twoview.regress.confidence import is_good

    rs = [r for r in rows if r["label"] == label]
    conf = np.array([r["confidence"] for r in rs], dtype=float)
    good = np.array([r["success"] and is_good(r["rot_deg"], r["trans_m"] if np.isfinite(r["trans_m"]) else None,
                                              r["trans_deg"]) for r in rs])
    table = []
    for lo, hi in zip(np.linspace(0, 0.8, 5), np.linspace(0.2, 1.0, 5)):
        m = (conf >= lo) & ((conf < hi) | (hi >= 1.0))
        if m.any():
            table.append({"bin": f"{lo:.1f}-{hi:.1f}", "pairs": int(m.sum()), "mean_confidence": float(conf[m].mean()),
                          "good_rate": float(good[m].mean())})
    brier = float(np.mean((conf - good) ** 2)) if len(rs) else float("nan")
    return {"auroc": auroc(conf, good), "good_rate": float(good.mean()) if len(rs) else float("nan"), "brier": brier,
            "pairs": len(rs), "failures": int(sum(not r["success"] for r in rs)), "reliability": table}


# --- calibration ------------------------------------------------------------------------------
def calibration_samples():
    """(sample, label) of the calibration pairs: held-out frames of seen rooms at gaps not in
    the test lists, and negatives (a frame of one sequence against a frame of another)."""
    from twoview.regress.split import load_split

    samples = []
    for seq_name, gaps in CALIBRATION.items():
        spec, ds, frames = heldout_frames(seq_name)
        by_index = {f.index: f for f in frames}
        for g in gaps:
            for f in frames:
                if f.index + g in by_index:
                    samples.append(ds.make_pair(f, by_index[f.index + g]))
    split, _ = load_split()
    a = heldout_frames("icl_livingroom1")
    b = heldout_frames("tum_fr1_rpy")
    negatives = []
    for k in range(0, min(len(a[2]), len(b[2]))):
        s = a[1].make_pair(a[2][k], a[2][k])  # a sample shell; image1 replaced below
        fb = b[2][k]
        s.image1, s.camera1, s.depth1 = fb.image, fb.camera, fb.depth
        s.pair_id = f"negative_{k}"
        s.meta["negative"] = True
        s.meta["depth_scale1"] = b[1].depth_scale
        negatives.append(s)
    return samples, negatives


def calibrate(checkpoint: str) -> dict:
    """Fit the confidence of ``checkpoint`` on the calibration pairs and store it in the file."""
    import torch

    from twoview.io.atomic import atomic_write_bytes
    from twoview.io.depth import load_depth, prepare_depth
    from twoview.io.images import load_image
    from twoview.metrics import pose_errors
    from twoview.regress.check import Agreement
    from twoview.regress.confidence import Calibration, fit_calibration, is_good
    from twoview.regress.infer import PoseRegressor

    torch.set_num_threads(1)
    reg = PoseRegressor.from_checkpoint(checkpoint)
    reg.calibration = Calibration(min_coherent=0)  # measure every pair
    samples, negatives = calibration_samples()
    agreements, good, neg_agreements, log_ratio = [], [], [], []
    for s in samples + negatives:
        d0 = prepare_depth(load_depth(s.depth0, s.depth_scale), s.camera0.size)
        d1 = prepare_depth(load_depth(s.depth1, s.meta.get("depth_scale1", s.depth_scale)), s.camera1.size)
        im0, im1 = load_image(s.image0), load_image(s.image1)
        for depth in (True, False):
            res = reg.estimate(im0, im1, s.camera0, s.camera1, d0 if depth else None, d1 if depth else None)
            if not res.success:
                continue
            a = Agreement(**{**res.info["agreement"], "epipolar": tuple(res.info["agreement"]["epipolar"])})
            agreements.append(a)
            if s.meta.get("negative"):
                neg_agreements.append(a)
                good.append(False)
                continue
            e = pose_errors(res.cam1_from_cam0, s.cam1_from_cam0, metric=res.metric)
            good.append(is_good(e["rot_deg"], e["trans_m"] if res.metric else None, e["trans_deg"]))
            if not depth and reg.cfg.metric_scale and np.linalg.norm(s.cam1_from_cam0.t) > 0.02:
                log_ratio.append(network_log_scale_ratio(reg, im0, im1, s))
    pos = [a for a, g in zip(agreements, good) if g]
    # the no-overlap rule: above what unrelated images reach (their maximum), keeping >= 98 % of the good poses
    neg_coh = np.array([a.coherent for a in neg_agreements]) if neg_agreements else np.array([0])
    pos_coh = np.array([a.coherent for a in pos]) if pos else np.array([100])
    min_coherent = int(max(1, min(neg_coh.max() + 1, np.percentile(pos_coh, 2))))
    cal = fit_calibration(agreements, good, fitted_on=f"{len(samples)} held-out pairs of seen rooms "
                          f"({', '.join(f'{k} gaps {v}' for k, v in CALIBRATION.items())}) and {len(negatives)} "
                          "cross-sequence negatives, with and without depth",
                          base=Calibration(min_coherent=min_coherent))
    # the network's own translation length without depth: reported as metric only if it is this good
    lr = np.abs(np.array(log_ratio)) if log_ratio else np.array([np.inf])
    trusted = bool(np.median(lr) < np.log(1.2) and np.mean(lr < np.log(1.25)) > 0.7)
    st = torch.load(checkpoint, map_location="cpu", weights_only=False)
    st["calibration"] = cal.to_dict()
    st["metric_without_depth"] = trusted
    import io

    buf = io.BytesIO()
    torch.save(st, buf)
    atomic_write_bytes(checkpoint, buf.getvalue())
    return {"calibration": cal.to_dict(), "pairs": len(samples), "negatives": len(negatives),
            "good_rate": float(np.mean(good)), "negative_coherent_max": int(neg_coh.max()),
            "negative_coherent_median": float(np.median(neg_coh)), "good_coherent_p2": float(np.percentile(pos_coh, 2)),
            "network_scale_without_depth": {"pairs": len(log_ratio), "median_abs_log_ratio": float(np.median(lr)),
                                            "within_25_percent": float(np.mean(lr < np.log(1.25))),
                                            "metric_without_depth": trusted}}


def network_log_scale_ratio(reg, im0, im1, sample) -> float:
    """log(|t| regressed by the network from the images alone / |t| true)."""
    from twoview.regress.infer import regress_arrays

    p = reg._prepare(im0, im1, sample.camera0, sample.camera1, None, None)
    _, t = regress_arrays(reg.model, p["net0"][None], p["net1"][None])
    return float(np.log(np.linalg.norm(t[0]) / np.linalg.norm(sample.cam1_from_cam0.t)))


# --- speed ------------------------------------------------------------------------------------
def bench_speed(checkpoint: str | None, threads: int, runtime: str = "torch", repeats: int = 60) -> dict:
    """PoseRegressor.estimate on 640x480 arrays (canonical resampling + forward + checks), batch 1,
    the network in torch or under onnxruntime (``runtime``) on ``threads`` threads."""
    import torch

    from twoview.io.depth import load_depth, prepare_depth
    from twoview.io.images import load_image
    from twoview.regress.infer import PoseRegressor
    from twoview.regress.split import load_split, open_sequence

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _machine import speed_probe_ms

    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # onnxruntime's threads, read when its session is made
    reg = PoseRegressor.from_checkpoint(checkpoint, runtime=runtime)
    split, root = load_split()
    ds = open_sequence(split.sequence("tum_fr3_cabinet"), root)
    f0, f1 = ds.frames[10], ds.frames[11]
    im0, im1 = load_image(f0.image), load_image(f1.image)
    d0 = prepare_depth(load_depth(f0.depth, ds.depth_scale), f0.camera.size)
    d1 = prepare_depth(load_depth(f1.depth, ds.depth_scale), f1.camera.size)
    out = {"runtime": runtime, "threads": threads, "input": f"{reg.cfg.img_width}x{reg.cfg.img_height}", "params_M": sum(p.numel() for p in reg.model.parameters()) / 1e6,
           "probe_ms_before": speed_probe_ms(), "load_avg_before": os.getloadavg()[0]}
    for name, args in (("rgb", (None, None)), ("rgbd", (d0, d1))):
        for _ in range(5):
            reg.estimate(im0, im1, f0.camera, f1.camera, *args)
        wall, cpu, fwd = [], [], []
        for _ in range(repeats):
            w, c = time.perf_counter(), time.process_time()
            r = reg.estimate(im0, im1, f0.camera, f1.camera, *args)
            cpu.append(1e3 * (time.process_time() - c))
            wall.append(1e3 * (time.perf_counter() - w))
            fwd.append(r.timings_ms["regress"])
        out[name] = {"wall_ms_median": float(np.median(wall)), "wall_ms_min": float(np.min(wall)),
                     "cpu_ms_median": float(np.median(cpu)), "forward_ms_median": float(np.median(fwd))}
    out["probe_ms_after"] = speed_probe_ms()
    out["load_avg_after"] = os.getloadavg()[0]
    return out


# --- report -----------------------------------------------------------------------------------
def _f(v, nd=1):
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def markdown(res: dict) -> str:
    L = ["# Pose regression benchmark (twoview.regress)", ""]
    if res.get("notes"):
        L += [res["notes"], ""]
    comp = res.get("compare", {})
    for name, d in comp.items():
        L += [f"## {name} ({d['pairs']} pairs; held out)", "", "`" + d["command"] + "`", ""]
        L += ["| method | AUC@5 | AUC@10 | AUC@20 | med rot (deg) | med t-angle (deg) | med t (m) | P(5cm,2deg) % | success % | med ms |",
              "|---|---|---|---|---|---|---|---|---|---|"]
        for lb, s in d["summary"].items():
            L.append(f"| {lb} | {_f(100 * s['auc5'])} | {_f(100 * s['auc10'])} | {_f(100 * s['auc20'])} | "
                     f"{_f(s['median_rot_deg'], 2)} | {_f(s['median_trans_deg'], 1)} | {_f(s.get('median_trans_m'), 3)} | "
                     f"{_f(_pct(s.get('precision_5cm_2deg')))} | {_f(100 * s['success_rate'])} | {_f(s.get('median_ms'), 0)} |")
        L.append("")
        if d.get("groups"):
            L += ["Seed groups (mean over seeds, 95 % bootstrap interval over pairs):", "",
                  "| group | seeds | AUC@5 | AUC@10 | AUC@20 | med rot (deg) | P(5cm,2deg) % |", "|---|---|---|---|---|---|---|"]
            for g, s in d["groups"].items():
                def cell(k):  # a statistic may be None: a median over failures, reloaded from the JSON
                    nd = 2 if k == "median_rot_deg" else 1
                    return f"{_f(s[k]['mean'], nd)} [{_f(s[k]['lo'], nd)}, {_f(s[k]['hi'], nd)}]"
                L.append(f"| {g} | {len(s.get('seeds', [])) or '-'} | " + " | ".join(cell(k) for k in STATS[:4]) +
                         f" | {cell('p_5cm_2deg')} |")
            L.append("")
        if d.get("by_gap"):
            gaps = sorted({g for per in d["by_gap"].values() for g in per}, key=lambda x: int(x.split("-")[0].lstrip(">")))
            L += ["By 30 Hz frame gap: AUC@5 / median rotation (deg) / P(5cm,2deg) %:", "",
                  "| method | " + " | ".join(f"gap {g}" for g in gaps) + " |", "|---|" + "---|" * len(gaps)]
            for lb, per in d["by_gap"].items():
                L.append(f"| {lb} | " + " | ".join(
                    f"{_f(per[g]['auc5'])} / {_f(per[g]['median_rot_deg'], 2)} / {_f(per[g]['p_5cm_2deg'], 0)} ({per[g]['pairs']})"
                    if g in per else "-" for g in gaps) + " |")
            L.append("")
        if d.get("confidence"):
            L += ["Confidence (good = rotation < 5 deg and translation < 10 cm):", ""]
            for lb, q in d["confidence"].items():
                L.append(f"- {lb}: AUROC {_f(q['auroc'], 3)}, Brier {_f(q['brier'], 3)}, good {100 * q['good_rate']:.0f} % of "
                         f"{q['pairs']} pairs, failures {q['failures']}; reliability: " + "; ".join(
                             f"{t['bin']}: {t['pairs']} pairs, conf {t['mean_confidence']:.2f}, good {t['good_rate']:.2f}"
                             for t in q["reliability"]))
            L.append("")
    if res.get("calibration"):
        L += ["## Confidence calibration", "", "```", json.dumps(res["calibration"], indent=1), "```", ""]
    if res.get("speed"):
        L += ["## Inference speed (PoseRegressor.estimate on 640x480 arrays, batch 1; ms)", "",
              "| runtime, threads | input | params (M) | images: wall median / min | CPU | forward | with depth: wall median / min | "
              "probe ms before / after | load before / after |", "|---|---|---|---|---|---|---|---|---|"]
        for n, s in res["speed"].items():
            L.append(f"| {n} | {s['input']} | {s['params_M']:.2f} | {s['rgb']['wall_ms_median']:.1f} / {s['rgb']['wall_ms_min']:.1f} | "
                     f"{s['rgb']['cpu_ms_median']:.1f} | {s['rgb']['forward_ms_median']:.1f} | {s['rgbd']['wall_ms_median']:.1f} / "
                     f"{s['rgbd']['wall_ms_min']:.1f} | {s['probe_ms_before']:.0f} / {s['probe_ms_after']:.0f} | "
                     f"{s['load_avg_before']:.2f} / {s['load_avg_after']:.2f} |")
        L.append("")
    if res.get("training"):
        L += ["## Training runs", "", "| run | steps | training s | wall s | GCR | config |", "|---|---|---|---|---|---|"]
        for k, t in res["training"].items():
            L.append(f"| {k} | {t['steps']} | {t['train_s']:.0f} | {_f(t.get('wall_s'), 0)} | {t['gcr']} | {t['config']} |")
        L.append("")
    return "\n".join(L)


def _pct(v):
    return None if v is None else 100 * v


def training_info(models: dict[str, str]) -> dict:
    out = {}
    for name, path in models.items():
        log = Path(path).parent / "log.jsonl"
        if not log.is_file():
            continue
        rows = [json.loads(ln) for ln in log.read_text().splitlines() if ln.strip()]
        last = max((r for r in rows if "time_s" in r), key=lambda r: r["step"], default=None)
        walls = [r["wall_s"] for r in rows if "wall_s" in r]
        import torch

        st = torch.load(path, map_location="cpu", weights_only=False)
        tc = st.get("train_config", {})
        out[name] = {"steps": last["step"] if last else None, "train_s": last["time_s"] if last else float("nan"),
                     "wall_s": sum(walls) if walls else None,  # summed over resumed invocations
                     "gcr": bool(tc.get("gcr", {}).get("enabled")), "config": str(Path(path).parent)}
    return out


def _clean(o):
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, (np.floating, float)):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, np.integer):
        return int(o)
    return o


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", action="store_true", help="(re)write the held-out pair lists in benchmarks/pairs/")
    ap.add_argument("--compare", nargs="+", metavar="NAME=PATH", help="checkpoints; NAME <group>_s<seed> forms seed groups")
    ap.add_argument("--sets", nargs="+", default=list(HELDOUT), choices=list(HELDOUT), help="held-out sets to run")
    ap.add_argument("--extra", nargs=2, action="append", default=[], metavar=("NAME", "SPEC"),
                    help="another bench method in the same runs, labelled NAME (e.g. gmm@regress "
                         "gmm@regress:checkpoint=..., sift-rigid3d sift-rigid3d)")
    ap.add_argument("--diff", nargs=2, action="append", metavar=("A", "B"), default=None,
                    help="seed groups (or single checkpoints) whose difference A - B gets an interval; "
                         "repeatable (default: gcr plain)")
    ap.add_argument("--confidence", nargs="*", default=[], metavar="LABEL", help="labels whose confidence is assessed")
    ap.add_argument("--calibrate", metavar="CKPT", help="fit CKPT's confidence on the calibration pairs (writes the file)")
    ap.add_argument("--speed", action="store_true",
                    help="time PoseRegressor.estimate at 1 and 2 threads, under onnxruntime and in torch")
    ap.add_argument("--checkpoint", help="checkpoint for --speed (default: the shipped one)")
    ap.add_argument("--notes", default=None, help="text for the top of the report")
    ap.add_argument("--out", default=str(RESULTS / "regress"), help="output prefix (.json and .md)")
    ap.add_argument("--runs", default=str(RUNS), help="folder of the bench runs")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    pj = Path(args.out + ".json")
    res = json.loads(pj.read_text()) if pj.is_file() else {}
    res["machine"] = platform.processor() or platform.machine()
    if args.pairs or args.compare:
        for name, (seq, gaps) in HELDOUT.items():
            write_pairs(name, seq, gaps)
    if args.calibrate:
        res["calibration"] = calibrate(args.calibrate)
        print(json.dumps(res["calibration"], indent=1))
    if args.compare:
        models = dict(a.split("=", 1) for a in args.compare)
        # the checkpoints compared by the network's own pose (GCR's question), not the
        # rigid motion of its cell matches that `regress` reports by default with depth
        specs = {name: f"regress:checkpoint={path},rigid_from_matches=false" for name, path in models.items()}
        specs.update({name: spec for name, spec in args.extra})
        res.setdefault("compare", {})
        groups: dict[str, list[str]] = {}
        for name in models:
            if "_s" in name and name.rsplit("_s", 1)[1].isdigit():
                groups.setdefault(name.rsplit("_s", 1)[0], []).append(name)
        diffs = [tuple(d) for d in (args.diff or [("gcr", "plain")])]
        for name in {n for d in diffs for n in d}:
            if name not in groups and name in models:  # a single checkpoint, e.g. an ablation against its seed
                groups[name] = [name]
        for set_name in args.sets:
            t0 = time.time()
            summary, rows, cmd = run_set(set_name, specs, Path(args.runs))
            labels = list(specs)
            res["compare"][set_name] = {
                "pairs": len({r["pair_id"] for r in rows}), "command": cmd, "summary": summary,
                "groups": group_stats(rows, groups, diff=diffs) if groups else {},
                "by_gap": by_gap(rows, labels),
                "confidence": {lb: confidence_quality(rows, lb) for lb in args.confidence if lb in labels},
                "seconds": time.time() - t0}
            print(f"{set_name}: {time.time() - t0:.0f} s")
        res["checkpoints"] = {**res.get("checkpoints", {}), **models}
        res["training"] = {**res.get("training", {}), **training_info(models)}
    if args.speed:
        res["speed"] = {f"{rt} {n}": bench_speed(args.checkpoint, n, rt) for rt in ("onnx", "torch") for n in (1, 2)}
        print(json.dumps(res["speed"], indent=1))
    if args.notes is not None:
        res["notes"] = args.notes
    from twoview.io.atomic import atomic_write_json, atomic_write_text

    atomic_write_json(args.out + ".json", _clean(res))
    atomic_write_text(args.out + ".md", markdown(res))
    print(f"wrote {args.out}.json and {args.out}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
