"""``twoview refine``: refine a relative pose by aligning the two views' Gaussian mixtures.

The same pipeline as ``twoview estimate`` with the refinement required, started from
``--init`` (a pose file or the identity) instead of its front end when given.
"""

from __future__ import annotations

import argparse

from twoview.cli.common import check_output_files, write_json_output, write_output
from twoview.cli.estimate import (
    add_pipeline_args, add_view_args, load_cli_views, pipeline_config, print_result, run_pipeline, write_outputs,
)
from twoview.errors import InputError

OUTPUT_FLAGS = {"json": "--json", "viz": "--viz", "html": "--html", "view": "--view", "save_ply0": "--save-ply0",
                "save_ply1": "--save-ply1"}


def run(args) -> int:
    from twoview.geometry.pose import Pose
    from twoview.gmm.api import read_pose_json

    check_output_files(args, OUTPUT_FLAGS)
    for flag, value in (("--depth0", args.depth0), ("--depth1", args.depth1)):
        if value is None and not args.depth_model:
            raise InputError(flag, "refinement builds metric Gaussian mixtures: give depth for both images")
    cfg = pipeline_config(args, refine="gmm")
    init = None
    if args.init == "identity":
        init = Pose.identity()
    elif args.init is not None:
        init = read_pose_json(args.init)
    view0, view1 = load_cli_views(args)
    result = run_pipeline(args, view0, view1, cfg, init=init)
    print_result(args, result)
    i = result.info
    if "objective_before" in i:
        print(f"objective {i['objective_before']:.4f} -> {i['objective_after']:.4f}, geometric score "
              f"{i['score_before']:.4f} -> {i['score_after']:.4f}, {i['iterations']} iterations"
              + (" (refinement rejected: initial pose kept)" if i.get("rejected") else ""))
    v0, v1 = result.artifacts.get("views", (view0, view1))
    mixtures = result.artifacts.get("mixtures")
    if args.json:
        write_json_output(args, "--json", result.to_dict())
    start = init if init is not None else (
        Pose.from_matrix(i["front_end"]["cam1_from_cam0"]) if "front_end" in i else None)
    if mixtures is not None:
        mix0, mix1 = mixtures
        if args.viz:
            from twoview.gmm.viz import overlay_png

            poses = {"initial": start} if start is not None else {}
            if result.success:
                poses["refined"] = result.cam1_from_cam0
            write_output("--viz", args.viz, lambda p: overlay_png(p, mix0, mix1, poses))
        if args.html:
            from twoview.gmm.viz import overlay_html

            shown = result.cam1_from_cam0 if result.success else start
            write_output("--html", args.html, lambda p: overlay_html(p, mix0, mix1, shown))
        for flag, path, mix in (("--save-ply0", args.save_ply0, mix0), ("--save-ply1", args.save_ply1, mix1)):
            if path:
                from twoview.gmm.ply import write_ply

                write_output(flag, path, lambda p, m=mix: write_ply(p, m))
    elif args.viz or args.html or args.save_ply0 or args.save_ply1:
        print("no mixtures were built (the front end failed before the refinement): nothing to draw or save")
    if args.view:
        args_viz, args.viz = args.viz, None  # --viz draws the mixtures here, not the matches
        args_json, args.json = args.json, None
        write_outputs(args, result, v0, v1)
        args.viz, args.json = args_viz, args_json
    return 0 if result.success else 1


def register(sub) -> None:
    from twoview.cli import EXIT_STATUS_HELP

    p = sub.add_parser(
        "refine",
        help="refine cam1_from_cam0 by aligning single-view Gaussian mixtures (needs depth)",
        description="Build a metric 3D Gaussian mixture from each RGB-D view and align them, starting "
        "from --init (a `twoview estimate --json` file or a bare 4x4 list), 'identity', or, when "
        "omitted, the pipeline's front end. " + EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_view_args(p)
    add_pipeline_args(p, refine_choices=("gmm",))
    g = p.add_argument_group("refinement")
    g.add_argument("--init", metavar="POSE.json", help="initial pose file, or 'identity' (default: run the front end)")
    g = p.add_argument_group("outputs")
    g.add_argument("--json", metavar="OUT", help="write the result as JSON (atomically; '-': standard output, "
                   "the human-readable lines then go to standard error)")
    g.add_argument("--viz", metavar="OUT.png", help="both mixtures overlaid, before and after (.png, .jpg or .jpeg)")
    g.add_argument("--html", metavar="OUT.html", help="interactive 3D view of the aligned mixtures alone")
    g.add_argument("--view", metavar="OUT.html", help="interactive 3D view: cameras, mixtures, depth clouds, matches")
    g.add_argument("--save-ply0", metavar="OUT.ply", help="mixture of image0 as a 3DGS PLY")
    g.add_argument("--save-ply1", metavar="OUT.ply", help="mixture of image1 as a 3DGS PLY")
    p.set_defaults(func=run)
