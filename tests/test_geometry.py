import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from twoview.errors import InputError
from twoview.geometry import Camera, Pose
from twoview.geometry.rotation import (
    quaternion_to_rotation,
    rotation_angle_deg,
    rotation_to_quaternion,
    so3_exp,
    so3_log,
)

finite = st.floats(-3.0, 3.0, allow_nan=False, allow_infinity=False)
vec3 = arrays(np.float64, 3, elements=finite)
rotvec = arrays(np.float64, 3, elements=st.floats(-1.0, 1.0)).map(lambda v: v * 3.0 / max(1.0, np.linalg.norm(v)))


@given(rotvec)
def test_exp_log_roundtrip(w):
    R = so3_exp(w)
    assert np.allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.isclose(np.linalg.det(R), 1.0)
    assert np.allclose(so3_exp(so3_log(R)), R, atol=1e-9)
    assert np.isclose(rotation_angle_deg(R), np.degrees(np.linalg.norm(w)), atol=1e-6)


@given(rotvec, st.sampled_from(["wxyz", "xyzw"]))
def test_quaternion_roundtrip(w, order):
    R = so3_exp(w)
    q = rotation_to_quaternion(R, order)
    assert np.isclose(np.linalg.norm(q), 1.0)
    assert np.allclose(quaternion_to_rotation(q, order), R, atol=1e-10)


def test_quaternion_orders_differ_by_roll():
    R = so3_exp([0.1, -0.2, 0.3])
    assert np.allclose(np.roll(rotation_to_quaternion(R, "wxyz"), -1), rotation_to_quaternion(R, "xyzw"))
    with pytest.raises(ValueError):
        rotation_to_quaternion(R, "zyxw")


@settings(max_examples=50)
@given(rotvec, vec3, rotvec, vec3, arrays(np.float64, (5, 3), elements=finite))
def test_pose_algebra(w1, t1, w2, t2, X):
    b_from_a = Pose(so3_exp(w1), t1)
    c_from_b = Pose(so3_exp(w2), t2)
    c_from_a = c_from_b @ b_from_a
    assert np.allclose(c_from_a.apply(X), c_from_b.apply(b_from_a.apply(X)), atol=1e-9)
    assert (b_from_a @ b_from_a.inverse()).allclose(Pose.identity(), atol=1e-9)
    assert np.allclose(b_from_a.inverse().apply(b_from_a.apply(X)), X, atol=1e-9)
    assert np.allclose(Pose.from_matrix(b_from_a.matrix).matrix, b_from_a.matrix, atol=1e-12)
    q = b_from_a.quaternion("xyzw")
    assert Pose.from_quaternion(q, b_from_a.t, "xyzw").allclose(b_from_a, atol=1e-10)


def test_pose_rejects_bad_input():
    with pytest.raises(ValueError, match="rotation"):
        Pose(np.diag([1.0, 1.0, -1.0]), np.zeros(3))
    with pytest.raises(ValueError, match="shape"):
        Pose(np.eye(3), np.zeros(4))
    with pytest.raises(ValueError, match="non-finite"):
        Pose(np.eye(3), [np.nan, 0, 0])


@given(rotvec, vec3, arrays(np.float64, (3, 3), elements=st.floats(-1e-6, 1e-6)))
def test_pose_from_matrix_cleans_rounding_but_refuses_non_rotations(w, t, noise):
    """Rotations stored to a few digits are re-orthonormalised to the nearest rotation; a
    scaled or mirrored block, a projective last row or NaN is refused (it used to be
    projected silently onto some rotation)."""
    R = so3_exp(w)
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R + noise, t
    P = Pose.from_matrix(T)
    assert np.abs(P.R - R).max() < 1e-5 and np.allclose(P.t, t)
    assert Pose.from_matrix(T[:3]).allclose(P)
    for bad, needle in ((np.diag([2.0, 2.0, 2.0, 1.0]), "not a rotation"), (np.diag([1.0, 1.0, -1.0, 1.0]), "not a rotation"),
                        (np.r_[T[:3], [[0.0, 0.0, 1.0, 1.0]]], "last row"), (np.where(np.eye(4) > 0, np.nan, T), "non-finite")):
        with pytest.raises(ValueError, match=needle):
            Pose.from_matrix(bad)


def test_camera_project_unproject():
    cam = Camera(500, 510, 319.5, 239.5, 640, 480)
    uv = np.array([[0.0, 0.0], [639, 479], [100.25, 200.75]])
    z = np.array([1.0, 2.5, 7.0])
    assert np.allclose(cam.project(cam.unproject(uv, z)), uv)
    small = cam.scaled(0.5)
    assert small.size == (320, 240)
    # pixel-edge convention: the image centre stays the image centre
    assert np.isclose(small.cx, (320 - 1) / 2) and np.isclose(small.cy, (240 - 1) / 2)


def test_camera_bad_input():
    with pytest.raises(InputError, match="3x3"):
        Camera.from_K(np.eye(2), 10, 10)
    with pytest.raises(InputError, match="positive"):
        Camera.from_K(np.diag([-1.0, 1.0, 1.0]), 10, 10)
    with pytest.raises(InputError, match="skew"):
        Camera.from_K(np.array([[1.0, 0.5, 1], [0, 1, 1], [0, 0, 1]]), 10, 10)
    with pytest.raises(InputError):
        Camera.from_params([500, 1], 10, 10)


def test_camera_guess_warns(tmp_path):
    import cv2

    path = tmp_path / "a.png"
    cv2.imwrite(str(path), np.zeros((48, 64, 3), np.uint8))
    with pytest.warns(UserWarning, match="field of view"):
        cam = Camera.from_exif_or_guess(path, 64, 48)
    assert cam.source == "fov-guess" and cam.fx > 0


def test_estimator_guesses_fov_with_a_warning_for_arrays(rng):
    import twoview

    a = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    with pytest.warns(UserWarning, match="camera0: no intrinsics.*65 deg"):
        twoview.estimate_relative_pose(a, a[:, ::-1].copy(), camera1=[150, 79.5, 59.5])


def test_camera_from_exif_35mm_focal(tmp_path):
    from PIL import Image

    im = Image.new("RGB", (400, 300))
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 26  # FocalLengthIn35mmFilm
    im.save(tmp_path / "e.jpg", exif=exif)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # EXIF found: no guess warning
        cam = Camera.from_exif_or_guess(tmp_path / "e.jpg", 400, 300)
    assert cam.source == "exif"
    assert np.isclose(cam.fx, 26 / 36 * 400) and cam.fx == cam.fy
    assert (cam.cx, cam.cy) == (199.5, 149.5)


def test_undistort_points_inverts_distortion():
    import cv2

    cam = Camera(517.3, 516.5, 318.6, 255.3, 640, 480, dist=(0.2624, -0.9531, -0.0054, 0.0026, 1.1633))
    rng = np.random.default_rng(0)
    ideal = np.stack([rng.uniform(20, 620, 50), rng.uniform(20, 460, 50)], 1)
    rays = np.c_[cam.bearings(ideal), np.ones(50)]
    distorted, _ = cv2.projectPoints(rays, np.zeros(3), np.zeros(3), cam.K, np.array(cam.dist))
    assert np.allclose(cam.undistort_points(distorted.reshape(-1, 2)), ideal, atol=1e-2)
    assert cam.pinhole.dist is None
    # depth remap keeps values (nearest) and marks pixels with no source as NaN
    d = cam.undistort_depth(np.full((480, 640), 2.0))
    assert np.nanmax(np.abs(d - 2.0)) == 0.0
    # ... and takes each pinhole pixel's value from the nearest pixel of its distorted position
    raw = rng.random((480, 640))
    px = np.round(ideal)
    rays = np.c_[cam.bearings(px), np.ones(50)]
    src = np.round(cv2.projectPoints(rays, np.zeros(3), np.zeros(3), cam.K, np.array(cam.dist))[0].reshape(-1, 2))
    und = cam.undistort_depth(raw)
    assert np.mean(und[px[:, 1].astype(int), px[:, 0].astype(int)] == raw[src[:, 1].astype(int), src[:, 0].astype(int)]) > 0.9


def test_zero_distortion_is_none():
    assert Camera(1, 1, 0, 0, 2, 2, dist=(0, 0, 0, 0)).dist is None
    with pytest.raises(InputError, match="dist"):
        Camera(1, 1, 0, 0, 2, 2, dist=(1, 2))
