"""``twoview estimate``: relative pose of two images."""

from __future__ import annotations

import argparse
import typing

from twoview.cli.common import (
    GMM_FLAGS, add_gmm_args, check_output_files, gmm_config, load_intrinsics_file, parse_floats, parse_intrinsics,
    positive_float, refuse_unused, write_json_output, write_output, write_picture_output,
)
from twoview.config import EstimatorConfig, MatcherConfig, MatcherPrecision, SolverConfig
from twoview.errors import InputError


def add_estimator_args(p: argparse.ArgumentParser) -> None:
    """Arguments shared by commands that run the estimator (estimate, refine)."""
    p.add_argument("image0", help="first image (the pose maps its camera frame to the second's)")
    p.add_argument("image1", help="second image")
    g = p.add_argument_group("intrinsics (default: EXIF focal length, else a 65 deg field-of-view guess)")
    g.add_argument("--K0", metavar="fx,fy,cx,cy", help="intrinsics of image0 (or f,cx,cy, or 9 numbers of K)")
    g.add_argument("--K1", metavar="fx,fy,cx,cy", help="intrinsics of image1 (default: --K0)")
    g.add_argument("--dist0", metavar="k1,k2,p1,p2[,k3]", help="OpenCV distortion of image0 (keypoints and depth are undistorted)")
    g.add_argument("--dist1", metavar="k1,k2,p1,p2[,k3]", help="distortion of image1 (default: --dist0 when --K1 is not given)")
    g.add_argument("--intrinsics", metavar="FILE", help="JSON {K0, K1} or text file with one or two K lines")
    g = p.add_argument_group("depth (metric translation)")
    g.add_argument("--depth0", metavar="FILE", help="depth of image0: 16-bit .png, .npy, .pfm or .exr")
    g.add_argument("--depth1", metavar="FILE", help="depth of image1")
    g.add_argument("--depth-scale", metavar="S", help="PNG units per metre (1000 = mm, 5000 = TUM)")
    g = p.add_argument_group("front end")
    g.add_argument("--matcher", default="sift", choices=["sift", "xfeat", "aliked", "disk"])
    g.add_argument("--max-keypoints", type=int, default=MatcherConfig.max_keypoints)
    g.add_argument("--resize-max", type=int, default=MatcherConfig.resize_max, metavar="N",
                   help=f"longest image side fed to the matcher, keypoints mapped back (default {MatcherConfig.resize_max}; "
                        "0 keeps the input size)")
    g.add_argument("--sift-first-octave", type=int, choices=[-1, 0], default=MatcherConfig.sift_first_octave,
                   help="SIFT: -1 starts from the 2x upsampled image (Lowe), 0 from the image (about 3x faster, "
                        "fewer fine-scale keypoints)")
    g.add_argument("--precision", default=MatcherConfig.precision, choices=list(typing.get_args(MatcherPrecision)),
                   help="learned matchers: bfloat16 runs the networks under autocast (faster on CPUs with AVX512-BF16/AMX)")
    g.add_argument("--solver", default="auto", choices=["auto", "essential", "pnp", "rigid3d", "monodepth"],
                   help="auto: rigid3d with two depth maps, pnp with one, essential with none, monodepth with --depth-model")
    g.add_argument("--max-reproj-error", type=float, default=SolverConfig.max_reproj_error, help="pixels")


def _check_same_size(image0: str, image1: str) -> None:
    """One K for both views only fits when the images share a size (a common slip: a K for the full-size
    frame beside a downscaled one, whose principal point still lies inside the larger image)."""
    from twoview.io.images import image_size

    try:
        s0, s1 = image_size(image0), image_size(image1)
    except InputError:
        return  # unreadable: the estimator names the file when it loads it
    if s0 != s1:
        raise InputError("--K1", f"image1 is {s1[0]}x{s1[1]} but image0 is {s0[0]}x{s0[1]}: --K0 cannot serve both, give --K1")


def build_inputs(args) -> dict:
    """Keyword arguments for :func:`twoview.estimate_relative_pose` from parsed arguments."""
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
    cfg = EstimatorConfig.from_dict(
        {
            "matcher": {"name": args.matcher, "max_keypoints": args.max_keypoints, "resize_max": args.resize_max or None,
                        "sift_first_octave": args.sift_first_octave, "precision": args.precision},
            "solver": {"mode": args.solver, "max_reproj_error": args.max_reproj_error},
        }
    )
    out = dict(
        image0=args.image0, image1=args.image1, camera0=k0, camera1=k1,
        depth0=args.depth0, depth1=args.depth1, depth_scale=scale, config=cfg,
    )
    model = getattr(args, "depth_model", None)
    if model is not None:
        if args.depth0 or args.depth1:
            raise InputError("--depth-model", "give either depth files (--depth0/--depth1) or --depth-model, not both")
        from twoview.depth.estimators import DepthModelConfig
        from twoview.errors import ConfigError

        try:
            out["depth_model"] = DepthModelConfig.from_dict(
                {"model": model, "resolution": args.depth_resolution, "cache_dir": args.depth_cache}
            )
        except ConfigError as e:
            raise InputError("--depth-model", str(e)) from None
    else:
        refuse_unused(args, {"depth_resolution": "--depth-resolution", "depth_cache": "--depth-cache"}, "with --depth-model")
    return out


OUTPUT_FLAGS = {"json": "--json", "viz": "--viz", "view": "--view"}


def write_outputs(args, result, inputs) -> None:
    if args.json:
        write_json_output(args, "--json", result.to_dict())
    if args.viz:
        from twoview.io.images import load_image
        from twoview.viz import draw_matches

        write_picture_output("--viz", args.viz, draw_matches(load_image(inputs["image0"]), load_image(inputs["image1"]), result))
    if args.view:
        from twoview.view3d import write_view

        write_output("--view", args.view, lambda p: write_view(p, inputs, result, name="--view"))


def cli_names(args) -> dict[str, str]:
    """Library argument names -> the command-line flags a user typed."""
    k = "--intrinsics" if getattr(args, "intrinsics", None) else None
    return {
        "camera0": k or "--K0", "camera1": k or ("--K1" if args.K1 else "--K0"),
        "depth0": "--depth0", "depth1": "--depth1", "depth_model": "--depth-model",
        "solver.mode": "--solver", "depth scale": "--depth-scale",
    }


def run_estimator(args, inputs):
    """Run the estimator, reporting bad input under the flag names the user typed."""
    from twoview.estimator import estimate_relative_pose

    try:
        return estimate_relative_pose(**inputs)
    except InputError as e:
        what = cli_names(args).get(e.what, e.what)
        raise InputError(what, e.problem) from None


def run_regressor(args, inputs):
    """The pose regressor on the two images (no matching; intrinsics and depth unused)."""
    from twoview.regress import estimate

    return estimate(inputs["image0"], inputs["image1"], checkpoint=args.checkpoint)


def run(args) -> int:
    check_output_files(args, OUTPUT_FLAGS)
    if args.refine != "gmm":
        refuse_unused(args, GMM_FLAGS, "with --refine gmm")
    inputs = build_inputs(args)
    if args.method == "regress":
        result = run_regressor(args, inputs)
    else:
        if args.checkpoint:
            raise InputError("--checkpoint", "only used with --method regress")
        result = run_estimator(args, inputs)
    if args.refine == "gmm" and result.success:
        from twoview.gmm.api import refine_estimate

        print(f"front end: {result.summary().splitlines()[0]}")
        refine_inputs, preset = dict(inputs), "default"
        try:
            if inputs.get("depth_model") is not None:  # the predicted maps (cached on disk by the estimator)
                from twoview.depth.sources import predict_depth_pair

                d0, d1, _ = predict_depth_pair(inputs["depth_model"], inputs["image0"], inputs["image1"],
                                               inputs["camera0"], inputs["camera1"])
                refine_inputs.update(depth0=d0, depth1=d1, depth_scale=None)
                preset = "monocular"
            result = refine_estimate(refine_inputs, result, gmm_config(args, preset))
        except InputError as e:
            raise InputError(cli_names(args).get(e.what, e.what), e.problem) from None
    print(result.summary())
    if result.info.get("depth_source") == "model":
        m = result.info["depth_model"]
        cached = [m.get(f"view{v}", {}).get("cached") for v in (0, 1)]
        print(f"depth: predicted by {m['model']} ({m['model_type']}; cached: {cached[0]}/{cached[1]})")
    elif result.success and not result.metric and (args.depth0 or args.depth1):
        why = "; ".join(result.info.get("fallbacks", [])) or "no inlier has valid depth to scale the essential matrix"
        print(f"depth: given but not usable ({why}): the translation is a unit direction")
    elif result.success and not result.metric:
        print("depth: none given: the translation is a unit direction (give --depth0/--depth1 or --depth-model for metres)")
    write_outputs(args, result, inputs)
    return 0 if result.success else 1


def register(sub) -> None:
    from twoview.cli import EXIT_STATUS_HELP

    p = sub.add_parser(
        "estimate",
        help="estimate the relative pose cam1_from_cam0 of two images",
        description="Estimate cam1_from_cam0 (x1 = R x0 + t, metres when depth is given). "
        + EXIT_STATUS_HELP,
    )
    add_estimator_args(p)
    g = p.add_argument_group("method")
    g.add_argument("--method", choices=["match", "regress"], default="match",
                   help="match: feature matching + robust solver (the front end above); regress: the two-view pose "
                   "regressor, one forward pass, no matching (twoview.regress; needs twoview[learned])")
    g.add_argument("--checkpoint", metavar="PATH",
                   help="regressor checkpoint for --method regress (twoview train's model.pt or a Reloc3r .pth/"
                   ".safetensors; default: the shipped tiny model)")
    g = p.add_argument_group("monocular depth model (metric translation from the photos alone)")
    g.add_argument("--depth-model", metavar="ID_OR_PATH",
                   help="predict both depth maps with a metric depth network: a save_pretrained() folder or a Hugging Face "
                   "hub id in the local cache (Depth Anything V2 metric, Depth Pro, ZoeDepth); needs twoview[depth]")
    g.add_argument("--depth-resolution", type=int, metavar="PX", help="network input size (shorter side; default: the model's)")
    g.add_argument("--depth-cache", metavar="DIR", help="cache of predicted depth (default ~/.cache/twoview/depth; '' disables)")
    p.add_argument("--json", metavar="OUT", help="write the result as JSON (atomically; '-': standard output, "
                   "the human-readable lines then go to standard error)")
    p.add_argument("--viz", metavar="OUT.png", help="draw the inlier matches (.png, .jpg or .jpeg)")
    p.add_argument("--view", metavar="OUT.html", help="interactive 3D view: cameras, depth clouds, matches (one offline HTML file)")
    g = p.add_argument_group("refinement")
    g.add_argument("--refine", choices=["none", "gmm"], default="none",
                   help="refine the front end's metric pose by aligning Gaussian mixtures (needs both depths)")
    add_gmm_args(g)
    p.set_defaults(func=run)
