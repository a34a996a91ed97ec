"""``twoview demo``: the estimator on the Middlebury Motorcycle pair shipped with scikit-image."""

from __future__ import annotations


def run(args) -> int:
    from twoview.config import EstimatorConfig
    from twoview.demo import motorcycle
    from twoview.estimator import estimate_relative_pose
    from twoview.metrics import pose_errors

    pair = motorcycle()
    cfg = EstimatorConfig.from_dict({"matcher": {"name": args.matcher}})
    print(
        f"Middlebury 2014 'Motorcycle' (scikit-image), {pair.camera0.width}x{pair.camera0.height}, "
        f"ground truth: pure x translation of {pair.cam1_from_cam0.t[0]:+.4f} m; depth for the left view"
    )
    result = estimate_relative_pose(
        pair.image0, pair.image1, pair.camera0, pair.camera1, depth0=pair.depth0, config=cfg
    )
    print(result.summary())
    if not result.success:
        return 1
    err = pose_errors(result.cam1_from_cam0, pair.cam1_from_cam0, result.metric)
    print(
        f"error vs ground truth: rotation {err['rot_deg']:.4f} deg, translation direction "
        f"{err['trans_deg']:.4f} deg, translation {err['trans_m'] * 1000:.2f} mm"
    )
    return 0


def register(sub) -> None:
    from twoview.cli import EXIT_STATUS_HELP

    p = sub.add_parser("demo", help="run on a real stereo pair with ground truth that ships with scikit-image",
                       description="Estimate the pose of the Middlebury Motorcycle pair shipped with scikit-image "
                       "and compare it with the ground truth. " + EXIT_STATUS_HELP)
    p.add_argument("--matcher", default="sift", choices=["sift", "xfeat", "aliked", "disk"])
    p.set_defaults(func=run)
