"""Benchmark runner: predict and cache per (method, pair), then score the cache.

Layout of ``--out``::

    config.json            the resolved configuration (dataset, selection, methods, ...)
    cache/<method>/<pair_id>.json   one prediction each, written atomically
    summary.json  results.md  per_pair.csv  plots/*.png  report.html

Prediction, then scoring (glue-factory style): methods run in waves so that ``A@B``
comes after ``B``, and ``A@B`` takes ``B``'s cached prediction as its initial pose
instead of recomputing it (also when ``B``'s cache is there from an earlier run into
the folder); ``A@B``'s recorded time is its own plus ``B``'s recorded time.

An interrupted run resumes: predictions already in the cache are not recomputed, and
scoring reads only the cache, so the summary of a resumed run equals that of an
uninterrupted one. A different configuration into the same folder needs
``overwrite=True`` (which deletes the old cache); adding methods to a run with the same
dataset configuration is allowed (each method caches separately).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from twoview.config import StrictConfig
from twoview.depth.degrade import DepthDegradation
from twoview.depth.sensor import SensorModel
from twoview.errors import ConfigError, InputError
from twoview.io.atomic import atomic_write_json, writing

CACHE_VERSION = 1
DepthNoiseModel = Literal["monocular", "kinect"]
#: the BenchConfig field holding each depth noise model's parameters
_NOISE_PARAMS = {"monocular": "depth_degradation", "kinect": "depth_sensor"}
_REPORT_FILES = ("summary.json", "results.md", "per_pair.csv", "report.html")
#: config keys that do not change predictions (may differ between runs into one folder)
_EXECUTION_KEYS = ("methods", "method_details", "workers", "engine", "address", "progress", "overwrite", "out",
                   "comparisons")


@dataclass
class BenchConfig(StrictConfig):
    """Everything a benchmark run needs.

    Attributes:
        dataset: dataset kind (see :func:`twoview.datasets.get_dataset`).
        root: dataset folder.
        dataset_options: reader options and pair selection (``gaps``, ``pairs_file``, ...).
        methods: method names (see :mod:`twoview.bench.methods`).
        out: output folder.
        overwrite: allow a different configuration into a used ``out`` (deletes its cache).
        workers: local worker processes (1 runs in this process).
        engine: "local" (processes on this machine) or "ray".
        address: Ray cluster address (None starts a local Ray).
        depth_noise: corrupt the depth every method receives, seeded per pair and view (the
            same corruption for all methods): "monocular" (or True) with the simulated
            monocular depth model (:mod:`twoview.depth.degrade`), "kinect" with the simulated
            unregistered Kinect-class sensor (:mod:`twoview.depth.sensor`; its parameters
            also choose the intrinsics the methods receive and the ground truth they are
            scored against: :func:`sensed_pair`); False: clean depth.
        depth_degradation: parameters of the monocular model (recorded only when it is used).
        depth_sensor: parameters of the sensor model (recorded only when it is used;
            :func:`twoview.depth.sensor.sensor_preset` gives the named ones).
        precision_thresholds: ``[metres, degrees]`` pairs for the pose precision metrics.
        comparisons: ``[A, B]`` pairs of methods of this run: each adds B - A on every
            summary metric with a paired bootstrap interval over pairs
            (:mod:`twoview.bench.compare`) to ``summary.json`` and ``results.md``.
        progress: show a progress bar.
    """

    dataset: str = ""
    root: str = ""
    dataset_options: dict = field(default_factory=dict)
    methods: list[str] = field(default_factory=list)
    out: str = ""
    overwrite: bool = False
    workers: int = 1
    engine: Literal["local", "ray"] = "local"
    address: str | None = None
    depth_noise: DepthNoiseModel | bool = False
    depth_degradation: DepthDegradation = field(default_factory=DepthDegradation)
    depth_sensor: SensorModel = field(default_factory=SensorModel)
    precision_thresholds: list = field(default_factory=lambda: [[0.25, 5.0]])
    comparisons: list = field(default_factory=list)
    progress: bool = True

    def validate(self):
        if self.depth_noise is True:  # the flag's first meaning: the monocular model
            self.depth_noise = "monocular"
        if not self.dataset:
            raise ConfigError("dataset is required")
        if not self.root:
            raise ConfigError("root is required")
        if not self.out:
            raise ConfigError("out is required")
        if not self.methods:
            raise ConfigError("at least one method is required")
        twice = sorted({m for m in self.methods if self.methods.count(m) > 1})
        if twice:
            raise ConfigError(f"methods given twice: {', '.join(twice)}")
        if self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers}")
        for pair in self.comparisons:
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(m, str) for m in pair)):
                raise ConfigError(f"comparisons need two method names A B each, got {pair!r}")
            missing = [m for m in pair if m not in self.methods]
            if missing:
                raise ConfigError(f"comparisons name {missing[0]!r}, which is not a method of this run (give it "
                                  f"with --method too); methods: {', '.join(self.methods)}")
            if pair[0] == pair[1]:
                raise ConfigError(f"comparisons compare {pair[0]!r} with itself")
        for th in self.precision_thresholds:
            if not (isinstance(th, (list, tuple)) and len(th) == 2 and all(isinstance(v, (int, float)) and v > 0 for v in th)):
                raise ConfigError(f"precision_thresholds: each entry must be [metres, degrees] > 0, got {th!r}")


def pair_seed(pair_id: str) -> int:
    """A stable 32-bit seed from a pair id (not Python's salted ``hash``)."""
    return int.from_bytes(hashlib.sha256(pair_id.encode("utf-8")).digest()[:4], "little")


def cache_path(out: Path, method: str, pair_id: str) -> Path:
    """``out/cache/<method>/<pair_id>.json``; a method spec with other characters than
    ``[A-Za-z0-9-_.@]`` (options, paths) gets a hash suffix so specs never collide."""
    safe = "".join(c if c.isalnum() or c in "-_.@" else "_" for c in method)
    if safe != method:
        safe = f"{safe[:80]}-{hashlib.sha256(method.encode('utf-8')).hexdigest()[:10]}"
    return out / "cache" / safe / f"{pair_id}.json"


# --- prediction (runs in workers) ---------------------------------------------------------
_METHODS: dict = {}


def _get_method(name: str):
    from twoview.bench.methods import make_method

    if name not in _METHODS:
        _METHODS[name] = make_method(name)
    return _METHODS[name]


def sensed_pair(sample, depth_noise: bool | str, params: dict | None, colour: bool = True):
    """The pair as a run's methods receive it and as they are scored.

    Under the Kinect-class sensor model (``depth_noise == "kinect"``), a copy of ``sample``
    with the cameras of :attr:`~twoview.depth.sensor.SensorModel.intrinsics_given`, the
    ground truth of :attr:`~twoview.depth.sensor.SensorModel.ground_truth` and, where the
    model degrades the colour (``colour`` True), the images
    :func:`~twoview.depth.sensor.simulate_sensor_colour` makes (the views' seeds as in
    :func:`load_method_depths`); otherwise ``sample`` itself. The depth maps are simulated
    from the dataset's own ``sample`` (its colour cameras).
    """
    if depth_noise != "kinect":
        return sample
    model = SensorModel.from_dict(params or {})
    seed = pair_seed(sample.pair_id)
    changes = {}
    if colour and model.degrades_colour:
        changes.update(image0=sensed_colour(sample.image0, model, seed), image1=sensed_colour(sample.image1, model, seed + 1))
    if not (model.intrinsics_given == "colour" and model.ground_truth == "colour"):
        from twoview.geometry.pose import Pose

        gt = model.relative_pose(sample.cam1_from_cam0.matrix, seed, seed + 1)
        changes.update(camera0=model.given_camera(sample.camera0), camera1=model.given_camera(sample.camera1),
                       cam1_from_cam0=Pose.from_matrix(gt))
    return dataclasses.replace(sample, **changes) if changes else sample


def sensed_colour(path, model: SensorModel, seed: int) -> Path:
    """The file of the colour image the sensor model records of image ``path`` for the view
    seeded ``seed``: made once, losslessly (PNG), under ``$TWOVIEW_CACHE/bench_colour``
    (default ``~/.cache/twoview``), named by the source file, the colour parameters and the
    seed, written atomically (parallel workers may make the same one)."""
    from twoview._cache import cache_dir
    from twoview.depth.sensor import simulate_sensor_colour
    from twoview.io.images import load_image
    from twoview.viz import save_image

    src = Path(path)
    st = src.stat()
    colour = {k: v for k, v in model.to_dict().items() if k.startswith("colour_")}
    key = hashlib.sha256(json.dumps([str(src.resolve()), st.st_mtime_ns, st.st_size, colour, seed]).encode()).hexdigest()[:24]
    out = cache_dir("bench_colour") / f"{src.stem}_{key}.png"
    if not out.is_file():
        save_image(out, simulate_sensor_colour(load_image(src, "image"), model, seed))
    return out


def load_method_depths(sample, uses_depth, depth_noise: bool | str, params: dict | None):
    """The depth maps a method receives: loaded if used, corrupted under depth noise.

    Args:
        sample: the dataset's pair (not :func:`sensed_pair`'s).
        depth_noise: False (clean), "monocular" (or True) or "kinect" (see
            :attr:`BenchConfig.depth_noise`).
        params: that model's parameters (a dict of its config; None: the defaults).

    The noise seed is derived from ``pair_id`` (view 1 gets seed + 1), so every method
    sees the same corruption of a pair. The last few corrupted maps are kept in memory
    (the methods of a pair run one after the other, and simulating a sensor costs about
    as much as a method).
    """
    if not any(uses_depth) or (sample.depth0 is None and sample.depth1 is None):
        return None, None
    d0, d1 = sample.load_depths()
    d0 = d0 if uses_depth[0] else None
    d1 = d1 if uses_depth[1] else None
    if depth_noise:
        seed = pair_seed(sample.pair_id)
        d0 = None if d0 is None else _corrupt_kept(d0, sample.depth0, sample.camera0, depth_noise, params, seed)
        d1 = None if d1 is None else _corrupt_kept(d1, sample.depth1, sample.camera1, depth_noise, params, seed + 1)
    return d0, d1


#: corrupted depth maps of this process, the most recent last
_CORRUPTED: OrderedDict = OrderedDict()
_CORRUPTED_KEEP = 4


def _corrupt_kept(depth, path, camera, depth_noise: bool | str, params: dict | None, seed: int):
    """:func:`_corrupt`, or a copy of the map it gave for the same file, camera, model and seed."""
    stat = os.stat(path)
    key = (str(path), stat.st_mtime_ns, stat.st_size, repr(camera), depth_noise,
           json.dumps(params, sort_keys=True), seed)
    if key not in _CORRUPTED:
        _CORRUPTED[key] = _corrupt(depth, camera, depth_noise, params, seed)
        while len(_CORRUPTED) > _CORRUPTED_KEEP:
            _CORRUPTED.popitem(last=False)
    _CORRUPTED.move_to_end(key)
    return _CORRUPTED[key].copy()  # a method may write into its input


def _corrupt(depth, camera, depth_noise: bool | str, params: dict | None, seed: int):
    if depth_noise in (True, "monocular"):
        from twoview.depth.degrade import degrade_depth

        return degrade_depth(depth, DepthDegradation.from_dict(params or {}), seed)[0]
    if depth_noise == "kinect":
        from twoview.depth.sensor import simulate_sensor_depth

        return simulate_sensor_depth(depth, camera, SensorModel.from_dict(params or {}), seed)[0]
    raise InputError("depth_noise", f"must be False, True, {' or '.join(map(repr, _NOISE_PARAMS))}, got {depth_noise!r}")


def _record_result(rec: dict):
    """The PoseResult of a cache record (pose, metric flag and counters; no matches)."""
    import numpy as np

    from twoview.geometry.pose import Pose
    from twoview.result import PoseResult

    ok = bool(rec.get("success")) and rec.get("cam1_from_cam0") is not None
    return PoseResult(
        success=ok,
        cam1_from_cam0=Pose.from_matrix(np.asarray(rec["cam1_from_cam0"], dtype=np.float64)) if ok else None,
        metric=bool(rec.get("metric")), solver=rec.get("solver", ""), num_matches=int(rec.get("num_matches") or 0),
        num_inliers=int(rec.get("num_inliers") or 0), confidence=float(rec.get("confidence") or 0.0),
        reason=rec.get("reason", "") if not ok else "", timings_ms=dict(rec.get("timings_ms") or {}),
        info=dict(rec.get("info") or {}),
    )


def _read_record(path: str | Path) -> dict | None:
    """A complete, well-formed cache record of the current version, or None (missing, torn,
    hand-edited into other types, of another version: then it is recomputed)."""
    try:
        rec = json.loads(Path(path).read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    return rec if _well_formed(rec) else None


def _well_formed(rec) -> bool:
    """Whether a cache record has the keys and types scoring and reuse read."""
    import numpy as np

    from twoview.geometry.pose import Pose

    def number(v) -> bool:
        return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))

    if not (isinstance(rec, dict) and rec.get("version") == CACHE_VERSION):
        return False
    if not (isinstance(rec.get("method"), str) and isinstance(rec.get("pair_id"), str)
            and isinstance(rec.get("success"), bool) and isinstance(rec.get("metric", False), bool)
            and isinstance(rec.get("solver", ""), str) and isinstance(rec.get("reason", ""), str)):
        return False
    if not all(number(rec.get(k)) for k in ("ms", "cpu_ms", "confidence", "num_matches", "num_inliers")):
        return False
    if not all(isinstance(rec.get(k) or {}, dict) for k in ("timings_ms", "info", "init_reused")):
        return False
    if rec["success"]:
        try:
            Pose.from_matrix(np.asarray(rec.get("cam1_from_cam0"), dtype=np.float64))
        except (ValueError, TypeError):
            return False
    return True


def predict_one(method_name: str, sample, path: str | None, depth_noise: bool | str, noise_params: dict | None,
                init: dict | None = None) -> dict:
    """Run one method on one pair; write its cache file (atomically) unless ``path`` is None.

    Args:
        sample: the dataset's pair; the method receives :func:`sensed_pair`'s.
        depth_noise, noise_params: the depth noise model and its parameters
            (see :func:`load_method_depths`).
        init: for an ``A@B`` method, the predictions of its initialising methods that may
            be reused: ``{name: cache record or path of its cache file}`` (a missing or
            incomplete file is skipped: ``A`` then computes ``B`` itself).

    Returns:
        the cache record: the PoseResult's JSON plus ``ms`` (the method's wall time,
        milliseconds) and ``cpu_ms`` (its process CPU time). A reused initialising
        prediction adds its recorded ``ms`` / ``cpu_ms`` (listed under ``init_reused``),
        so ``A@B``'s time always includes ``B``'s.
    """
    import numpy as np

    from twoview.bench.methods import reuse_predictions
    from twoview.result import PoseResult

    method = _get_method(method_name)
    rec = {"version": CACHE_VERSION, "method": method_name, "pair_id": sample.pair_id}
    records = {}
    for name, r in (init or {}).items():
        r = r if isinstance(r, dict) else _read_record(r)
        if r is not None and r.get("pair_id") == sample.pair_id:
            records[name] = r
    reuse = {name: _record_result(r) for name, r in records.items()}
    used: list[str] = []
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        d0, d1 = load_method_depths(sample, method.uses_depth, depth_noise, noise_params)
        seen = sensed_pair(sample, depth_noise, noise_params)
        t0, c0 = time.perf_counter(), time.process_time()  # time the method, not the dataset I/O
        with reuse_predictions(sample.pair_id, reuse) as used:
            res = method(seen, d0, d1)
        ms, cpu_ms = (time.perf_counter() - t0) * 1e3, (time.process_time() - c0) * 1e3
        if not isinstance(res, PoseResult):
            raise TypeError(f"method {method_name} returned {type(res).__name__}, not PoseResult")
        rec.update(res.to_dict())
        rec["error"] = None
    except InputError:
        raise  # the data is broken: the user must know
    except Exception as e:  # a method crashing on one pair is a failure of that method, recorded
        ms, cpu_ms = (time.perf_counter() - t0) * 1e3, (time.process_time() - c0) * 1e3
        rec.update(PoseResult.failure(f"exception: {type(e).__name__}: {e}").to_dict())
        rec["error"] = f"{type(e).__name__}: {e}"
    if used:
        rec["init_reused"] = {n: {"ms": records[n].get("ms"), "cpu_ms": records[n].get("cpu_ms")} for n in used}
        for n in used:
            ms += float("nan") if records[n].get("ms") is None else records[n]["ms"]
            cpu_ms += float("nan") if records[n].get("cpu_ms") is None else records[n]["cpu_ms"]
    rec["ms"] = ms if np.isfinite(ms) else None
    rec["cpu_ms"] = cpu_ms if np.isfinite(cpu_ms) else None
    rec.pop("quaternion_wxyz", None)
    if path is not None:
        with writing("--out", path):  # a full disk: one line naming the output folder
            atomic_write_json(path, rec)
    return rec


def method_levels(methods: list[str]) -> dict[str, int]:
    """Prediction order: 0 for methods that depend on no other method of the run, else one
    more than the deepest such dependency (``A@B`` after ``B``)."""
    from twoview.bench.methods import init_chain

    levels: dict[str, int] = {}

    def level(m: str) -> int:
        if m not in levels:
            deps = [d for d in init_chain(m) if d in methods]
            levels[m] = 1 + max(level(d) for d in deps) if deps else 0
        return levels[m]

    for m in methods:
        level(m)
    return levels


# --- orchestration -------------------------------------------------------------------
def _comparable(cfg: dict) -> dict:
    out = {k: v for k, v in cfg.items() if k not in _EXECUTION_KEYS}
    if out.get("depth_noise") is True:  # a run recorded before the flag named its model
        out["depth_noise"] = "monocular"
    if isinstance(out.get("depth_sensor"), dict):  # recorded before a parameter existed: its default
        try:
            out["depth_sensor"] = SensorModel.from_dict(out["depth_sensor"]).to_dict()
        except ConfigError:
            pass  # not ours to repair: it differs
    return out


def prepare_out(cfg: BenchConfig, resolved: dict) -> Path:
    """Check / write ``config.json``; InputError if a different config is there."""
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise InputError("--out", f"not a folder: {out}")
    cfg_path = out / "config.json"
    if cfg_path.exists():
        try:
            old = json.loads(cfg_path.read_bytes().decode("utf-8"))
        except (OSError, ValueError, RecursionError):
            old = None
        if not (isinstance(old, dict) and isinstance(old.get("methods", []), list)
                and isinstance(old.get("method_details", {}), dict)):
            if not cfg.overwrite:
                raise InputError("--out", f"{cfg_path} is unreadable or not a twoview bench configuration "
                                 "(edited by hand?); pass --overwrite to replace the run in it")
            old = None
        if old is None or _comparable(old) != _comparable(resolved):
            if not cfg.overwrite:
                diff = sorted(k for k in set(_comparable(old or {})) | set(_comparable(resolved)) if (old or {}).get(k) != resolved.get(k))
                raise InputError("--out", f"{out} holds a run with a different configuration (differs in: {', '.join(diff)}); "
                                 "pass --overwrite to replace it")
            # nothing of the old run may be mistaken for the new one
            shutil.rmtree(out / "cache", ignore_errors=True)
            shutil.rmtree(out / "plots", ignore_errors=True)
            for name in _REPORT_FILES:
                (out / name).unlink(missing_ok=True)
        else:
            # same data and protocol: methods accumulate (each caches separately)
            methods = list(resolved["methods"]) + [m for m in old.get("methods", []) if m not in resolved["methods"]]
            details = {**old.get("method_details", {}), **resolved["method_details"]}
            resolved = {**resolved, "methods": methods, "method_details": details}
    elif out.is_dir() and any(out.iterdir()) and not cfg.overwrite:
        raise InputError("--out", f"{out} is not empty and holds no config.json; choose an empty folder or pass --overwrite")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a parent that is a file, a read-only or virtual file system
        raise InputError("--out", f"cannot create the folder {out}: {e.strerror or e}") from None
    with writing("--out", cfg_path):
        atomic_write_json(cfg_path, resolved)
    return out


def resolve(cfg: BenchConfig):
    """Build the dataset and methods; returns (pairs, methods, resolved config dict)."""
    from twoview.bench.methods import make_method
    from twoview.datasets import get_dataset

    opts = dict(cfg.dataset_options)
    ds = get_dataset(cfg.dataset, cfg.root, **opts)
    pairs = ds.pairs()
    if not pairs:
        raise InputError("pair selection", f"no pair of {cfg.dataset} at {cfg.root} matches the selection")
    ids = [p.pair_id for p in pairs]
    if len(set(ids)) != len(ids):
        raise InputError("pair selection", "the selection contains the same pair twice")
    methods = {m: make_method(m) for m in cfg.methods}
    for name, meth in methods.items():
        for view, used in enumerate(meth.uses_depth):
            missing = [p.pair_id for p in pairs if used and getattr(p, f"depth{view}") is None]
            if missing:
                raise InputError("--method", f"{name} needs the depth of view {view}, but {len(missing)} of {len(pairs)} pairs "
                                 f"have none (e.g. {missing[0]}); {cfg.dataset} at {cfg.root} provides no depth there")
    if cfg.depth_noise == "kinect":
        distorted = [p.pair_id for p in pairs if p.camera0.dist is not None or p.camera1.dist is not None]
        if distorted:
            raise InputError("--depth-noise kinect", f"the sensor model takes undistorted pinhole cameras, but {len(distorted)} "
                             f"of {len(pairs)} pairs have lens distortion (e.g. {distorted[0]})")
    resolved = cfg.to_dict()
    resolved["dataset_resolved"] = ds.describe()
    resolved["pair_ids_sha256"] = hashlib.sha256("\n".join(ids).encode()).hexdigest()
    resolved["num_pairs"] = len(pairs)
    resolved["method_details"] = {m: meth.describe() for m, meth in methods.items()}
    for model, key in _NOISE_PARAMS.items():  # only the parameters of the model in use
        if cfg.depth_noise != model:
            resolved.pop(key)
    _METHODS.update({m: meth for m, meth in methods.items()})
    return pairs, methods, resolved


def _json_safe(obj):
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def run_benchmark(cfg: BenchConfig, log=print) -> dict:
    """Predict (resuming from the cache), score, and write every report. Returns the summary."""
    from twoview.bench.report import write_reports
    from twoview.bench.scoring import score_run

    t_start = time.perf_counter()
    pairs, methods, resolved = resolve(cfg)
    resolved = _json_safe(resolved)
    out = prepare_out(cfg, resolved)
    from twoview.bench.methods import init_chain

    levels = method_levels(cfg.methods)
    noise_params = getattr(cfg, _NOISE_PARAMS[cfg.depth_noise]).to_dict() if cfg.depth_noise else None
    # waves: every method a wave depends on (A@B's B) is complete before it starts, so
    # A@B reuses B's cached prediction; within a wave, pair-major
    waves: list[list[tuple]] = [[] for _ in range(max(levels.values()) + 1)]
    corrupt = []
    for p in pairs:
        for m in cfg.methods:
            path = cache_path(out, m, p.pair_id)
            if path.exists() and not _valid_cache(path):
                corrupt.append(path)
            if not _valid_cache(path):
                init = {d: str(cache_path(out, d, p.pair_id)) for d in init_chain(m)}
                waves[levels[m]].append((m, p, str(path), cfg.depth_noise, noise_params, init))
    waves = [w for w in waves if w]
    if corrupt:
        log(f"twoview bench: warning: {len(corrupt)} cached prediction(s) unreadable, edited or of another version "
            f"(e.g. {corrupt[0]}): recomputed")
    n_tasks = sum(len(w) for w in waves)
    done = len(pairs) * len(cfg.methods) - n_tasks
    log(f"twoview bench: {len(pairs)} pairs x {len(cfg.methods)} methods; {done} cached, {n_tasks} to predict "
        f"({cfg.engine}, {cfg.workers} worker{'s' if cfg.workers > 1 else ''})")
    load0 = _loadavg()
    t_pred, c_pred = time.perf_counter(), time.process_time()
    if waves:
        from twoview.bench.engines import run_tasks

        run_tasks(waves, cfg.engine, cfg.workers, cfg.address, cfg.progress)
    t_pred, c_pred = time.perf_counter() - t_pred, time.process_time() - c_pred
    scored = [sensed_pair(p, cfg.depth_noise, noise_params, colour=False) for p in pairs]
    thresholds = [tuple(t) for t in cfg.precision_thresholds]
    per_pair, summary = score_run(out, scored, methods, thresholds)
    if cfg.comparisons:
        from twoview.bench.compare import paired_differences

        summary["comparisons"] = []
        for a, b in cfg.comparisons:
            ra, rb = ([r for r in per_pair if r["method"] == m] for m in (a, b))
            metric = bool(summary["methods"][a]["metric"] and summary["methods"][b]["metric"])
            summary["comparisons"].append({"a": a, "b": b, **paired_differences(ra, rb, metric, thresholds)})
    summary["run"] = {
        "predict_s": round(t_pred, 2), "total_s": round(time.perf_counter() - t_start, 2),
        # CPU time of this process only (worker processes and Ray are not included)
        "driver_cpu_s": round(c_pred, 2), "predicted": n_tasks, "from_cache": done,
        "loadavg_1min_start": load0, "loadavg_1min_end": _loadavg(),
    }
    with writing("--out", out):
        write_reports(out, resolved, per_pair, summary, cfg.methods)
    for name, ms in summary["methods"].items():
        if ms.get("num_errors"):
            log(f"twoview bench: warning: {name} raised an exception on {ms['num_errors']} of {ms['num_pairs']} pairs "
                f"(scored as failures; reasons in per_pair.csv; delete {cache_path(out, name, 'x').parent} to recompute)")
    return summary


def _valid_cache(path: Path) -> bool:
    return path.is_file() and _read_record(path) is not None


def _loadavg() -> float | None:
    import os

    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None
