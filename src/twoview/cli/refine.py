"""``twoview refine``: refine a relative pose by aligning the two views' Gaussian mixtures."""

from __future__ import annotations

import argparse

from twoview.cli.common import add_gmm_args, check_output_files, gmm_config, write_json_output, write_output
from twoview.cli.estimate import add_estimator_args, build_inputs, cli_names
from twoview.errors import InputError


OUTPUT_FLAGS = {"json": "--json", "viz": "--viz", "html": "--html", "view": "--view", "save_ply0": "--save-ply0", "save_ply1": "--save-ply1"}


def run(args) -> int:
    from twoview.geometry.pose import Pose
    from twoview.gmm.api import load_inputs, read_pose_json

    check_output_files(args, OUTPUT_FLAGS)
    inputs = build_inputs(args)
    if args.depth0 is None or args.depth1 is None:
        raise InputError("--depth0" if args.depth0 is None else "--depth1",
                         "refinement builds metric Gaussian mixtures: give depth for both images")
    cfg = gmm_config(args)
    keys = ("image0", "image1", "camera0", "camera1", "depth0", "depth1", "depth_scale")
    try:
        im0, im1, cam0, cam1, d0, d1 = load_inputs(**{k: inputs[k] for k in keys})
    except InputError as e:
        raise InputError(cli_names(args).get(e.what, e.what), e.problem) from None

    front = None
    if args.init is None:
        from twoview.estimator import estimate_relative_pose

        front = estimate_relative_pose(im0, im1, cam0, cam1, d0, d1, config=inputs["config"])
        if not front.success:
            print(front.summary())
            return 1
        init = front.cam1_from_cam0
        print(f"initial pose from the {front.solver} front end")
    elif args.init == "identity":
        init = Pose.identity()
    else:
        init = read_pose_json(args.init)

    import time

    from twoview.gmm.align import align_mixtures
    from twoview.gmm.mixture import build_mixture, load_feature_backend

    t_load = time.perf_counter()
    load_feature_backend(cfg.build)
    t0 = time.perf_counter()
    try:
        mix0 = build_mixture(im0, d0, cam0, cfg.build, name="0")
        mix1 = build_mixture(im1, d1, cam1, cfg.build, name="1")
    except InputError as e:
        raise InputError(cli_names(args).get(e.what, e.what), e.problem) from None
    t1 = time.perf_counter()
    result = align_mixtures(mix0, mix1, init, cfg.align)
    result.timings_ms.update({"load_features": (t0 - t_load) * 1e3, "build": (t1 - t0) * 1e3,
                              "optimize": (time.perf_counter() - t1) * 1e3})
    if front is not None:  # the front end's matches, as `estimate --refine gmm` reports them
        result.timings_ms = {**front.timings_ms, **result.timings_ms}
        result.num_matches, result.num_inliers = front.num_matches, front.num_inliers
        result.matches, result.inliers = front.matches, front.inliers
    print(result.summary())
    if result.success:
        i = result.info
        print(f"objective {i['objective_before']:.4f} -> {i['objective_after']:.4f}, geometric score "
              f"{i['score_before']:.4f} -> {i['score_after']:.4f}, {i['iterations']} iterations"
              + (" (refinement rejected: initial pose kept)" if i["rejected"] else ""))
    if args.json:
        write_json_output(args, "--json", result.to_dict())
    if args.viz:
        from twoview.gmm.viz import overlay_png

        poses = {"initial": init}
        if result.success:
            poses["refined"] = result.cam1_from_cam0
        write_output("--viz", args.viz, lambda p: overlay_png(p, mix0, mix1, poses))
    if args.html:
        from twoview.gmm.viz import overlay_html

        write_output("--html", args.html, lambda p: overlay_html(p, mix0, mix1, result.cam1_from_cam0 if result.success else init))
    if args.view:
        from twoview.view3d import build_scene, write_html

        write_output("--view", args.view, lambda p: write_html(
            p, build_scene(im0, im1, cam0, cam1, d0, d1, result, mixtures=(mix0, mix1)), name="--view"))
    for flag, path, mix in (("--save-ply0", args.save_ply0, mix0), ("--save-ply1", args.save_ply1, mix1)):
        if path:
            from twoview.gmm.ply import write_ply

            write_output(flag, path, lambda p, m=mix: write_ply(p, m))
    return 0 if result.success else 1


def register(sub) -> None:
    from twoview.cli import EXIT_STATUS_HELP

    p = sub.add_parser(
        "refine",
        help="refine cam1_from_cam0 by aligning single-view Gaussian mixtures (needs depth)",
        description="Build a metric 3D Gaussian mixture from each RGB-D view and align them, starting "
        "from --init (a `twoview estimate --json` file or a bare 4x4 list), 'identity', or, when "
        "omitted, the estimate front end. " + EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_estimator_args(p)
    g = p.add_argument_group("refinement")
    g.add_argument("--init", metavar="POSE.json", help="initial pose file, or 'identity' (default: run the front end)")
    add_gmm_args(g)
    g = p.add_argument_group("outputs")
    g.add_argument("--json", metavar="OUT", help="write the result as JSON (atomically; '-': standard output, "
                   "the human-readable lines then go to standard error)")
    g.add_argument("--viz", metavar="OUT.png", help="both mixtures overlaid, before and after (.png, .jpg or .jpeg)")
    g.add_argument("--html", metavar="OUT.html", help="interactive 3D view of the aligned mixtures alone")
    g.add_argument("--view", metavar="OUT.html", help="interactive 3D view: cameras, mixtures, depth clouds, matches")
    g.add_argument("--save-ply0", metavar="OUT.ply", help="mixture of image0 as a 3DGS PLY")
    g.add_argument("--save-ply1", metavar="OUT.ply", help="mixture of image1 as a 3DGS PLY")
    p.set_defaults(func=run)
