"""``twoview estimate``: relative pose of two images (or of every pair of a list).

The command builds the two views and the pipeline configuration from its arguments and
runs :class:`twoview.Pipeline`, the same object the Python API and the bench call.
"""

from __future__ import annotations

import argparse
import typing

from twoview.cli.common import (
    add_gmm_args, check_output_files, gmm_config, load_intrinsics_file, parse_floats, parse_intrinsics,
    positive_float, refuse_unused, write_json_output, write_output, write_picture_output, GMM_FLAGS,
)
from twoview.config import MatcherConfig, MatcherPrecision, MatcherRuntime
from twoview.errors import ConfigError, InputError

MATCHERS = ["sift", "xfeat", "aliked", "disk"]


def add_view_args(p: argparse.ArgumentParser, positional: bool = True) -> None:
    """The two views: images, intrinsics, depth."""
    if positional:
        p.add_argument("image0", help="first image (the pose maps its camera frame to the second's)")
        p.add_argument("image1", help="second image")
    g = p.add_argument_group("intrinsics (default: EXIF focal length, else a 65 deg field-of-view guess)")
    g.add_argument("--K0", metavar="fx,fy,cx,cy", help="intrinsics of image0 (or f,cx,cy, or 9 numbers of K)")
    g.add_argument("--K1", metavar="fx,fy,cx,cy", help="intrinsics of image1 (default: --K0)")
    g.add_argument("--dist0", metavar="k1,k2,p1,p2[,k3]", help="OpenCV distortion of image0 (keypoints and depth are undistorted)")
    g.add_argument("--dist1", metavar="k1,k2,p1,p2[,k3]", help="distortion of image1 (default: --dist0 when --K1 is not given)")
    g.add_argument("--intrinsics", metavar="FILE", help="JSON {K0, K1}, or a text file with one or two K lines (or a 3x3 K)")
    g = p.add_argument_group("depth (metric translation)")
    g.add_argument("--depth0", metavar="FILE", help="depth of image0: 16-bit .png, .npy, .pfm or .exr")
    g.add_argument("--depth1", metavar="FILE", help="depth of image1")
    g.add_argument("--depth-scale", metavar="S", help="PNG units per metre (1000 = mm, 5000 = TUM)")
    g.add_argument("--depth-kind", choices=["sensor", "monocular"],
                   help="what the depth files are: sensor (measured, the default) or monocular (a network's prediction: "
                   "the maps' scales are estimated)")
    g = p.add_argument_group("monocular depth model (metric translation from the photos alone)")
    g.add_argument("--depth-model", metavar="ID_OR_PATH",
                   help="predict both depth maps with a metric depth network: a save_pretrained() folder or a Hugging Face "
                   "hub id in the local cache (Depth Anything V2 metric, Depth Pro, ZoeDepth); needs twoview[depth]")
    g.add_argument("--depth-resolution", type=int, metavar="PX", help="network input size (shorter side; default: the model's)")
    g.add_argument("--depth-cache", metavar="DIR", help="cache of predicted depth (default ~/.cache/twoview/depth; '' disables)")


def add_pipeline_args(p: argparse.ArgumentParser, refine_choices=("auto", "none", "gmm")) -> None:
    """The pipeline's options; each flag left out keeps the configuration's value (the
    defaults, or those of ``--config``)."""
    g = p.add_argument_group("pipeline (every flag left out keeps the default pipeline's setting)")
    g.add_argument("--config", metavar="FILE.json", help="a pipeline configuration (partial PipelineConfig as JSON), "
                   "applied before the flags below")
    g.add_argument("--method", choices=["match", "regress"],
                   help="front end: match (features + robust solver, default) or regress (the pose regressor, one forward "
                   "pass, no matching; needs twoview[learned])")
    g.add_argument("--checkpoint", metavar="PATH", help="regressor checkpoint for --method regress (default: the shipped model)")
    g.add_argument("--network-pose", action="store_true",
                   help="--method regress with both depth maps: keep the regressed pose (default: the rigid motion of "
                        "the network's own cell matches with depth, where enough agree)")
    g.add_argument("--matcher", choices=MATCHERS, help="the (first) matcher")
    g.add_argument("--cascade", choices=["none"] + MATCHERS,
                   help="a second matcher run only when the first one's pose is weak (none: off)")
    g.add_argument("--rescue", choices=["none"] + MATCHERS,
                   help="with depth for both views, the strongest matcher, run when there is still no pose or the "
                        "3D-3D solver could not give one (default aliked; none: off)")
    g.add_argument("--max-keypoints", type=int, metavar="N",
                   help="keypoints per image (default: the matcher's own, XFeat 1536 and 2048 for the others)")
    g.add_argument("--resize-max", type=int, metavar="N",
                   help=f"longest image side fed to the matcher, keypoints mapped back (default {MatcherConfig.resize_max}; "
                        "0 keeps the input size)")
    g.add_argument("--sift-first-octave", type=int, choices=[-1, 0],
                   help="SIFT: -1 starts from the 2x upsampled image (Lowe), 0 from the image (about 3x faster, "
                        "fewer fine-scale keypoints)")
    g.add_argument("--precision", choices=list(typing.get_args(MatcherPrecision)),
                   help="learned matchers: bfloat16 runs the networks under autocast (faster on CPUs with AVX512-BF16/AMX)")
    g.add_argument("--matcher-runtime", choices=list(typing.get_args(MatcherRuntime)),
                   help="XFeat: onnx runs it under onnxruntime (no torch import; exported once to ~/.cache/twoview/onnx), "
                        "torch in torch; auto (default): onnx where onnxruntime is installed")
    g.add_argument("--solver", choices=["auto", "essential", "pnp", "rigid3d", "monodepth"],
                   help="auto: rigid3d with two depth maps, pnp with one, essential with none, monodepth with monocular depth")
    g.add_argument("--max-reproj-error", type=float, metavar="PX", help="PnP / rigid3d inlier threshold, pixels")
    g.add_argument("--exact-depth", action="store_true", default=None,
                   help="solve with the depth map's points as exact (default: depth is a measurement whose noise is estimated)")
    g.add_argument("--no-register", action="store_true", default=None,
                   help="use sensor depth as given (default: where a view's contours show depth and colour displaced, "
                   "move one onto the other)")
    g.add_argument("--refine", choices=list(refine_choices),
                   help="auto (default): Gaussian-mixture refinement when both views have depth; gmm: require it; none: off")
    add_gmm_args(g)
    g.add_argument("--gicp", choices=["auto", "always", "never"],
                   help="GICP between the depth maps after the mixtures: auto (default) where the depth is a second "
                   "camera's (its colour was registered onto it), always, never")
    g.add_argument("--no-geometry-finish", action="store_true", default=None,
                   help="keep GICP's pose (default: after GICP, align the mixtures once more on geometry alone)")
    g.add_argument("--polish-veto", choices=["auto", "always", "never"],
                   help="may the colour undo the mixtures' geometry-only dense polish: auto (default) where the "
                   "registration could check a view's colour against its depth contours, always, never")
    g.add_argument("--no-recovery", action="store_true", default=None,
                   help="give up when matching fails (default: try registrations without matches first)")
    g.add_argument("--min-confidence", type=float, metavar="P",
                   help="report a pose below this confidence (the probability it is within 5 deg and 10 cm) as a failure")
    g.add_argument("--min-depth-agreement", type=float, metavar="F",
                   help="with sensor depth in both views, a pose at which less than this fraction of the overlapping "
                   "depth lies on the other view's surface gets confidence 0 (default 0.15; 0: off)")
    g.add_argument("--depth-confirmed-confidence", type=float, metavar="P",
                   help="with sensor depth in both views, a pose both depth maps confirm (a fifth of each shared, under 5%% "
                   "of it in the other's free space, at least half on its surface) gets at least this confidence "
                   "(default 0.5; 0: off)")


def _check_same_size(image0: str, image1: str) -> None:
    """One K for both views only fits when the images share a size (a common slip: a K for the full-size
    frame beside a downscaled one, whose principal point still lies inside the larger image)."""
    from twoview.io.images import image_size

    try:
        s0, s1 = image_size(image0), image_size(image1)
    except InputError:
        return  # unreadable: the view names the file when it loads it
    if s0 != s1:
        raise InputError("--K1", f"image1 is {s1[0]}x{s1[1]} but image0 is {s0[0]}x{s0[1]}: --K0 cannot serve both, give --K1")


def view_inputs(args) -> dict:
    """The two views' inputs (keyword arguments of :func:`twoview.load_views`) from the arguments."""
    k0 = parse_intrinsics(args.K0, "--K0")
    k1 = parse_intrinsics(args.K1, "--K1")
    if args.intrinsics:
        if k0 is not None:
            raise InputError("--intrinsics", "give either --intrinsics or --K0/--K1, not both")
        k0, k1 = load_intrinsics_file(args.intrinsics)
    dist0 = parse_floats(args.dist0, "--dist0", (4, 5)) if args.dist0 else None
    dist1 = parse_floats(args.dist1, "--dist1", (4, 5)) if args.dist1 else (dist0 if args.K1 is None else None)
    if k0 is not None and (k1 is None or k1 is k0):  # one K given for both views
        _check_same_size(args.image0, args.image1)
        k1 = k0
    if (dist0 and k0 is None) or (dist1 and k1 is None):
        raise InputError("--dist0" if dist0 else "--dist1", "distortion needs the intrinsics too (--K0/--K1 or --intrinsics)")
    if dist0:
        k0 = {"K": k0, "dist": dist0}
    if dist1:
        k1 = {"K": k1, "dist": dist1}
    scale = positive_float("--depth-scale")(args.depth_scale) if args.depth_scale else None
    if scale is not None and not (args.depth0 or args.depth1):
        raise InputError("--depth-scale", "only applies with --depth0/--depth1 (units per metre of their files)")
    if args.depth_kind and not (args.depth0 or args.depth1):
        raise InputError("--depth-kind", "only applies with --depth0/--depth1")
    if args.depth_model and (args.depth0 or args.depth1):
        raise InputError("--depth-model", "give either depth files (--depth0/--depth1) or --depth-model, not both")
    if not args.depth_model:
        refuse_unused(args, {"depth_resolution": "--depth-resolution", "depth_cache": "--depth-cache"}, "with --depth-model")
    return dict(image0=args.image0, image1=args.image1, camera0=k0, camera1=k1, depth0=args.depth0, depth1=args.depth1,
                depth_scale=scale, depth_kind=args.depth_kind or "sensor")


def cli_names(args) -> dict[str, str]:
    """Library argument names -> the command-line flags a user typed."""
    k = "--intrinsics" if getattr(args, "intrinsics", None) else None
    return {
        "camera0": k or "--K0", "camera1": k or ("--K1" if args.K1 else "--K0"),
        "depth0": "--depth0", "depth1": "--depth1", "depth.model": "--depth-model", "depth_model": "--depth-model",
        "solver.mode": "--solver", "depth scale": "--depth-scale", "refine.method": "--refine", "init": "--init",
    }


def as_cli_error(args, e: InputError) -> InputError:
    """``e`` under the flag the user typed for the library argument it names."""
    return InputError(cli_names(args).get(e.what, e.what), e.problem)


def load_cli_views(args):
    """(view0, view1) from the arguments, bad input reported under the flags typed."""
    from twoview.view import load_views

    try:
        return load_views(**view_inputs(args))
    except InputError as e:
        raise as_cli_error(args, e) from None


def pipeline_config(args, refine: str | None = None):
    """The :class:`twoview.PipelineConfig` of the arguments: ``--config``, then every flag
    given (``refine`` forces the refinement method, as ``twoview refine`` does)."""
    from twoview.gmm.config import merge_dicts
    from twoview.io.text import read_json
    from twoview.pipeline import PipelineConfig

    base: dict = {}
    if args.config:
        base = read_json(args.config, "--config")
        if not isinstance(base, dict):
            raise InputError("--config", f"{args.config}: expected a JSON object of PipelineConfig fields")
    over: dict = {}

    def put(path: str, value):
        if value is None:
            return
        d = over
        *parents, key = path.split(".")
        for k in parents:
            d = d.setdefault(k, {})
        d[key] = value

    put("front_end", args.method)
    put("regressor.checkpoint", args.checkpoint)
    put("regressor.rigid_from_matches", False if args.network_pose else None)
    put("matcher.name", args.matcher)
    for key, flag in (("fallback", args.cascade), ("rescue", args.rescue)):
        if flag is not None:  # "none" switches that matcher off
            over.setdefault("cascade", {})[key] = None if flag == "none" else flag
    put("matcher.max_keypoints", args.max_keypoints)
    if args.resize_max is not None:
        over.setdefault("matcher", {})["resize_max"] = args.resize_max or None
    put("matcher.sift_first_octave", args.sift_first_octave)
    put("matcher.precision", args.precision)
    put("matcher.runtime", args.matcher_runtime)
    put("solver.mode", args.solver)
    if args.max_reproj_error is not None:
        positive_float("--max-reproj-error")(str(args.max_reproj_error))
    put("solver.max_reproj_error", args.max_reproj_error)
    put("solver.depth_noise", "exact" if args.exact_depth else None)
    put("depth.register", False if args.no_register else None)
    put("refine.method", refine or args.refine)
    put("refine.gicp", args.gicp)
    put("refine.geometry_finish", False if args.no_geometry_finish else None)
    put("refine.polish_veto", args.polish_veto)
    put("recovery.enabled", False if args.no_recovery else None)
    put("confidence.min_confidence", args.min_confidence)
    put("confidence.min_depth_agreement", args.min_depth_agreement)
    put("confidence.depth_confirmed_confidence", args.depth_confirmed_confidence)
    if getattr(args, "depth_model", None):
        put("depth.model", {"model": args.depth_model, "resolution": args.depth_resolution, "cache_dir": args.depth_cache})
    if args.method != "regress" and args.checkpoint:
        raise InputError("--checkpoint", "only used with --method regress")
    if args.method != "regress" and args.network_pose:
        raise InputError("--network-pose", "only used with --method regress")
    try:
        cfg = PipelineConfig.from_dict(merge_dicts(base, over))
        if any(getattr(args, a, None) not in (None, False) for a in GMM_FLAGS):
            both = bool((args.depth0 and args.depth1) or getattr(args, "depth_model", None))
            if cfg.refine.method == "none" or not both:
                refuse_unused(args, GMM_FLAGS, "with the mixture refinement (depth for both views, --refine auto or gmm)")
            mono = (args.depth_kind == "monocular") or bool(getattr(args, "depth_model", None))
            field = "gmm_monocular" if mono else "gmm"
            cfg = cfg.replace(refine=cfg.refine.replace(**{field: gmm_config(args, "monocular" if mono else "default",
                                                                                 base=getattr(cfg.refine, field))}))
    except ConfigError as e:
        msg = str(e)
        flag = "--depth-model" if msg.startswith("depth model") else "--config" if args.config else "pipeline option"
        raise InputError(flag, msg) from None
    return cfg


OUTPUT_FLAGS = {"json": "--json", "viz": "--viz", "view": "--view"}


def write_outputs(args, result, view0, view1) -> None:
    if args.json:
        write_json_output(args, "--json", result.to_dict())
    if args.viz:
        from twoview.viz import draw_matches

        write_picture_output("--viz", args.viz, draw_matches(view0.image, view1.image, result))
    if args.view:
        from twoview.view3d import write_view

        write_output("--view", args.view, lambda p: write_view(p, view0, view1, result, name="--view"))


def run_pipeline(args, view0, view1, cfg, init=None):
    """Run the pipeline (its views kept in the result when an output draws them)."""
    from twoview.estimator import pipeline_for

    keep = bool(getattr(args, "viz", None) or getattr(args, "view", None) or getattr(args, "html", None)
                or getattr(args, "save_ply0", None) or getattr(args, "save_ply1", None))
    try:
        return pipeline_for(cfg)(view0, view1, init=init, keep_artifacts=keep)
    except InputError as e:
        raise as_cli_error(args, e) from None


def print_result(args, result) -> None:
    print(result.summary())
    info = result.info
    stages = info.get("pipeline", {}).get("stages", [])
    ran = [s for s in stages if s["stage"] in ("front_end", "refine", "gicp", "geometry_finish", "recovery")]
    if ran:
        print("stages: " + "; ".join(_stage_line(s) for s in ran))
    if info.get("depth_source") == "model" and info.get("depth_model"):
        m = info["depth_model"]
        cached = [m.get(f"view{v}", {}).get("cached") for v in (0, 1)]
        print(f"depth: predicted by {m['model']} ({m.get('model_type')}; cached: {cached[0]}/{cached[1]})")
    elif result.success and not result.metric and (args.depth0 or args.depth1):
        why = "; ".join(info.get("fallbacks", [])) or "no inlier has valid depth to scale the essential matrix"
        print(f"depth: given but not usable ({why}): the translation is a unit direction")
    elif result.success and not result.metric:
        print("depth: none given: the translation is a unit direction (give --depth0/--depth1 or --depth-model for metres)")


def _stage_line(s: dict) -> str:
    if s["stage"] == "front_end":
        what = s.get("matcher") or s.get("method")
        if s.get("skipped"):
            return f"{what} not available ({s['skipped']})"
        if s.get("success"):
            source = {"network": "the network's own pose"}.get(s.get("pose_source"), s.get("pose_source"))
            outcome = "ok" + (f", {s['inliers']} inliers" if s.get("inliers") is not None else "") + (f", {source}" if source else "")
        else:
            outcome = "no pose" + (f": {s['reason']}" if s.get("reason") else "")
        # a matcher after the first says why it ran; its own outcome comes first
        return f"{what} {outcome}" + (f" (ran because {s['why']})" if s.get("why") else "")
    if s["stage"] == "refine":
        if s.get("method") == "none":
            return f"no refinement ({s.get('why')})"
        return "gmm " + ("kept the front end's pose" if s.get("rejected") else "refined") if s.get("success") else "gmm failed"
    def moved() -> str:
        return f"moved it {s['rotation_change_deg']:.2f} deg, {100 * s['translation_change_m']:.1f} cm"

    if s["stage"] == "gicp":
        if not s.get("ran"):
            return f"no gicp ({s.get('why')})"
        return f"gicp {moved()}" if s.get("success") else f"gicp gave no pose ({s.get('why')})"
    if s["stage"] == "geometry_finish":
        return (f"geometry finish {moved()}" if s.get("success")
                else f"geometry finish failed ({s.get('reason')}): gicp's pose stands")
    return f"recovery: {s.get('chosen') or 'nothing accepted'}"


def run(args) -> int:
    if getattr(args, "pairs", None):
        from twoview.cli.batch import run_batch

        return run_batch(args)
    if not (args.image0 and args.image1):
        raise InputError("image0", "give two images, or --pairs FILE")
    check_output_files(args, OUTPUT_FLAGS)
    cfg = pipeline_config(args)
    if cfg.refine.method != "none" and args.depth0 and args.depth1:
        from twoview.pipeline.pipeline import warm_up_compiler

        warm_up_compiler()  # the refinement's compiler starts while the inputs load
    view0, view1 = load_cli_views(args)
    result = run_pipeline(args, view0, view1, cfg)
    print_result(args, result)
    v0, v1 = result.artifacts.get("views", (view0, view1))
    write_outputs(args, result, v0, v1)
    return 0 if result.success else 1


def register(sub) -> None:
    from twoview.cli import EXIT_STATUS_HELP

    p = sub.add_parser(
        "estimate",
        help="estimate the relative pose cam1_from_cam0 of two images (or of a list of pairs)",
        description="Estimate cam1_from_cam0 (x1 = R x0 + t, metres when depth is given) with the default pipeline, "
        "or the one the options describe. " + EXIT_STATUS_HELP,
    )
    p.add_argument("image0", nargs="?", help="first image (the pose maps its camera frame to the second's)")
    p.add_argument("image1", nargs="?", help="second image")
    add_view_args(p, positional=False)
    add_pipeline_args(p)
    g = p.add_argument_group("outputs")
    g.add_argument("--json", metavar="OUT", help="write the result as JSON (atomically; '-': standard output, "
                   "the human-readable lines then go to standard error)")
    g.add_argument("--viz", metavar="OUT.png", help="draw the inlier matches (.png, .jpg or .jpeg)")
    g.add_argument("--view", metavar="OUT.html", help="interactive 3D view: cameras, depth clouds, matches (one offline HTML file)")
    from twoview.cli.batch import add_batch_args

    add_batch_args(p)
    p.set_defaults(func=run)
