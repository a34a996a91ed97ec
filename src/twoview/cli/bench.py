"""``twoview bench``: run methods side by side on a dataset, cache, score, report."""

from __future__ import annotations

import json

from twoview.cli.common import as_flag_error

#: --depth-noise choices naming a preset of twoview.depth.sensor.SENSOR_PRESETS (kept
#: literal here so that --help does not import numpy)
SENSOR_NAMES = ("kinect", "kinect7", "kinect7-colour")
#: config keys whose errors are reported under the flag that sets them
CONFIG_FLAGS = {"gaps": "--gap", "stride": "--stride", "max_pairs": "--max-pairs", "workers": "--workers",
                "methods": "--method", "comparisons": "--compare"}


def _parse_option(text: str) -> tuple[str, object]:
    from twoview.errors import InputError

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise InputError("--option", f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value  # a bare string, e.g. trajectory=traj.log
    except RecursionError:
        raise InputError("--option", f"{key}: the value is nested too deeply") from None


def _range(values, name):
    from twoview.errors import InputError

    if values is None:
        return None
    lo, hi = values
    if not lo <= hi:
        raise InputError(name, f"MIN must not exceed MAX, got {lo} {hi}")
    return lo, hi


def build_config(args):
    from twoview.bench.runner import BenchConfig
    from twoview.errors import ConfigError, InputError

    opts: dict = {}
    for text in args.option or []:
        k, v = _parse_option(text)
        opts[k] = v
    if args.pairs and (args.gap or args.gap_range):
        raise InputError("--pairs", "give either --pairs or --gap, not both")
    if args.pairs:
        opts["pairs_file"] = args.pairs
    if args.gap and args.gap_range:
        raise InputError("--gap-range", "give either --gap or --gap-range, not both")
    if args.gap:
        opts["gaps"] = args.gap
    if args.gap_range:
        lo, hi = _range(args.gap_range, "--gap-range")
        if lo < 1:
            raise InputError("--gap-range", f"gaps start at 1, got {lo}")
        opts["gaps"] = list(range(lo, hi + 1))
    if args.stride is not None:
        opts["stride"] = args.stride
    if args.max_pairs is not None:
        opts["max_pairs"] = args.max_pairs
    for flag, (lo_key, hi_key) in (("rot_range", ("min_rot_deg", "max_rot_deg")),
                                   ("trans_range", ("min_trans_m", "max_trans_m")),
                                   ("overlap_range", ("min_overlap", "max_overlap"))):
        r = _range(getattr(args, flag), "--" + flag.replace("_", "-"))
        if r:
            opts[lo_key], opts[hi_key] = r
    d = {
        "dataset": args.dataset, "root": args.root, "dataset_options": opts, "methods": args.method or [],
        "out": args.out, "overwrite": args.overwrite, "workers": args.workers, "engine": args.engine,
        "address": args.address, "depth_noise": args.depth_noise or False, "progress": not args.no_progress,
    }
    if args.depth_noise in SENSOR_NAMES:  # a named sensor model: recorded as "kinect" and its parameters
        from twoview.depth.sensor import sensor_preset

        d["depth_noise"], d["depth_sensor"] = "kinect", sensor_preset(args.depth_noise).to_dict()
    if args.compare:
        d["comparisons"] = [list(c) for c in args.compare]
    if args.precision:
        d["precision_thresholds"] = [[0.25, 5.0]] + [list(p) for p in args.precision]
    try:
        return BenchConfig.from_dict(d)
    except ConfigError as e:
        err = as_flag_error(e, CONFIG_FLAGS)
        raise (err if isinstance(err, InputError) else InputError("configuration", str(e))) from None


def run(args) -> int:
    if args.list_methods:
        from twoview.bench.methods import available_methods

        print("\n".join(available_methods()))
        return 0
    if args.list_datasets:
        from twoview.datasets import available_datasets

        print("\n".join(available_datasets()))
        return 0
    from twoview.errors import InputError

    for flag in ("dataset", "root", "out"):
        if not getattr(args, flag):
            raise InputError(f"--{flag}", "is required")
    if not args.method:
        raise InputError("--method", "give at least one method (twoview bench --list-methods)")
    from twoview.bench.runner import run_benchmark
    from twoview.errors import ConfigError

    cfg = build_config(args)
    try:
        summary = run_benchmark(cfg)
    except ConfigError as e:  # the pair selection is checked by the dataset reader
        raise as_flag_error(e, CONFIG_FLAGS) from None
    print((__import__("pathlib").Path(cfg.out) / "results.md").read_text())
    r = summary["run"]
    print(f"predicted {r['predicted']} (cached {r['from_cache']}) in {r['predict_s']:.1f} s; total {r['total_s']:.1f} s; "
          f"wrote {cfg.out}/{{summary.json,results.md,per_pair.csv,plots/,report.html}}")
    return 0


def register(sub) -> None:
    from twoview.cli import EXIT_STATUS_HELP_NO_POSE

    p = sub.add_parser(
        "bench",
        help="benchmark methods side by side on a dataset (cached, resumable)",
        description="Run methods on the pairs of a dataset, cache each prediction in OUT/cache so an "
        "interrupted run resumes, and score into OUT/summary.json, results.md, per_pair.csv, plots/ and report.html. "
        + EXIT_STATUS_HELP_NO_POSE,
    )
    p.add_argument("--dataset", metavar="KIND", help="tum, 7scenes, icl_nuim, redwood, kitti, superglue_pairs, megadepth1500, realestate10k, co3d")
    p.add_argument("--root", metavar="DIR", help="dataset folder")
    g = p.add_argument_group("pairs (default: consecutive frames, gap 1)")
    g.add_argument("--pairs", metavar="FILE", help="pair list: one pair a line, the two frame ids (or the dataset's own pair file)")
    g.add_argument("--gap", type=int, nargs="+", metavar="N", help="frame gaps to pair")
    g.add_argument("--gap-range", type=int, nargs=2, metavar=("MIN", "MAX"),
                   help="every gap from MIN to MAX (combine with --rot-range/--trans-range/--overlap-range and --max-pairs)")
    g.add_argument("--stride", type=int, metavar="S", help="step between first frames of pairs")
    g.add_argument("--max-pairs", type=int, metavar="N", help="keep at most N pairs (evenly spaced)")
    g.add_argument("--rot-range", type=float, nargs=2, metavar=("MIN", "MAX"), help="GT rotation range, degrees")
    g.add_argument("--trans-range", type=float, nargs=2, metavar=("MIN", "MAX"), help="GT baseline range, metres")
    g.add_argument("--overlap-range", type=float, nargs=2, metavar=("MIN", "MAX"), help="covisibility range in [0, 1] (needs depth)")
    g.add_argument("--option", action="append", metavar="KEY=VALUE", help="reader option, e.g. trajectory=traj.log (JSON values)")
    g = p.add_argument_group("methods")
    g.add_argument("--method", action="append", metavar="NAME[:KEY=VALUE,...]",
                   help="repeatable; options after ':' go to the method's factory (e.g. regress:checkpoint=runs/x/model.pt, "
                   "the same method twice with different options is allowed); A@B initialises A from B's pose")
    g.add_argument("--compare", nargs=2, action="append", metavar=("A", "B"),
                   help="also report B - A on every metric with a 95 %% paired bootstrap interval over pairs "
                        "(both given as --method; repeatable)")
    g.add_argument("--list-methods", action="store_true", help="print the available methods and exit")
    g.add_argument("--list-datasets", action="store_true", help="print the dataset kinds and exit")
    g.add_argument("--depth-noise", nargs="?", const="monocular", choices=["monocular", *SENSOR_NAMES],
                   help="corrupt the depth methods receive, seeded per pair and view, the same for all methods: "
                   "'monocular' (also the flag alone) simulates monocular depth (global scale in [0.85, 1.15], smooth +-5%% "
                   "field); 'kinect' simulates a raw Kinect v1-class sensor whose depth is not registered to colour "
                   "(IR camera 2.5 cm beside the colour camera, noise growing with depth squared, 1/8 px disparity "
                   "quantisation, projector shadows, holes and flying pixels at depth edges, 0.5-5 m range; "
                   "twoview.depth.sensor), scored on the colour cameras' poses; 'kinect7' is that sensor as 7-Scenes "
                   "users meet it: the methods get the depth camera's intrinsics (focal length 585/525 of the colour "
                   "one) for colour and depth alike, the ground truth is the depth cameras' poses (as from a depth-only "
                   "reconstruction such as KinectFusion), and colour and depth are exposed at different times (Kinect v1 "
                   "streams are not synchronised: 0.2 deg, 3 mm RMS between them per view); 'kinect7-colour' adds the "
                   "colour a consumer camera records where the dataset's is rendered (defocus 1 px, motion blur 9 px, noise "
                   "4 grey levels, JPEG quality 40; made once per view under $TWOVIEW_CACHE/bench_colour); recorded with "
                   "its parameters in OUT/config.json")
    g.add_argument("--precision", type=float, nargs=2, action="append", metavar=("METRES", "DEGREES"),
                   help="extra pose-precision threshold (25 cm, 5 deg is always reported)")
    g = p.add_argument_group("output and execution")
    g.add_argument("--out", metavar="DIR", help="output folder")
    g.add_argument("--overwrite", action="store_true", help="replace a run with a different configuration in --out")
    g.add_argument("--workers", type=int, default=1, help="worker processes (local) or Ray CPUs")
    g.add_argument("--engine", choices=["local", "ray"], default="local")
    g.add_argument("--address", help="Ray cluster address (default: start a local Ray)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
