"""The interactive 3D view (twoview.view3d): scene geometry on synthetic scenes with known
poses, bad input, the CLI's --view, and the page itself in a real headless Chromium
(Debian's chromium driven by playwright; skipped with a reason when either is missing,
scripts/test.sh installs both)."""

from __future__ import annotations

import base64
import json
import re
import shutil

import numpy as np
import pytest

from twoview import view3d
from twoview.errors import InputError
from twoview.geometry import Camera, Pose
from twoview.geometry.rotation import so3_exp
from twoview.result import Matches, PoseResult

POSE = Pose(so3_exp(np.radians([4.0, -12.0, 3.0])), np.array([0.30, -0.05, 0.10]))  # cam1_from_cam0
CAM0 = Camera(180.0, 180.0, 99.5, 74.5, 200, 150)
CAM1 = Camera(150.0, 155.0, 80.0, 61.0, 160, 120)  # another camera: mixing the two up shows
PLANE = (np.array([0.1, -0.2, -1.0]) / np.linalg.norm([0.1, -0.2, -1.0]), -3.0)  # n . X0 = d, ~3 m ahead


def plane_depth(cam: Camera, cam_from_0: Pose, plane=PLANE) -> np.ndarray:
    """Exact z-depth (H, W) of the plane ``n . X0 = d`` seen by ``cam`` at ``cam_from_0``."""
    n, d = plane
    vv, uu = np.mgrid[0:cam.height, 0:cam.width].astype(np.float64)
    b = np.stack([(uu - cam.cx) / cam.fx, (vv - cam.cy) / cam.fy, np.ones_like(uu)], -1)
    rn = cam_from_0.R @ n
    z = (d + rn @ cam_from_0.t) / (b @ rn)
    return np.where(z > 0, z, np.nan)


def coord_image(cam: Camera) -> np.ndarray:
    """RGB whose red and green are the pixel's column and row: a point's colour names its pixel."""
    vv, uu = np.mgrid[0:cam.height, 0:cam.width]
    return np.stack([uu, vv, np.full_like(uu, 77)], -1).astype(np.uint8)


def plane_matches(n=40):
    """Integer pixels of image 0 on the plane and where camera 1 sees them: (kpts0, kpts1, X0)."""
    rng = np.random.default_rng(1)
    d0 = plane_depth(CAM0, Pose.identity())
    uv = np.stack([rng.integers(20, 180, 4 * n), rng.integers(20, 130, 4 * n)], 1).astype(np.float64)
    X0 = CAM0.unproject(uv, d0[uv[:, 1].astype(int), uv[:, 0].astype(int)])
    uv1 = CAM1.project(POSE.apply(X0))
    ok = CAM1.in_image(uv1, margin=3)
    return uv[ok][:n], uv1[ok][:n], X0[ok][:n]


def synthetic_inputs():
    return (coord_image(CAM0), coord_image(CAM1), CAM0, CAM1,
            plane_depth(CAM0, Pose.identity()), plane_depth(CAM1, POSE))


def metric_result(matches=None, inliers=None) -> PoseResult:
    return PoseResult(success=True, cam1_from_cam0=POSE, metric=True, solver="rigid3d", num_matches=40,
                      num_inliers=30, confidence=0.8, matches=matches, inliers=inliers)


# --- scene geometry ------------------------------------------------------------------------
def test_camera1_centre_and_axes_follow_the_pose():
    im0, im1, c0, c1, _, _ = synthetic_inputs()
    gt = Pose(so3_exp(np.radians([3.0, -10.0, 2.0])), np.array([0.28, -0.04, 0.12]))
    scene = view3d.build_scene(im0, im1, c0, c1, None, None, metric_result(), gt=gt.matrix)
    for name, pose in (("camera1", POSE), ("gt_camera1", gt)):
        lines = scene.layer(name).lines
        centre = -pose.R.T @ pose.t
        np.testing.assert_allclose(lines[0, 0], centre, atol=1e-12)  # the frustum's apex
        for k in range(3):  # the last three segments: camera axes x, y, z, from the centre
            seg = lines[-3 + k]
            np.testing.assert_allclose(seg[0], centre, atol=1e-12)
            np.testing.assert_allclose((seg[1] - seg[0]) / np.linalg.norm(seg[1] - seg[0]), pose.R[k], atol=1e-12)
    cam0 = scene.layer("camera0").lines
    np.testing.assert_allclose(cam0[-3:, 1] / np.linalg.norm(cam0[-3:, 1], axis=1)[:, None], np.eye(3), atol=1e-12)
    # the image plane lies ahead of camera 1 along its z axis
    corners = scene.layer("camera1").image_corners
    assert np.all((corners - (-POSE.R.T @ POSE.t)) @ POSE.R[2] > 0)


def test_clouds_moved_into_frame0_agree():
    """Both clouds of one plane land on that plane in camera 0's frame, each point with
    the colour of the pixel it came from."""
    im0, im1, c0, c1, d0, d1 = synthetic_inputs()
    scene = view3d.build_scene(im0, im1, c0, c1, d0, d1, metric_result(), max_points=4000)
    n, d = PLANE
    for v, (cam, cam_from_0) in enumerate(((c0, Pose.identity()), (c1, POSE))):
        layer = scene.layer(f"cloud{v}")
        assert layer.count == len(layer.points) == len(layer.point_colors)
        assert 1600 <= layer.count <= 2000  # the budget shared by the two clouds, and used
        np.testing.assert_allclose(layer.points @ n, d, atol=1e-9)
        # the colour names the pixel: unprojecting it with its depth gives the point again
        uv = layer.point_colors[:, :2].astype(np.float64)
        depth = plane_depth(cam, cam_from_0)[uv[:, 1].astype(int), uv[:, 0].astype(int)]
        np.testing.assert_allclose(cam_from_0.inverse().apply(cam.unproject(uv, depth)), layer.points, atol=1e-9)
    # without the pose, cloud 1 would sit elsewhere: the test has teeth
    assert np.abs(POSE.apply(scene.layer("cloud1").points) @ n - d).max() > 0.05


def test_match_ends_meet_at_the_scene_points():
    k0, k1, X0 = plane_matches()
    z0, z1 = X0[:, 2], POSE.apply(X0)[:, 2]
    for depths in ((z0, z1), (z0, None), (None, z1), (None, None)):  # known depth or triangulated
        e0, e1 = view3d.match_endpoints(k0, k1, CAM0, CAM1, POSE, *depths)
        np.testing.assert_allclose(e0, X0, atol=1e-8)
        np.testing.assert_allclose(e1, X0, atol=1e-8)
    # parallel rays (pure rotation, no baseline) end at the fallback depth, in front
    e0, e1 = view3d.match_endpoints(k0, k0, CAM0, CAM0, Pose.identity(), fallback_depth=2.5)
    np.testing.assert_allclose(e0[:, 2], np.full(len(k0), 2.5))
    np.testing.assert_allclose(e1[:, 2], np.full(len(k0), 2.5))


def test_match_layer_draws_the_inliers():
    im0, im1, c0, c1, d0, d1 = synthetic_inputs()
    k0, k1, X0 = plane_matches()
    inl = np.arange(len(k0)) % 4 != 0
    res = metric_result(Matches(k0, k1, np.ones(len(k0))), inl)
    scene = view3d.build_scene(im0, im1, c0, c1, d0, d1, res)
    layer = scene.layer("matches")
    assert layer.count == inl.sum() and len(layer.lines) == 3 * inl.sum()
    # rays leave camera 0 and camera 1, ends at the matched points (depth at the nearest pixel)
    np.testing.assert_allclose(layer.lines[: inl.sum(), 0], np.zeros((inl.sum(), 3)))
    centre1 = np.broadcast_to(-POSE.R.T @ POSE.t, (inl.sum(), 3))
    np.testing.assert_allclose(layer.lines[inl.sum(): 2 * inl.sum(), 0], centre1, atol=1e-12)
    assert np.abs(layer.points[: inl.sum()] - X0[inl]).max() < 0.02
    capped = view3d.build_scene(im0, im1, c0, c1, d0, d1, res, max_matches=5).layer("matches")
    assert capped.count == 5


def test_direction_only_pose_is_drawn_at_unit_baseline():
    im0, im1, c0, c1, d0, d1 = synthetic_inputs()
    res = PoseResult(success=True, cam1_from_cam0=Pose(POSE.R, POSE.t / np.linalg.norm(POSE.t)), metric=False,
                     solver="essential")
    scene = view3d.build_scene(im0, im1, c0, c1, d0, d1, res)
    np.testing.assert_allclose(np.linalg.norm(scene.layer("camera1").lines[0, 0]), 1.0)
    assert not scene.layer("cloud1").visible and "not to scale" in scene.layer("cloud1").label
    assert any("no metric scale" in text for _, text in scene.info)


def test_failed_result_draws_camera0_only():
    im0, im1, c0, c1, d0, d1 = synthetic_inputs()
    res = PoseResult.failure("too few matches (3)", solver="essential")
    scene = view3d.build_scene(im0, im1, c0, c1, d0, d1, res)
    assert set(scene.counts) == {"camera0", "cloud0"}
    assert scene.info[0] == ("pose", "no pose (essential): too few matches (3)")


def test_mixtures_are_moved_into_frame0():
    from twoview.gmm.mixture import GaussianMixture

    rng = np.random.default_rng(2)
    A = rng.normal(size=(30, 3, 3)) * 0.05
    covs = A @ A.transpose(0, 2, 1) + 1e-4 * np.eye(3)
    mix = GaussianMixture(rng.normal(size=(30, 3)) + [0, 0, 3], covs, np.ones(30), rng.uniform(size=(30, 3)))
    im0, im1, c0, c1, d0, d1 = synthetic_inputs()
    scene = view3d.build_scene(im0, im1, c0, c1, d0, d1, metric_result(), mixtures=(mix, mix))
    m0, m1 = scene.layer("mixture0"), scene.layer("mixture1")
    np.testing.assert_allclose(m0.points, mix.means)
    np.testing.assert_allclose(m1.points, POSE.inverse().apply(mix.means), atol=1e-12)
    # axes at one standard deviation, rotated with the Gaussian
    lengths = np.linalg.norm(m1.lines[:, 1] - m1.lines[:, 0], axis=1).reshape(3, 30).T / 2
    np.testing.assert_allclose(np.sort(lengths, 1), np.sqrt(np.linalg.eigvalsh(covs)), rtol=1e-9)
    assert not scene.layer("cloud0").visible and m0.visible  # the mixtures are what a refine view shows


# --- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize("change, what", [
    (dict(image0=np.zeros((150, 200, 4), np.uint8)), "image0"),
    (dict(image0=np.zeros((150, 200, 3))), "image0"),
    (dict(image1=np.zeros((150, 200, 3), np.uint8)), "image1"),  # camera 1 is 160x120
    (dict(depth1=np.ones((150, 200))), "depth1"),
    (dict(depth0=np.ones((150, 200, 2))), "depth0"),
    (dict(camera0=CAM0.K), "camera0"),
    (dict(result={"success": True}), "result"),
    (dict(gt=np.diag([1.0, 1.0, -1.0, 1.0])), "gt"),
    (dict(mixtures="mix"), "mixtures"),
    (dict(max_points=-1), "max_points"),
])
def test_bad_input_names_the_argument(change, what):
    im0, im1, c0, c1, d0, d1 = synthetic_inputs()
    kw = dict(image0=im0, image1=im1, camera0=c0, camera1=c1, depth0=d0, depth1=d1, result=metric_result())
    kw.update(change)
    with pytest.raises(InputError) as e:
        view3d.build_scene(**kw)
    assert e.value.what == what


def test_write_html_refuses_unwritable_paths(tmp_path):
    scene = view3d.build_scene(*synthetic_inputs(), metric_result())
    with pytest.raises(InputError, match="--view: is a folder"):
        view3d.write_html(tmp_path, scene, name="--view")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError) as e:
        view3d.write_html(tmp_path / "file" / "v.html", scene)
    assert e.value.what == "path"
    with pytest.raises(InputError, match="scene"):
        view3d.write_html(tmp_path / "v.html", "not a scene")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing half-written


def page_data(path) -> dict:
    text = path.read_text(encoding="utf-8")
    return json.loads(re.search(r'<script id="tv-data" type="application/json">(.*?)</script>', text, re.S).group(1))


def test_page_is_self_contained_and_compact(tmp_path):
    im0, im1, c0, c1, d0, d1 = synthetic_inputs()
    k0, k1, _ = plane_matches()
    scene = view3d.build_scene(im0, im1, c0, c1, d0, d1, metric_result(Matches(k0, k1, np.ones(len(k0)))),
                               title="a </script> title")
    out = view3d.write_html(tmp_path / "sub" / "v.html", scene)
    text = out.read_text(encoding="utf-8")
    assert not re.search(r"https?://|<link|<script[^>]+src=|import\(", text)  # nothing fetched
    data = page_data(out)
    assert data["title"] == "a </script> title"
    for layer, js in zip(scene.layers, data["layers"]):
        assert js["count"] == layer.count
        if layer.points is not None:
            pos = np.frombuffer(base64.b64decode(js["points"]["pos"]), "<f4").reshape(-1, 3)
            np.testing.assert_allclose(pos, layer.points, rtol=1e-6, atol=1e-6)
        if layer.lines is not None:
            assert len(base64.b64decode(js["lines"]["col"])) == 2 * 3 * len(layer.lines)
        assert (js["image"] is not None) == (layer.image is not None)
    # at the default budget (150,000 points) a page stays a few MB
    big = view3d.build_scene(*(np.zeros((480, 640, 3), np.uint8),) * 2, *(Camera(500.0, 500.0, 319.5, 239.5, 640, 480),) * 2,
                             *(np.full((480, 640), 2.0),) * 2, metric_result())
    assert sum(la.count for la in big.layers if la.name.startswith("cloud")) == view3d.MAX_POINTS
    assert len(view3d.html_text(big)) < 4.5e6


def test_gmm_overlay_html_uses_the_view(tmp_path):
    from twoview.gmm.mixture import GaussianMixture
    from twoview.gmm.viz import overlay_html

    rng = np.random.default_rng(3)
    mix = GaussianMixture(rng.normal(size=(50, 3)) + [0, 0, 3], np.tile(np.eye(3) * 1e-3, (50, 1, 1)), np.ones(50),
                          rng.uniform(size=(50, 3)))
    data = page_data(overlay_html(tmp_path / "m.html", mix, mix, POSE))
    assert [la["name"] for la in data["layers"]] == ["camera0", "camera1", "mixture0", "mixture1"]
    assert data["color_by_view"]


# --- CLI --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def plane_files(tmp_path_factory):
    import cv2

    folder = tmp_path_factory.mktemp("view_cli")
    cam = Camera(180.0, 180.0, 99.5, 74.5, 200, 150)
    rng = np.random.default_rng(4)
    texture = cv2.resize(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8), (200, 150), interpolation=cv2.INTER_CUBIC)
    # camera 1 sees the same plane: warp image 0 by the plane's homography (H maps pixels 0 -> 1)
    n, d = PLANE
    pose = Pose(so3_exp(np.radians([0.0, -3.0, 0.0])), np.array([0.12, 0.0, 0.0]))
    H = cam.K @ (pose.R + np.outer(pose.t, n) / d) @ np.linalg.inv(cam.K)
    im1 = cv2.warpPerspective(texture, H, (200, 150), borderMode=cv2.BORDER_REFLECT)
    for k, (im, depth) in enumerate(((texture, plane_depth(cam, Pose.identity())), (im1, plane_depth(cam, pose)))):
        cv2.imwrite(str(folder / f"im{k}.png"), im[..., ::-1])
        np.save(folder / f"d{k}.npy", depth)
    return folder, f"{cam.fx},{cam.fy},{cam.cx},{cam.cy}"


def test_cli_estimate_and_refine_write_the_view(plane_files, capsys):
    from twoview.cli import main

    folder, k = plane_files
    args = [str(folder / "im0.png"), str(folder / "im1.png"), "--K0", k, "--depth0", str(folder / "d0.npy"),
            "--depth1", str(folder / "d1.npy")]
    out = folder / "est.html"
    assert main(["estimate", *args, "--view", str(out)]) == 0
    names = [la["name"] for la in page_data(out)["layers"]]
    assert names[:2] == ["camera0", "camera1"] and {"cloud0", "cloud1", "matches"} <= set(names)
    out = folder / "ref.html"
    rc = main(["refine", *args, "--features", "none", "--num-gaussians", "300", "--view", str(out)])
    names = [la["name"] for la in page_data(out)["layers"]]
    assert {"cloud0", "mixture0"} <= set(names) and (rc != 0 or {"mixture1", "matches"} <= set(names))
    capsys.readouterr()
    for bad, problem in ((folder / "v.png", "ending in .html"), (folder, "is a folder")):
        assert main(["estimate", *args, "--view", str(bad)]) == 2
        err = capsys.readouterr().err
        assert "--view" in err and problem in err


# --- the page in a real browser ------------------------------------------------------------
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# flags this machine needs (no sandbox as root, no network, software WebGL without a GPU)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
BACKGROUND_BGR = np.array([26, 23, 21])  # the page's clear colour


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (scripts/test.sh installs Debian's chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the test extra)")
    with sync_api.sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(str(tmp_path_factory.mktemp("chromium-profile")), headless=True,
                                                    executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                                    viewport={"width": 1000, "height": 700})
        yield ctx
        ctx.close()


def open_page(browser, path):
    """The page, loaded and drawn, with the errors it reported."""
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(path.as_uri())
    page.wait_for_function("window.twoviewScene && window.twoviewScene.ready", timeout=30000)
    return page, errors + page.evaluate("window.twoviewErrors")


def drawn_pixels(page) -> np.ndarray:
    """Mask of the screenshot's pixels right of the panel that are not background."""
    import cv2

    shot = cv2.imdecode(np.frombuffer(page.screenshot(), np.uint8), cv2.IMREAD_COLOR)
    box = page.locator("#tv-panel").bounding_box()
    return np.abs(shot[:, int(box["x"] + box["width"]) + 1:].astype(int) - BACKGROUND_BGR).sum(-1) > 30


def test_page_in_chromium_real_pair(browser, shared_data, tmp_path):
    """An ICL-NUIM pair estimated for real: the page loads without errors, holds the two
    cameras, clouds and matches, draws them, and orbits, zooms, toggles and resets."""
    import twoview
    from twoview.io.depth import load_depth
    from twoview.io.images import load_image

    seq = shared_data / "icl_nuim_livingroom1"
    rows = [ln.split() for ln in (seq / "pseudo_gt_open3d_reconstruction.log").read_text().splitlines() if ln.strip()]
    world_from = {k: np.array(rows[5 * k + 1: 5 * k + 5], float) for k in (0, 15)}
    gt = Pose.from_matrix(np.linalg.inv(world_from[15]) @ world_from[0])
    im0, im1 = load_image(seq / "color" / "00000.jpg"), load_image(seq / "color" / "00015.jpg")
    d0, d1 = (load_depth(seq / "depth_clean" / f"{i:05d}.png", 1000.0) for i in (0, 15))
    cam = Camera(525.0, 525.0, 319.5, 239.5, 640, 480)
    result = twoview.estimate_relative_pose(im0, im1, cam, cam, d0, d1)
    assert result.success and result.metric
    scene = view3d.build_scene(im0, im1, cam, cam, d0, d1, result, gt=gt, title="ICL-NUIM 0 -> 15")
    page, errors = open_page(browser, view3d.write_html(tmp_path / "icl.html", scene))
    assert errors == []
    js = page.evaluate("({counts: twoviewScene.counts, drawn: twoviewScene.layers.map(l => [l.name, l.drawn])})")
    assert js["counts"] == scene.counts
    assert js["counts"]["matches"] == min(result.num_inliers, view3d.MAX_MATCHES) > 10
    assert js["counts"]["cloud0"] + js["counts"]["cloud1"] == view3d.MAX_POINTS
    drawn = dict(js["drawn"])
    for name in ("cloud0", "cloud1"):
        assert drawn[name]["points"] == scene.counts[name]
    assert drawn["camera0"]["images"] == drawn["camera1"]["images"] == 1  # the images on their planes
    assert drawn["matches"]["lineSegments"] == 3 * scene.counts["matches"]
    assert "vs ground truth" in page.inner_text("#tv-info")

    before = drawn_pixels(page)
    assert before.mean() > 0.1  # the clouds fill a good part of the view
    yaw = page.evaluate("twoviewScene.view.yaw")
    page.mouse.move(700, 350)
    page.mouse.down()
    page.mouse.move(800, 380, steps=5)
    page.mouse.up()
    page.wait_for_function(f"twoviewScene.view.yaw !== {yaw}")
    page.wait_for_timeout(100)
    after = drawn_pixels(page)
    assert (before != after).mean() > 0.02  # the orbit changed the picture

    page.get_by_text("depth cloud 0").click()  # the legend toggles layers
    page.get_by_text("depth cloud 1").click()
    page.wait_for_timeout(100)
    assert drawn_pixels(page).mean() < 0.5 * after.mean()
    page.keyboard.press("r")
    assert page.evaluate("twoviewScene.view.yaw") == pytest.approx(-0.45)
    assert page.evaluate("twoviewErrors") == []


def test_page_in_chromium_failed_estimate_and_touch(browser, tmp_path):
    im0, im1, c0, c1, d0, d1 = synthetic_inputs()
    scene = view3d.build_scene(im0, im1, c0, c1, d0, d1, PoseResult.failure("too few matches (3)"))
    page, errors = open_page(browser, view3d.write_html(tmp_path / "failed.html", scene))
    assert errors == []
    assert page.evaluate("twoviewScene.counts") == {"camera0": 1, "cloud0": 30000}  # every pixel, under budget
    assert "no pose" in page.inner_text("#tv-info")
    assert drawn_pixels(page).mean() > 0.01
    # two fingers spreading apart zoom in
    dist = page.evaluate("twoviewScene.view.dist")
    page.evaluate("""() => {
        const c = document.getElementById('tv-canvas');
        const ev = (type, id, x) => c.dispatchEvent(new PointerEvent(type, {pointerId: id, pointerType: 'touch',
                                                                            clientX: x, clientY: 300, bubbles: true}));
        ev('pointerdown', 11, 600); ev('pointerdown', 12, 700);
        ev('pointermove', 11, 550); ev('pointermove', 12, 750);
        ev('pointerup', 11, 550); ev('pointerup', 12, 750);
    }""")
    assert page.evaluate("twoviewScene.view.dist") < 0.8 * dist


def test_show_names_a_missing_or_unknown_backend():
    import importlib.util

    from twoview.errors import BackendUnavailable

    scene = view3d.build_scene(*synthetic_inputs(), metric_result())
    with pytest.raises(InputError, match="backend"):
        view3d.show(scene, backend="open3d")
    for backend, module in (("viser", "viser"), ("rerun", "rerun")):
        if importlib.util.find_spec(module) is None:
            with pytest.raises(BackendUnavailable, match=module):
                view3d.show(scene, backend=backend)
