"""Simulated Kinect-class RGB-D depth: what a raw, unregistered structured-light stream gives.

Used by benchmarks (``twoview bench --depth-noise kinect``) to measure methods on depth of
the kind a Kinect v1 or RealSense-class camera delivers when depth is *not* registered to
colour, simulated from a dataset's clean depth that is. Five effects, each a parameter of
:class:`SensorModel` and each seeded:

1. **Unregistered depth camera.** Depth is measured by a second (IR) camera a few
   centimetres beside the colour camera (optionally turned a little, with slightly
   different intrinsics). The clean depth is back-projected with the colour camera's K,
   moved into the IR camera and z-buffer rendered into the IR image (forward splatting
   with a depth test; one-pixel cracks of the splatting are filled only between
   neighbours on the same surface). The map returned is this IR depth on the colour
   image's pixel grid and size, *not registered*: the depth at a pixel belongs to a point
   seen about ``f * b / z`` pixels away in the colour image, more for near surfaces (and,
   with another IR focal length, farther from the image centre; see 6 for the K given). Surfaces the IR
   camera sees but the colour camera did not become holes.
2. **Projector shadows.** The depth is triangulated against an IR projector
   ``projector_baseline_m`` beside the IR camera (on the colour camera's side, the
   Kinect v1 layout: projector, colour camera, IR camera in a row); surfaces the
   projector does not light, behind a nearer edge, have no depth.
3. **Axial noise growing with depth squared**: ``sigma_z(z) = noise_a_m + noise_b_per_m
   * (z - noise_z0_m)^2`` metres (Nguyen et al. 2012, fitted on a Kinect v1 for surfaces
   below 60 deg incidence: 0.0012 + 0.0019 (z - 0.4)^2, about 4 cm at 5 m as Khoshelham &
   Elberink 2012 report), and lateral noise: each pixel takes the value of a pixel
   ``lateral_noise_px`` (standard deviation, Nguyen et al.: about 0.8 px) away.
4. **Disparity quantisation.** Structured-light depth is ``z = f * b / d`` with the
   disparity ``d`` measured in ``disparity_step_px`` steps (1/8 px on a Kinect v1:
   Konolige & Mihelich's technical description of Kinect calibration; Smisek et al. 2011),
   so the depth step grows with ``z^2``: ``dz ~ z^2 * step / (f * b)``, 3 mm at 1 m and
   about 7 cm at 5 m (Khoshelham & Elberink 2012).
5. **Holes and flying pixels at depth edges, dropouts, range.** Within ``edge_band_px`` of
   a depth discontinuity (or of a hole), a pixel is invalid with probability
   ``edge_hole_prob`` or takes a depth between the two sides ("flying pixel") with
   probability ``flying_pixel_prob``; anywhere, a fraction ``dropout_fraction`` is
   invalid; depth outside ``[min_range_m, max_range_m]`` is invalid (Kinect v1: about
   0.5-5 m, Khoshelham & Elberink 2012).

References:
    K. Khoshelham, S. O. Elberink. Accuracy and resolution of Kinect depth data for indoor
    mapping applications. Sensors 12(2), 2012.
    J. Smisek, M. Jancosek, T. Pajdla. 3D with Kinect. ICCV Workshops, 2011.
    C. V. Nguyen, S. Izadi, D. Lovell. Modeling Kinect sensor noise for improved 3D
    reconstruction and tracking. 3DIMPVT, 2012.
    K. Konolige, P. Mihelich. Technical description of Kinect calibration (ROS wiki,
    kinect_calibration/technical): IR camera-projector baseline about 7.5 cm, disparity in
    1/8 px, IR and colour cameras about 2.5 cm apart.

Three more parameters make the data look like 7-Scenes to a method, as a user of such
data meets it (preset ``kinect7``, ``twoview bench --depth-noise kinect7``):

6. **Which intrinsics the methods receive** (:attr:`SensorModel.intrinsics_given`).
   "colour": the colour camera's K, for the image and the depth map. "depth": the IR
   camera's K (:meth:`SensorModel.ir_camera`) for both, as 7-Scenes users pass its
   published ``fx = fy = 585, (cx, cy) = (320, 240)`` for the colour image too, whose true
   focal length is about 525 px: the depth back-projects correctly, the image does not.
7. **Which cameras' poses are the ground truth** (:attr:`SensorModel.ground_truth`).
   "colour": the dataset's (colour) cameras. "depth": the IR cameras at the depth
   exposures, ``ir1_from_ir0 = A1 @ colour1_from_colour0 @ inv(A0)`` with ``A_k`` view
   k's :meth:`SensorModel.ir_from_colour` (:meth:`SensorModel.relative_pose`), as 7-Scenes'
   ground truth comes from KinectFusion, a reconstruction from the depth alone.
8. **Unsynchronised exposures** (:attr:`SensorModel.exposure_jitter_deg`,
   :attr:`SensorModel.exposure_jitter_m`). A Kinect v1 streams colour and depth at about
   30 Hz each from two sensors without a common trigger: a frame's two images are up to
   half a frame time (17 ms) apart when paired by time stamp (TUM RGB-D's
   Kinect v1 frames: 8-15 ms), while a hand-held camera turns at 10-40 deg/s and moves
   at 0.2-0.5 m/s (TUM fr1 sequences). The IR camera at the depth exposure is then
   displaced from its calibrated place beside the colour camera by a small rigid motion,
   different in every frame: drawn per view from its seed, a Gaussian rotation vector of
   RMS angle ``exposure_jitter_deg`` and a Gaussian translation of RMS length
   ``exposure_jitter_m`` (about 0.2 deg and 3 mm for 10 ms RMS at 20 deg/s, 0.3 m/s). It
   moves the rendered depth and, under ``ground_truth="depth"``, the ground truth with it.

Cameras must be undistorted pinholes (``camera.dist`` None): undistort first.

Ground truth: the relative pose of the colour cameras and that of the IR cameras have the
same rotation (when the rig has none of its own) but translations differing by
``(I - R) c``, ``c`` the IR camera's position: up to 1.1 cm for 2.5 cm and 26 deg. A method
using the depth alone recovers the IR cameras' pose, so part of its translation error
against colour-camera ground truth is this offset, not the method's; ``ground_truth="depth"``
scores against the IR cameras' pose instead (and with exposure jitter, only the depth
agrees with it exactly).

References for 6-8: J. Shotton et al., Scene coordinate regression forests for camera
relocalization in RGB-D images, CVPR 2013 (7-Scenes: Kinect v1 at 640x480, ground truth by
KinectFusion; the dataset's page gives the depth camera's ``585, 585, 320, 240``); E.
Brachmann et al., On the limits of pseudo ground truth in visual camera re-localisation,
ICCV 2021, and its code (github.com/tsattler/visloc_pseudo_gt_limitations: 7-Scenes' colour
and depth are not registered; the colour camera's focal length is 525 px, the depth's 585);
J. Sturm et al., A benchmark for the evaluation of RGB-D SLAM systems, IROS 2012 (Kinect v1
colour and depth are not synchronised).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np

from twoview.config import StrictConfig
from twoview.errors import InputError
from twoview.geometry.camera import Camera

#: which camera of the sensor: the colour camera or the IR (depth) camera
SensorCamera = Literal["colour", "depth"]


@dataclass
class SensorModel(StrictConfig):
    """Parameters of the simulated Kinect-class depth sensor (defaults: a Kinect v1 at 640x480).

    Attributes:
        ir_position_m: centre of the IR (depth) camera in the colour camera's frame
            ``(x, y, z)``, metres; a Kinect v1's two cameras are about 2.5 cm apart
            along the row of lenses.
        ir_rotation_deg: rotation ``ir_from_colour`` as a rotation vector (axis times
            angle), degrees. 0 by default; published Kinect v1 calibrations have about 0.5 deg.
        ir_focal_scale: IR focal lengths = colour focal lengths times this. 1 (default):
            the depth has the colour camera's intrinsics but not its viewpoint. A raw
            Kinect v1 IR image has about 1.13x the colour focal length (588 vs 521 px in
            published calibrations): with the colour K, that also bends the geometry
            (with :attr:`intrinsics_given` "depth" the methods get the IR K: the depth is
            right, the colour image's K is not).
        ir_principal_offset_px: IR principal point minus the colour one ``(dx, dy)``, pixels.
        projector_baseline_m: distance between the IR camera and the IR projector
            (about 7.5 cm on a Kinect v1); sets the disparity of :attr:`disparity_step_px`
            and the projector shadows.
        projector_shadows: surfaces the projector does not light (behind a nearer edge,
            seen from the projector) have no depth.
        disparity_step_px: disparity quantisation step, pixels (0: no quantisation).
        noise_a_m, noise_b_per_m, noise_z0_m: axial noise standard deviation
            ``noise_a_m + noise_b_per_m * (z - noise_z0_m)^2`` metres at depth ``z``
            (Khoshelham & Elberink's ``c * z^2`` is ``a = 0, z0 = 0, b = c``).
        lateral_noise_px: standard deviation of the lateral (in-image) displacement of
            each pixel's measurement, pixels (0: none).
        edge_jump_rel: a relative depth difference above this between neighbouring
            pixels (or between a surface and what the projector hits in front of it)
            is a depth discontinuity.
        edge_band_px: half-width of the band along discontinuities and hole borders in
            which pixels may be invalid or flying, pixels.
        edge_hole_prob: probability that a pixel of that band is invalid.
        flying_pixel_prob: probability that a pixel of that band takes a depth drawn
            uniformly between the nearest and farthest depth around it.
        dropout_fraction: fraction of all pixels made invalid at random.
        min_range_m, max_range_m: depth outside this range is invalid (None: no limit).
        intrinsics_given: the intrinsics methods receive for the colour image and the
            depth map: "colour" (the dataset's camera) or "depth" (:meth:`ir_camera`).
        ground_truth: whose relative pose the methods are scored against: "colour" (the
            dataset's cameras) or "depth" (the IR cameras at the depth exposures,
            :meth:`relative_pose`).
        exposure_jitter_deg: RMS angle of the rig's turn between a view's colour and
            depth exposures (unsynchronised streams), degrees; drawn per view from its
            seed (0: simultaneous exposures).
        exposure_jitter_m: RMS length of the rig's move between the two exposures, metres.
        colour_blur_px: Gaussian defocus blur of the colour image, sigma in pixels (0:
            the dataset's image as it is; see :func:`simulate_sensor_colour`).
        colour_motion_blur_px: length of a line (motion) blur of the colour image, pixels,
            in a direction drawn per view (under 1: none).
        colour_noise: standard deviation of the colour image's noise, grey levels (0: none).
        colour_jpeg_quality: JPEG quality the colour image is re-encoded at (0: none).
    """

    ir_position_m: list[float] = field(default_factory=lambda: [0.025, 0.0, 0.0])
    ir_rotation_deg: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    ir_focal_scale: float = 1.0
    ir_principal_offset_px: list[float] = field(default_factory=lambda: [0.0, 0.0])
    projector_baseline_m: float = 0.075
    projector_shadows: bool = True
    disparity_step_px: float = 0.125
    noise_a_m: float = 0.0012
    noise_b_per_m: float = 0.0019
    noise_z0_m: float = 0.4
    lateral_noise_px: float = 0.8
    edge_jump_rel: float = 0.04
    edge_band_px: int = 2
    edge_hole_prob: float = 0.5
    flying_pixel_prob: float = 0.1
    dropout_fraction: float = 0.005
    min_range_m: float | None = 0.5
    max_range_m: float | None = 5.0
    intrinsics_given: SensorCamera = "colour"
    ground_truth: SensorCamera = "colour"
    exposure_jitter_deg: float = 0.0
    exposure_jitter_m: float = 0.0
    colour_blur_px: float = 0.0
    colour_motion_blur_px: float = 0.0
    colour_noise: float = 0.0
    colour_jpeg_quality: int = 0

    def validate(self):
        from twoview.errors import ConfigError

        def check(ok, msg):
            if not ok:
                raise ConfigError(msg)

        for name, n in (("ir_position_m", 3), ("ir_rotation_deg", 3), ("ir_principal_offset_px", 2)):
            v = getattr(self, name)
            check(len(v) == n and all(np.isfinite(float(x)) for x in v), f"{name} must be {n} finite numbers, got {v}")
        check(np.linalg.norm(self.ir_rotation_deg) <= 30, "ir_rotation_deg: a turn above 30 deg is no RGB-D sensor")
        check(0.5 <= self.ir_focal_scale <= 2, f"ir_focal_scale must be in [0.5, 2], got {self.ir_focal_scale}")
        check(self.projector_baseline_m > 0, f"projector_baseline_m must be > 0, got {self.projector_baseline_m}")
        check(self.disparity_step_px >= 0, f"disparity_step_px must be >= 0, got {self.disparity_step_px}")
        check(self.noise_a_m >= 0 and self.noise_b_per_m >= 0, "noise_a_m and noise_b_per_m must be >= 0")
        check(self.lateral_noise_px >= 0, f"lateral_noise_px must be >= 0, got {self.lateral_noise_px}")
        check(0 < self.edge_jump_rel < 1, f"edge_jump_rel must be in (0, 1), got {self.edge_jump_rel}")
        check(self.edge_band_px >= 1, f"edge_band_px must be >= 1, got {self.edge_band_px}")
        check(0 <= self.edge_hole_prob and 0 <= self.flying_pixel_prob and self.edge_hole_prob + self.flying_pixel_prob <= 1,
              "edge_hole_prob and flying_pixel_prob must be >= 0 with a sum <= 1")
        check(0 <= self.dropout_fraction < 1, f"dropout_fraction must be in [0, 1), got {self.dropout_fraction}")
        check(0 <= self.exposure_jitter_deg <= 5, f"exposure_jitter_deg must be in [0, 5], got {self.exposure_jitter_deg}")
        check(0 <= self.exposure_jitter_m <= 0.1, f"exposure_jitter_m must be in [0, 0.1], got {self.exposure_jitter_m}")
        check(0 <= self.colour_blur_px <= 10 and 0 <= self.colour_motion_blur_px <= 50 and 0 <= self.colour_noise <= 50,
              "colour_blur_px must be in [0, 10], colour_motion_blur_px in [0, 50], colour_noise in [0, 50]")
        check(self.colour_jpeg_quality == 0 or 1 <= self.colour_jpeg_quality <= 100,
              f"colour_jpeg_quality must be 0 (none) or in [1, 100], got {self.colour_jpeg_quality}")
        lo, hi = self.min_range_m, self.max_range_m
        check((lo is None or lo >= 0) and (hi is None or hi > 0) and (lo is None or hi is None or lo < hi),
              f"need 0 <= min_range_m < max_range_m, got {lo}, {hi}")

    @property
    def degrades_colour(self) -> bool:
        """Whether :func:`simulate_sensor_colour` changes the colour image."""
        return bool(self.colour_blur_px or self.colour_motion_blur_px >= 1 or self.colour_noise or self.colour_jpeg_quality)

    def noise_sigma(self, z: np.ndarray) -> np.ndarray:
        """Axial noise standard deviation (metres) at depths ``z`` (metres), any shape."""
        return self.noise_a_m + self.noise_b_per_m * (np.asarray(z, dtype=np.float64) - self.noise_z0_m) ** 2

    def ir_from_colour(self, seed: int | None = None) -> np.ndarray:
        """(4, 4) rigid transform from the colour camera's frame to the IR camera's.

        Args:
            seed: a view's seed: the IR camera at that view's depth exposure, the rig's
                calibration composed with the view's :meth:`exposure_motion`. None: the
                calibration alone.
        """
        from twoview.geometry.rotation import so3_exp

        R = so3_exp(np.radians(np.asarray(self.ir_rotation_deg, dtype=np.float64)))
        T = np.eye(4)
        T[:3, :3] = R
        T[:3, 3] = -R @ np.asarray(self.ir_position_m, dtype=np.float64)
        return T if seed is None else T @ self.exposure_motion(seed)

    def exposure_motion(self, seed: int) -> np.ndarray:
        """(4, 4) motion of the rig between a view's colour and depth exposures: the colour
        camera's frame at the depth exposure from its frame at the colour exposure.

        Drawn from ``seed`` with a generator of its own (the noise of a seed is the same
        with or without jitter): a rotation vector with independent Gaussian components
        of RMS angle :attr:`exposure_jitter_deg` and a translation of RMS length
        :attr:`exposure_jitter_m`. The identity when both are 0.
        """
        from twoview.geometry.rotation import so3_exp

        T = np.eye(4)
        if self.exposure_jitter_deg > 0 or self.exposure_jitter_m > 0:
            draw = np.random.default_rng([seed, 1]).standard_normal(6) / np.sqrt(3)
            T[:3, :3] = so3_exp(np.radians(self.exposure_jitter_deg) * draw[:3])
            T[:3, 3] = self.exposure_jitter_m * draw[3:]
        return T

    def relative_pose(self, colour1_from_colour0: np.ndarray, seed0: int, seed1: int) -> np.ndarray:
        """(4, 4) ground truth of :attr:`ground_truth`: under "colour" the colour cameras'
        ``colour1_from_colour0`` (4, 4) itself, under "depth" the IR cameras' pose at the
        depth exposures of the views seeded ``seed0`` and ``seed1``,
        ``ir_from_colour(seed1) @ colour1_from_colour0 @ inv(ir_from_colour(seed0))``."""
        T = np.asarray(colour1_from_colour0, dtype=np.float64)
        if self.ground_truth == "colour":
            return T.copy()
        return self.ir_from_colour(seed1) @ T @ np.linalg.inv(self.ir_from_colour(seed0))

    def given_camera(self, colour: Camera) -> Camera:
        """The intrinsics methods receive for a view whose colour camera is ``colour``
        (:attr:`intrinsics_given`)."""
        return colour if self.intrinsics_given == "colour" else self.ir_camera(colour)

    def ir_camera(self, colour: Camera) -> Camera:
        """The IR camera's intrinsics, on the colour image's size."""
        dx, dy = self.ir_principal_offset_px
        s = self.ir_focal_scale
        return Camera(colour.fx * s, colour.fy * s, colour.cx + dx, colour.cy + dy, colour.width, colour.height)


#: named sensor models (``twoview bench --depth-noise NAME``): changes to the defaults.
#: "kinect": a raw Kinect v1 stream, scored on the colour cameras, the colour K given.
#: "kinect7": the same sensor as 7-Scenes delivers it to a user: the IR camera's K (585 px
#: for a 525 px colour camera) given for colour and depth, the ground truth the IR cameras'
#: (a depth-only reconstruction's), colour and depth exposed about 10 ms apart (RMS) by a
#: hand-held camera (0.2 deg, 3 mm RMS).
#: "kinect7-colour": "kinect7" with the colour a consumer camera of that class records,
#: where a renderer's is clean: defocus (1 px), hand-held motion blur (9 px), noise (4 grey
#: levels) and JPEG compression (quality 40). A rough stand-in, not a calibrated model:
#: enough to weaken what the colour tells (matches, the depth registration's edges).
SENSOR_PRESETS: dict[str, dict] = {
    "kinect": {},
    "kinect7": {"intrinsics_given": "depth", "ir_focal_scale": 585.0 / 525.0, "ground_truth": "depth",
                "exposure_jitter_deg": 0.2, "exposure_jitter_m": 0.003},
}
SENSOR_PRESETS["kinect7-colour"] = {**SENSOR_PRESETS["kinect7"], "colour_blur_px": 1.0, "colour_motion_blur_px": 9.0,
                                    "colour_noise": 4.0, "colour_jpeg_quality": 40}


def motion_blur_kernel(length: float, angle_deg: float) -> np.ndarray:
    """A normalised line kernel of ``length`` pixels at ``angle_deg`` (odd size)."""
    n = max(3, int(np.ceil(length)) | 1)
    k = np.zeros((n, n), np.float32)
    c = (n - 1) / 2
    dx, dy = np.cos(np.radians(angle_deg)), np.sin(np.radians(angle_deg))
    for s in np.linspace(-length / 2, length / 2, 4 * n):
        x, y = int(round(c + s * dx)), int(round(c + s * dy))
        k[y, x] = 1.0
    return k / k.sum()


def simulate_sensor_colour(image: np.ndarray, params: SensorModel | None = None, seed: int = 0) -> np.ndarray:
    """The colour image a consumer RGB-D camera would record of a clean (rendered) one:
    defocus blur, a line blur in a direction drawn from ``seed`` (hand-held motion at
    30 Hz), Gaussian noise and JPEG re-encoding, each at the strength of ``params``
    (:attr:`SensorModel.colour_blur_px` ...; all 0: the image itself).

    Args:
        image: (H, W, 3) uint8 RGB.
        params: the sensor model.
        seed: the view's seed (the same as its depth's in the bench).

    Returns:
        (H, W, 3) uint8 RGB.
    """
    import cv2

    p = SensorModel.coerce(params, "params")
    x = np.asarray(image)
    if x.ndim != 3 or x.shape[2] != 3 or x.dtype != np.uint8:
        from twoview.errors import InputError

        raise InputError("image", f"must be (H, W, 3) uint8 RGB, got {x.shape} {x.dtype}")
    if not p.degrades_colour:
        return x
    rng = np.random.default_rng([seed, 2])  # a generator of its own: the depth's draws stay as they were
    if p.colour_blur_px > 0:
        x = cv2.GaussianBlur(x, (0, 0), p.colour_blur_px)
    angle = rng.uniform(0, 180)
    if p.colour_motion_blur_px >= 1:
        x = cv2.filter2D(x, -1, motion_blur_kernel(p.colour_motion_blur_px, angle), borderType=cv2.BORDER_REFLECT)
    if p.colour_noise > 0:
        x = np.clip(x + rng.normal(0.0, p.colour_noise, x.shape), 0, 255).astype(np.uint8)
    if p.colour_jpeg_quality:
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(x[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, p.colour_jpeg_quality])
        x = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
    return np.ascontiguousarray(x)


def sensor_preset(name: str) -> SensorModel:
    """The :class:`SensorModel` of a name of :data:`SENSOR_PRESETS`.

    Raises:
        InputError: an unknown name (naming the known ones).
    """
    if name not in SENSOR_PRESETS:
        raise InputError("sensor preset", f"unknown name {name!r}; known: {', '.join(SENSOR_PRESETS)}")
    return SensorModel.from_dict(SENSOR_PRESETS[name])


def simulate_sensor_depth(depth: np.ndarray, camera: Camera, params: SensorModel | None = None,
                          seed: int = 0) -> tuple[np.ndarray, dict]:
    """What an unregistered Kinect-class sensor would measure of the scene in ``depth``.

    Args:
        depth: (H, W) clean depth in metres registered to the colour image, NaN (or <= 0)
            invalid.
        camera: the colour camera (an undistorted pinhole of size W x H).
        params: the sensor model; defaults to :class:`SensorModel()` (a Kinect v1).
        seed: random seed; the same seed gives the same measurement (and the same
            :meth:`SensorModel.exposure_motion`).

    Returns:
        (depth (H, W) metres, NaN invalid: the IR camera's measurement on the colour image's
        grid, unregistered; info dict: ``seed``, ``ir_from_colour`` (4x4 list, the exposure
        motion included),
        ``valid_fraction``, and ``offset_px_median`` / ``offset_px_p90``: the distance in
        the colour image between a valid depth pixel and where the point it measured
        is seen, pixels; None when no pixel is valid).

    Raises:
        InputError: ``depth`` not (H, W) numeric or without a valid pixel; ``camera`` not a
        Camera, of another size than ``depth`` or with lens distortion.
    """
    p = SensorModel.coerce(params, "params")
    d = _check_inputs(depth, camera)
    H, W = d.shape
    rng = np.random.default_rng(seed)
    ir = p.ir_camera(camera)
    T = p.ir_from_colour(seed)

    # 1. the IR camera's view of the colour camera's points
    pts_colour, source = _back_project(d, camera)
    pts_ir = _transform(pts_colour, T[:3, :3], T[:3, 3])
    true_ir = _render(pts_ir, ir, source, p.edge_jump_rel)
    # 2. projector shadows: the projector lights what it sees first along its rays
    if p.projector_shadows:
        side = -1.0 if p.ir_position_m[0] >= 0 else 1.0  # the projector is on the colour camera's side
        proj_in_ir = np.array([side * p.projector_baseline_m, 0.0, 0.0])
        lit_depth = _render(pts_ir - proj_in_ir, ir, source, p.edge_jump_rel)
        true_ir[_shadowed(true_ir, ir, proj_in_ir, lit_depth, p.edge_jump_rel)] = np.nan
    rendered = true_ir
    # 3a. lateral noise: each pixel measures a point a little beside it
    if p.lateral_noise_px > 0:
        vv, uu = np.mgrid[0:H, 0:W]
        su = np.clip(np.rint(uu + p.lateral_noise_px * rng.standard_normal((H, W))), 0, W - 1).astype(np.intp)
        sv = np.clip(np.rint(vv + p.lateral_noise_px * rng.standard_normal((H, W))), 0, H - 1).astype(np.intp)
        true_ir = true_ir[sv, su]
    # 5a. edges: holes and flying pixels along discontinuities and hole borders
    out = true_ir.copy()
    if p.edge_hole_prob > 0 or p.flying_pixel_prob > 0:
        band = _edge_band(true_ir, p.edge_jump_rel, p.edge_band_px)
        draw = rng.random((H, W))
        flying = band & (draw >= p.edge_hole_prob) & (draw < p.edge_hole_prob + p.flying_pixel_prob)
        if flying.any():
            lo, hi = _local_min_max(true_ir)
            mix = rng.random(int(flying.sum()))
            out[flying] = lo[flying] + mix * (hi[flying] - lo[flying])
        out[band & (draw < p.edge_hole_prob)] = np.nan
    # 3b. axial noise, 4. disparity quantisation
    valid = np.isfinite(out)
    z = out[valid]
    z = z + p.noise_sigma(z) * rng.standard_normal(z.shape)
    if p.disparity_step_px > 0:
        fb = ir.fx * p.projector_baseline_m
        disparity = np.rint(fb / np.maximum(z, 1e-6) / p.disparity_step_px) * p.disparity_step_px
        z = np.where(disparity > 0, fb / np.maximum(disparity, 1e-12), np.nan)
    out[valid] = np.where(z > 0, z, np.nan)
    # 5b. dropouts and range limits
    if p.dropout_fraction > 0:
        out[rng.random((H, W)) < p.dropout_fraction] = np.nan
    with np.errstate(invalid="ignore"):
        if p.min_range_m is not None:
            out[out < p.min_range_m] = np.nan
        if p.max_range_m is not None:
            out[out > p.max_range_m] = np.nan

    valid = np.isfinite(out)
    offsets = _colour_offsets(np.where(valid, rendered, np.nan), ir, camera, T)
    info = {
        "seed": seed, "ir_from_colour": T.tolist(), "valid_fraction": float(valid.mean()),
        "offset_px_median": float(np.median(offsets)) if offsets.size else None,
        "offset_px_p90": float(np.percentile(offsets, 90)) if offsets.size else None,
    }
    return out, info


# --- checks --------------------------------------------------------------------------------
def _check_inputs(depth, camera) -> np.ndarray:
    d = np.asarray(depth)
    if d.ndim != 2:
        raise InputError("depth", f"must be an (H, W) array, got shape {d.shape}")
    if not np.issubdtype(d.dtype, np.number):
        raise InputError("depth", f"must be numeric, got dtype {d.dtype}")
    d = d.astype(np.float64)  # a copy: the caller's map is never changed
    with np.errstate(invalid="ignore"):
        d[~(np.isfinite(d) & (d > 0))] = np.nan
    if not np.isfinite(d).any():
        raise InputError("depth", "has no valid pixel (all NaN, zero or negative)")
    if not isinstance(camera, Camera):
        raise InputError("camera", f"must be a twoview.Camera, got {type(camera).__name__}")
    if (camera.height, camera.width) != d.shape:
        raise InputError("camera", f"is {camera.width}x{camera.height} but depth is {d.shape[1]}x{d.shape[0]}")
    if camera.dist is not None:
        raise InputError("camera", "has lens distortion; the sensor model takes undistorted pinhole cameras "
                         "(undistort the depth and use camera.pinhole)")
    return d


# --- geometry ------------------------------------------------------------------------------
def _back_project(depth: np.ndarray, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) points of the valid pixels of ``depth`` (H, W) in the camera's frame, and
    their pixels (N, 2) as (row, column)."""
    v, u = np.nonzero(np.isfinite(depth))
    z = depth[v, u]
    pts = np.stack([(u - camera.cx) / camera.fx * z, (v - camera.cy) / camera.fy * z, z], axis=1)
    return pts, np.stack([v, u], axis=1)


def _transform(pts: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``R @ x + t`` for each row of (N, 3) ``pts``, without BLAS (a threaded BLAS spins
    on (N, 3) @ (3, 3) products for longer than the arithmetic takes)."""
    x, y, z = pts[:, 0], pts[:, 1], pts[:, 2]
    return np.stack([R[i, 0] * x + R[i, 1] * y + R[i, 2] * z + t[i] for i in range(3)], axis=1)


def _project(pts: np.ndarray, camera: Camera) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel coordinates (u, v) and depth z of (N, 3) points (z > 0 assumed by the caller)."""
    z = pts[:, 2]
    return camera.fx * pts[:, 0] / z + camera.cx, camera.fy * pts[:, 1] / z + camera.cy, z


def _render(pts: np.ndarray, camera: Camera, source: np.ndarray, jump_rel: float) -> np.ndarray:
    """Z-buffer (H, W) depth of (N, 3) points seen by ``camera`` (NaN where none lands).

    Each point lands on its nearest pixel and the nearest point wins. ``source`` (N, 2)
    holds each point's pixel (row, column) in the image it was measured in: forward
    splatting leaves one-pixel cracks where a surface is stretched (and a farther surface
    may show through them), and a crack is a pixel between two opposite neighbours whose
    points were neighbours in that image and agree in depth. It takes their mean; holes
    and thin gaps of the scene itself are kept, and no surface is invented across a
    discontinuity.
    """
    H, W = camera.height, camera.width
    ahead = pts[:, 2] > 1e-6
    pts, source = pts[ahead], source[ahead]
    u, v, z = _project(pts, camera)
    iu, iv = np.rint(u), np.rint(v)
    inside = (iu >= 0) & (iu < W) & (iv >= 0) & (iv < H)
    idx = (iv[inside] * W + iu[inside]).astype(np.intp)
    z, source = z[inside], source[inside]
    # by pixel, nearest first: one integer key (depth in micrometres below 4 km) sorts
    # about 3x faster than a lexsort of the two
    key = (idx.astype(np.int64) << 32) | np.rint(np.minimum(z, 4e3) * 1e6).astype(np.int64)
    order = np.argsort(key, kind="stable")
    idx, z, source = idx[order], z[order], source[order]
    first = np.ones(idx.size, dtype=bool)
    first[1:] = idx[1:] != idx[:-1]
    zbuf = np.full(H * W, np.nan)
    zbuf[idx[first]] = z[first]
    src_v = np.full(H * W, -10, dtype=np.int32)  # far from every real pixel: never adjacent
    src_u = src_v.copy()
    src_v[idx[first]] = source[first, 0]
    src_u[idx[first]] = source[first, 1]
    return _fill_cracks(zbuf.reshape(H, W), src_v.reshape(H, W), src_u.reshape(H, W), jump_rel)


def _fill_cracks(d: np.ndarray, src_v: np.ndarray, src_u: np.ndarray, jump_rel: float) -> np.ndarray:
    """``d`` (H, W) with its cracks filled (see :func:`_render`); ``src_v``, ``src_u``
    (H, W) are the source pixel (row, column) of each pixel's point."""
    H, W = d.shape
    pad = np.pad(d, 1, constant_values=np.nan)
    vpad = np.pad(src_v, 1, constant_values=-10)
    upad = np.pad(src_u, 1, constant_values=-10)
    out = d.copy()
    todo = np.ones_like(d, dtype=bool)
    # opposite neighbour pairs: horizontal, vertical, the two diagonals
    for (ay, ax), (by, bx) in (((0, -1), (0, 1)), ((-1, 0), (1, 0)), ((-1, -1), (1, 1)), ((-1, 1), (1, -1))):
        a = pad[1 + ay:1 + ay + H, 1 + ax:1 + ax + W]
        b = pad[1 + by:1 + by + H, 1 + bx:1 + bx + W]
        adjacent = ((np.abs(vpad[1 + ay:1 + ay + H, 1 + ax:1 + ax + W] - vpad[1 + by:1 + by + H, 1 + bx:1 + bx + W]) <= 1)
                    & (np.abs(upad[1 + ay:1 + ay + H, 1 + ax:1 + ax + W] - upad[1 + by:1 + by + H, 1 + bx:1 + bx + W]) <= 1))
        with np.errstate(invalid="ignore"):
            agree = adjacent & (np.abs(a - b) <= jump_rel * np.fmin(a, b))
            crack = todo & agree & (np.isnan(d) | (d > (1 + jump_rel) * np.fmax(a, b)))
        out[crack] = 0.5 * (a[crack] + b[crack])
        todo &= ~crack
    return out


def _shadowed(depth: np.ndarray, camera: Camera, projector: np.ndarray, lit_depth: np.ndarray,
              jump_rel: float) -> np.ndarray:
    """(H, W) mask of the valid pixels of ``depth`` whose point lies behind what the projector
    (at ``projector`` in the camera's frame, same axes and intrinsics) hits first."""
    H, W = depth.shape
    v, u = np.nonzero(np.isfinite(depth))
    pts = _back_project(depth, camera)[0] - projector
    pu, pv, pz = _project(pts, camera)
    iu, iv = np.rint(pu).astype(np.intp), np.rint(pv).astype(np.intp)
    inside = (iu >= 0) & (iu < W) & (iv >= 0) & (iv < H)
    first = np.full(pz.shape, np.nan)
    first[inside] = lit_depth[iv[inside], iu[inside]]
    with np.errstate(invalid="ignore"):
        behind = pz > (1 + jump_rel) * first  # NaN (nothing rendered there) counts as lit
    mask = np.zeros((H, W), dtype=bool)
    mask[v[behind], u[behind]] = True
    return mask


def _colour_offsets(ir_depth: np.ndarray, ir: Camera, colour: Camera, ir_from_colour: np.ndarray) -> np.ndarray:
    """(N,) distances, colour pixels, between each valid pixel of ``ir_depth`` and where
    the point it measured is seen by the colour camera."""
    v, u = np.nonzero(np.isfinite(ir_depth))
    if u.size == 0:
        return np.zeros(0)
    pts_ir = _back_project(ir_depth, ir)[0]
    R, t = ir_from_colour[:3, :3], ir_from_colour[:3, 3]
    pts = _transform(pts_ir, R.T, -R.T @ t)
    pu, pv, _ = _project(pts, colour)
    return np.hypot(pu - u, pv - v)


# --- edges ---------------------------------------------------------------------------------
def _edge_band(d: np.ndarray, jump_rel: float, band_px: int) -> np.ndarray:
    """(H, W) mask of valid pixels within ``band_px`` of a depth discontinuity or a hole."""
    valid = np.isfinite(d)
    edge = np.zeros_like(valid)
    for axis in (0, 1):
        a = d[:-1] if axis == 0 else d[:, :-1]
        b = d[1:] if axis == 0 else d[:, 1:]
        with np.errstate(invalid="ignore"):
            jump = np.abs(a - b) > jump_rel * np.fmin(a, b)
        jump |= np.isfinite(a) != np.isfinite(b)  # a hole's border
        if axis == 0:
            edge[:-1] |= jump
            edge[1:] |= jump
        else:
            edge[:, :-1] |= jump
            edge[:, 1:] |= jump
    if band_px > 1:
        k = 2 * (band_px - 1) + 1
        edge = cv2.dilate(edge.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool)
    return edge & valid


def _local_min_max(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest and farthest valid depth in each pixel's 3x3 neighbourhood (H, W) each."""
    kernel = np.ones((3, 3), np.uint8)
    lo = cv2.erode(np.where(np.isfinite(d), d, np.inf), kernel, borderType=cv2.BORDER_REPLICATE)
    hi = cv2.dilate(np.where(np.isfinite(d), d, -np.inf), kernel, borderType=cv2.BORDER_REPLICATE)
    return lo, hi
