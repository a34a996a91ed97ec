"""The one configuration of a pipeline: depth -> front end -> refinement -> recovery -> confidence.

Every option of every stage lives in this tree; the Python API, every CLI command and
every bench method fill it, and the pipeline writes it, as used, into each result
(``result.info["pipeline"]["config"]``). Nothing rewrites it in flight: choices the
inputs decide (which solver, whether the refinement runs) are recorded as decisions in
``result.info["pipeline"]["stages"]``, not as changed options.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field

from twoview.config import MatcherConfig, MatcherName, SolverConfig, StrictConfig
from twoview.depth.estimators import DepthModelConfig
from twoview.depth.registration import RegistrationConfig
from twoview.errors import ConfigError
from twoview.gmm.config import GMMConfig, preset_config

FrontEndName = typing.Literal["match", "regress"]
RefinerName = typing.Literal["auto", "none", "gmm"]
GicpMode = typing.Literal["auto", "always", "never"]
PolishVetoMode = typing.Literal["auto", "always", "never"]


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


@dataclass
class DepthConfig(StrictConfig):
    """Where depth comes from, and how it is prepared.

    Attributes:
        model: photos only: a monocular metric depth network predicts the depth of views
            given without any (its maps are "monocular" depth); None: no prediction.
        register: estimate, per view, where sensor depth lies on its colour image and
            resample it there when the view's own contours say so clearly
            (:mod:`twoview.depth.registration`): unregistered RGB-D streams and colour /
            depth taken at slightly different times.
        registration: options of that estimate.
    """

    model: DepthModelConfig | None = None
    register: bool = True
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)


@dataclass
class CascadeConfig(StrictConfig):
    """More matchers, run only when the first one's pose is weak or unreliable.

    Attributes:
        fallback: the second matcher (None, or the first matcher itself: no cascade). SIFT by
            default: after XFeat it rescues motion-blurred and repetitive pairs (TUM fr1_rpy:
            success 77 -> 87 %), and costs only where XFeat's pose is weak.
        min_inliers: a first pose with fewer inliers than this is weak.
        min_inlier_ratio: ... or with a lower inlier ratio.
        rescue: the strongest (and slowest) matcher, run, with sensor depth in both views,
            when the pose after the fallback is still unreliable: no pose, or a pose the
            3D-3D solver could not give (too few matches agree in 3D: the PnP or essential
            matrix fallback). Its pose replaces the other when its solver measures at least
            as much (3D-3D over PnP over a depth-scaled essential matrix; then inliers).
            Not on images alone, where LightGlue also pairs unrelated views. ALIKED +
            LightGlue by default (seconds per pair on a CPU, where it runs): on TUM
            fr3_cabinet it runs on 39 of 110 pairs and its pose is kept on 27; after the
            mixtures AUC@5 46.0 -> 51.6 and P(5 cm, 2 deg) 67.3 -> 73.6 %
            (``benchmarks/results/real_rgbd.md``). None, or a matcher already run: no rescue.
            Skipped, with a note, where the matcher is not installed.
        photos_as_taken: where the depth stage moved a view's colour onto its depth (two
            cameras) and the pose is not one both depth maps confirm, run the cascade once
            more on the photos as taken (keypoints carried onto the depth grid) and keep what
            follows only if the depth confirms it (``Pipeline._try_the_photos``; the simulated
            Kinect at 150-200 frames: P(5 cm, 2 deg) 82.6 -> 91.3 %). Costs a second cascade,
            only on such pairs.
    """

    fallback: MatcherName | None = "sift"
    min_inliers: int = 80
    min_inlier_ratio: float = 0.3
    rescue: MatcherName | None = "aliked"
    photos_as_taken: bool = True

    def validate(self):
        _check(self.min_inliers >= 5, f"cascade.min_inliers must be >= 5, got {self.min_inliers}")
        _check(0 <= self.min_inlier_ratio <= 1, f"cascade.min_inlier_ratio must be in [0, 1], got {self.min_inlier_ratio}")


@dataclass
class RegressorRunConfig(StrictConfig):
    """The pose regressor as a front end (``front_end="regress"``) or a recovery hypothesis.

    Attributes:
        checkpoint: a ``twoview train`` model.pt or a Reloc3r checkpoint; None: the shipped model.
        translation: "regressed" (the network's direction, its length from depth) or "depth"
            (the translation aligning the depth points given the regressed rotation); None: the
            checkpoint's choice (:data:`twoview.regress.infer.TRANSLATION_MODES`).
        rigid_from_matches: with both depth maps, the pose is the rigid motion of the
            network's own descriptor cell matches where enough of them agree (see
            :class:`twoview.regress.infer.PoseRegressor`); False: the regressed pose.
    """

    checkpoint: str | None = None
    translation: str | None = None
    rigid_from_matches: bool = True

    def __post_init__(self):
        _check(self.translation in (None, "regressed", "depth"),
               f"regressor.translation must be 'regressed', 'depth' or null, got {self.translation!r}")


@dataclass
class RefineConfig(StrictConfig):
    """The refinement stage.

    Attributes:
        method: "auto" refines with Gaussian mixtures when both views have depth and the
            front end's pose is metric; "gmm" asks for it (an error without both depths);
            "none" keeps the front end's pose.
        gmm: mixture options for sensor depth.
        gmm_monocular: mixture options for monocular depth (a relative scale between the
            two maps is estimated).
        gicp: after the mixtures, a point-level GICP between the two sensor depth maps
            (:func:`twoview.solvers.gicp.gicp`). "auto": where the depth stage found a
            view's depth map to be a second camera's (its colour image was registered onto
            the depth camera, ``reference="depth"``: raw Kinect / 7-Scenes-style streams).
            There the depth camera's pose is the reference, and GICP's nearest-neighbour
            pairs reach farther than the mixtures' kernels: on the simulated Kinect, 150-200
            frames apart, the mixtures alone find 59.2 AUC@5, with GICP after them 81.4
            (``benchmarks/results/real_rgbd.md``). On depth registered to its colour
            camera (TUM, HoloLens) GICP drifts (fr3_cabinet AUC@5 46.0 -> 19.6), so the
            mixtures' pose stands. "always", "never": regardless of the evidence.
            Not run on monocular depth.
        geometry_finish: after a GICP finish that converged, align the mixtures once more
            from GICP's pose on geometry alone (``appearance_weight`` 0). Where GICP runs the
            depth camera is the reference, and the colour, taken by another camera at
            another instant, holds the pose off it; GICP widens the basin but its own fixed
            point sits on the depth's quantisation. On the simulated Kinect with consumer
            colour (scored on the refined ICL-NUIM reference,
            ``benchmarks/refine_reference_trajectory.py``), from the XFeat pose: AUC@5
            85.5 -> 91.3 and median rotation 0.20 -> 0.064 deg at 10-120 frames (54 of 63
            poses closer, one 0.06 deg farther), 81.4 -> 86.3 and 0.33 -> 0.039 deg at
            150-200 frames (``benchmarks/results/real_rgbd.md``).
        polish_veto: whether the colour may undo the mixtures' last step, the dense polish,
            which is geometry alone (``gmm.align.polish_appearance_tolerance``). The veto is
            for depth taken apart in time from the colour the photos' pose follows (TUM's
            fast motion) and for depth whose geometry misleads (a network's, handed in as a
            sensor's). "auto": only where the depth stage could check the colour against the
            depth, i.e. a view's depth map has the occluding contours to register it by
            (``DepthRegistration.measured``); where neither has (smooth depth rendered from a
            mesh: HoloLens 2) or the views are not registered (``depth.register`` false), an
            appearance cost on colour nobody checked is no evidence, and the geometry stands.
            "always", "never": regardless. From the XFeat pose, "auto" against "always":
            HoloLens 2 (13 of its 15 vetoed pairs have too few contours in both views)
            AUC@5 61.9 -> 63.7 and median rotation 0.254 -> 0.234 deg
            (``benchmarks/results/real_rgbd.md``).
    """

    method: RefinerName = "auto"
    gmm: GMMConfig = field(default_factory=GMMConfig)
    gmm_monocular: GMMConfig = field(default_factory=lambda: preset_config("monocular"))
    gicp: GicpMode = "auto"
    geometry_finish: bool = True
    polish_veto: PolishVetoMode = "auto"


@dataclass
class RecoveryConfig(StrictConfig):
    """What the pipeline tries before giving up when the front end fails or is weak.

    Attributes:
        enabled: try registrations that need no matches (both views need depth).
        rotations_deg: rotation hypotheses (about the camera's y and x axes, degrees) tried
            from the identity, besides the identity itself.
        regressor: also try the pose regressor's pose (``regressor``'s checkpoint) as a
            hypothesis; skipped, with a note, where the regressor cannot load (no torch).
        min_confidence: a recovered pose is accepted only with at least this confidence.
    """

    enabled: bool = True
    rotations_deg: list[float] = field(default_factory=lambda: [-20.0, 20.0])
    regressor: bool = True
    min_confidence: float = 0.5

    def validate(self):
        _check(0 <= self.min_confidence <= 1, f"recovery.min_confidence must be in [0, 1], got {self.min_confidence}")


@dataclass
class ConfidenceConfig(StrictConfig):
    """What the confidence means and when a pose is a failure.

    Attributes:
        calibrated: map the stages' evidence to the probability that the pose is within
            5 deg and 10 cm of the truth (direction only: 5 deg rotation and 5 deg
            translation direction), fitted on real RGB-D data
            (:mod:`twoview.pipeline.confidence`); False keeps the stages' raw scores.
        min_confidence: a pose below this confidence is reported as a failure, with the
            pose it would have been in ``info["rejected_pose"]``.
        min_depth_agreement: with sensor depth in both views, a metric pose at which less
            than this fraction of the overlapping depth lies on the other view's surface
            (``info["depth_consistency"]["agreement"]``, :mod:`twoview.depth.consistency`)
            gets confidence 0: the two depth maps contradict it, whatever the evidence the
            model reads. 0.15 is below every right pose of eight real and simulated RGB-D
            suites (lowest 0.20, TUM fr1_rpy, whose depth is taken apart in time from the
            colour); 0 turns the check off.
        depth_confirmed_confidence: with sensor depth in both views, a metric pose the two
            depth maps confirm (:func:`twoview.pipeline.confidence.depth_confirms`: a fifth
            of each shared, under 5 % of it in the other's free space, at least 50 % on its
            surface) gets at least this confidence. All 450 confirmed refined poses of nine
            RGB-D suites were right, the 4 the model scored under 0.2 among them (0.5: a
            conservative reading of 4 in 4); 0 turns it off.
    """

    calibrated: bool = True
    min_confidence: float = 0.2
    min_depth_agreement: float = 0.15
    depth_confirmed_confidence: float = 0.5

    def validate(self):
        _check(0 <= self.min_confidence < 1, f"confidence.min_confidence must be in [0, 1), got {self.min_confidence}")
        _check(0 <= self.min_depth_agreement < 1,
               f"confidence.min_depth_agreement must be in [0, 1), got {self.min_depth_agreement}")
        _check(0 <= self.depth_confirmed_confidence <= 1,
               f"confidence.depth_confirmed_confidence must be in [0, 1], got {self.depth_confirmed_confidence}")


@dataclass
class PipelineConfig(StrictConfig):
    """Everything a :class:`~twoview.pipeline.Pipeline` needs besides the two views.

    Attributes:
        front_end: "match" (features + robust solver) or "regress" (the pose regressor,
            one forward pass, no matching).
        matcher: the (first) matcher; default XFeat + LighterGlue where installed, else SIFT.
        cascade: a stronger matcher when the first one's pose is weak.
        solver: the robust solvers.
        regressor: the pose regressor.
        depth: depth source and preparation.
        refine: refinement.
        recovery: registrations without matches when the front end fails.
        confidence: calibration and the failure threshold.
    """

    front_end: FrontEndName = "match"
    matcher: MatcherConfig = field(default_factory=MatcherConfig)
    cascade: CascadeConfig = field(default_factory=CascadeConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    regressor: RegressorRunConfig = field(default_factory=RegressorRunConfig)
    depth: DepthConfig = field(default_factory=DepthConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    recovery: RecoveryConfig = field(default_factory=RecoveryConfig)
    confidence: ConfidenceConfig = field(default_factory=ConfidenceConfig)

