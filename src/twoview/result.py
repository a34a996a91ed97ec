"""The result of a two-view estimate."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from twoview.geometry.pose import Pose


@dataclass
class Matches:
    """Putative correspondences between two images.

    Attributes:
        kpts0: (N, 2) pixel coordinates in image 0 (OpenCV pixel centres).
        kpts1: (N, 2) pixel coordinates in image 1.
        scores: (N,) match confidence in [0, 1] (1 where the matcher gives none).
        pixel_scale: per image, input pixels per pixel of the image the matcher saw (1 at
            full resolution, 2.5 for a 4000 px photo matched at ``resize_max=1600``): the
            keypoints' localisation error grows by it, and so do the solvers' pixel
            thresholds.
    """

    kpts0: np.ndarray
    kpts1: np.ndarray
    scores: np.ndarray
    pixel_scale: tuple[float, float] = (1.0, 1.0)

    def __post_init__(self):
        self.kpts0 = np.asarray(self.kpts0, dtype=np.float64).reshape(-1, 2)
        self.kpts1 = np.asarray(self.kpts1, dtype=np.float64).reshape(-1, 2)
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        if not (len(self.kpts0) == len(self.kpts1) == len(self.scores)):
            raise ValueError("Matches: kpts0, kpts1 and scores must have the same length")
        self.pixel_scale = tuple(float(p) for p in self.pixel_scale)
        if len(self.pixel_scale) != 2 or not all(p > 0 for p in self.pixel_scale):
            raise ValueError(f"Matches: pixel_scale must be two positive numbers, got {self.pixel_scale}")

    def __len__(self) -> int:
        return len(self.kpts0)

    def subset(self, mask: np.ndarray) -> Matches:
        return Matches(self.kpts0[mask], self.kpts1[mask], self.scores[mask], self.pixel_scale)

    def swapped(self) -> Matches:
        return Matches(self.kpts1, self.kpts0, self.scores, self.pixel_scale[::-1])

    @property
    def noise_scale(self) -> float:
        """The RMS of the two images' ``pixel_scale``: how much larger than at full
        resolution a pixel error of a match (Sampson, reprojection) is."""
        return float(np.sqrt(0.5 * (self.pixel_scale[0] ** 2 + self.pixel_scale[1] ** 2)))


#: The failure reason of a pair of identical images (every estimator reports it the same way:
#: a pose "recovered" from no motion would be a fake identity).
IDENTICAL_IMAGES = "the two images are identical: there is no camera motion to estimate"


def identical_images(image0: np.ndarray, image1: np.ndarray) -> bool:
    return image0.shape == image1.shape and bool(np.array_equal(image0, image1))


@dataclass
class PoseResult:
    """Outcome of a relative pose estimate.

    Attributes:
        success: whether a pose was found. When False, ``cam1_from_cam0`` is None and
            ``reason`` says why; never an identity stand-in.
        cam1_from_cam0: the pose, ``x1 = R @ x0 + t``.
        metric: True if ``t`` is in metres; False if it is a unit direction only.
        solver: "essential", "pnp", "rigid3d", or a refinement/regression name.
        num_matches: putative matches fed to the solver.
        num_inliers: matches consistent with the pose.
        confidence: in [0, 1]; a heuristic of inlier count and ratio (see ``confidence_from_inliers``).
        reason: empty on success; on failure one sentence.
        timings_ms: wall time per stage, milliseconds.
        matches: the putative matches (for drawing), if any.
        inliers: (num_matches,) bool mask into ``matches``.
        covariance: (6, 6) first-order covariance of the pose, or None (then
            ``info["covariance"]`` says why): perturbation ``R = Exp(w) @ R_hat``,
            ``t = t_hat + dt``, order ``(w [rad], dt [translation units])``, from the
            inlier residuals (:mod:`twoview.solvers.covariance`); rank 5 for a
            direction-only pose. :attr:`sigmas` summarises it. It counts keypoint
            noise only: a lower bound, calibrated on synthetic noise, 2.5-4x below the
            actual errors on ICL-NUIM and 5-20x on TUM RGB-D, where depth registration,
            timing and ground-truth errors dominate (benchmarks/results/core.md).
        info: solver-specific extras (e.g. recovered scale); ``info["pipeline"]`` the
            stages that ran and the configuration used.
        motion: what the matches show (:mod:`twoview.pipeline.motion`): "general",
            "pure_rotation", "planar", or "unknown" without matches.
        translation_observable: False when the translation cannot be determined from the
            inputs (a pure rotation without depth): ``t`` is then a meaningless direction.
        artifacts: what the pipeline built, kept only when asked
            (``Pipeline(...)(..., keep_artifacts=True)``): ``views`` (the two views as the
            stages saw them, e.g. registered), ``mixtures`` (the Gaussian mixtures). Never
            serialised.
    """

    success: bool
    cam1_from_cam0: Pose | None = None
    metric: bool = False
    solver: str = ""
    num_matches: int = 0
    num_inliers: int = 0
    confidence: float = 0.0
    reason: str = ""
    timings_ms: dict[str, float] = field(default_factory=dict)
    matches: Matches | None = None
    inliers: np.ndarray | None = None
    covariance: np.ndarray | None = None
    info: dict = field(default_factory=dict)
    motion: str = "unknown"
    translation_observable: bool = True
    artifacts: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        if self.success and self.cam1_from_cam0 is None:
            raise ValueError("a successful PoseResult needs a pose")
        if not self.success:
            self.cam1_from_cam0 = None
            self.covariance = None
            self.metric = False
            if not self.reason:
                self.reason = "estimation failed"

    @classmethod
    def failure(cls, reason: str, solver: str = "", **kw) -> PoseResult:
        return cls(success=False, reason=reason, solver=solver, **kw)

    @property
    def sigmas(self) -> dict[str, float] | None:
        """1-sigma (RMS) errors implied by :attr:`covariance`: ``rotation_sigma_deg``,
        ``translation_sigma`` (metres when metric, else in unit-direction units) and
        ``translation_direction_sigma_deg``; None without a covariance."""
        if self.covariance is None or self.cam1_from_cam0 is None:
            return None
        from twoview.solvers.covariance import sigmas

        return sigmas(self.covariance, self.cam1_from_cam0.t)

    def to_dict(self) -> dict:
        """JSON-ready summary; the keys the CLI's ``--json`` writes."""
        T = self.cam1_from_cam0
        return {
            "success": bool(self.success),
            "metric": bool(self.metric),
            "cam1_from_cam0": T.matrix.tolist() if T is not None else None,
            "quaternion_wxyz": T.quaternion("wxyz").tolist() if T is not None else None,
            "translation": T.t.tolist() if T is not None else None,
            "translation_units": ("metres" if self.metric else "unit direction") if T is not None else None,
            "solver": self.solver,
            "confidence": float(self.confidence),
            "num_matches": int(self.num_matches),
            "num_inliers": int(self.num_inliers),
            "reason": self.reason,
            "motion": self.motion,
            "translation_observable": bool(self.translation_observable),
            "timings_ms": {k: round(float(v), 3) for k, v in self.timings_ms.items()},
            "covariance": self.covariance.tolist() if self.covariance is not None else None,
            "sigmas": _jsonable(self.sigmas),
            "info": _jsonable(self.info),
        }

    def __repr__(self) -> str:
        """One short line (the dataclass default would print every match: 29,000 characters)."""
        if not self.success:
            return f"PoseResult(success=False, solver={self.solver!r}, reason={self.reason!r})"
        T = self.cam1_from_cam0
        t = ", ".join(f"{v:.4f}" for v in T.t)
        return (f"PoseResult(success=True, solver={self.solver!r}, rotation={np.degrees(np.linalg.norm(T.rotvec())):.3f} deg, "
                f"t=[{t}] {'m' if self.metric else '(direction)'}, metric={self.metric}, confidence={self.confidence:.2f}, "
                f"inliers={self.num_inliers}/{self.num_matches})")

    def summary(self) -> str:
        """Human-readable multi-line summary."""
        if not self.success:
            return f"FAILED ({self.solver or 'estimate'}): {self.reason}"
        T = self.cam1_from_cam0
        ang = np.degrees(np.linalg.norm(T.rotvec()))
        unit = "m" if self.metric else "(direction only, no scale)"
        lines = [
            f"cam1_from_cam0 via {self.solver}: rotation {ang:.3f} deg, "
            f"t = [{T.t[0]:+.4f}, {T.t[1]:+.4f}, {T.t[2]:+.4f}] {unit}",
            f"metric: {'yes' if self.metric else 'no'}; inliers {self.num_inliers}/{self.num_matches}; "
            f"confidence {self.confidence:.2f}" + (f"; motion: {self.motion}" if self.motion != "unknown" else ""),
            "time: " + ", ".join(f"{k} {v:.1f} ms" for k, v in self.timings_ms.items()),
        ]
        if not self.translation_observable:
            lines.insert(1, "translation: not observable (a pure rotation and no depth: the images carry no parallax); "
                            "t is an arbitrary direction")
        sg = self.sigmas
        if sg is not None:
            t_sigma = (f"translation {sg['translation_sigma'] * 1000:.1f} mm" if self.metric
                       else f"translation direction {sg['translation_direction_sigma_deg']:.3f} deg")
            how = ("1 sigma, scaled to real errors" if self.info.get("covariance_scale")
                   else "from the residuals alone: a lower bound")
            lines.insert(2, f"uncertainty ({how}): rotation {sg['rotation_sigma_deg']:.3f} deg, {t_sigma}")
        return "\n".join(lines)


def confidence_from_inliers(num_inliers: int, num_matches: int, min_inliers: int) -> float:
    """Heuristic confidence in [0, 1].

    Grows with the number of inliers beyond the minimum (saturating around 100) and
    with the inlier ratio (saturating at 50%): both are what makes a RANSAC pose
    trustworthy in practice.
    """
    if num_matches <= 0 or num_inliers < min_inliers:
        return 0.0
    count_term = 1.0 - np.exp(-(num_inliers - min_inliers + 1) / 40.0)
    ratio_term = min(1.0, (num_inliers / num_matches) / 0.5)
    return float(np.clip(count_term * (0.5 + 0.5 * ratio_term), 0.0, 1.0))


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, Pose):
        return obj.matrix.tolist()
    return obj
