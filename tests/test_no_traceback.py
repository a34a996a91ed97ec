"""No traceback ever: each defect of a bad file or argument is one line naming it, at its source;
a bug is one line with exit status 3; outputs that would destroy inputs or cannot be written
are refused before the work."""

from __future__ import annotations

import json
import os
import pickle
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from cli_files import k_arg, write_motorcycle_images
from twoview.cli import main
from twoview.errors import InputError
from twoview.geometry.pose import ROTATION_TOLERANCE, Pose
from twoview.geometry.rotation import so3_exp


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The Motorcycle pair as files, with the left depth in millimetres."""
    d = tmp_path_factory.mktemp("pair")
    p = write_motorcycle_images(d)
    cv2.imwrite(str(d / "left_depth.png"), np.nan_to_num(p.depth0 * 1000.0, nan=0.0).astype(np.uint16))
    return d, k_arg(p.camera0), k_arg(p.camera1), p


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("twoview: warning")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --- the last resort ---------------------------------------------------------------------------
def _boom(args):
    raise RuntimeError("boom\nsecond line")


def test_an_unexpected_exception_is_one_line_with_exit_status_3(capsys, monkeypatch):
    import twoview.cli.demo as demo

    monkeypatch.setattr(demo, "run", _boom)
    monkeypatch.delenv("TWOVIEW_DEBUG", raising=False)
    code, out, err = run_cli(capsys, "demo")
    assert code == 3
    assert one_error_line(err).startswith("twoview: internal error (a bug, please report): RuntimeError: boom second line")
    monkeypatch.setenv("TWOVIEW_DEBUG", "1")  # developers get the traceback
    with pytest.raises(RuntimeError, match="boom"):
        main(["demo"])


def test_ctrl_c_is_one_line_with_exit_status_130(capsys, monkeypatch):
    import twoview.cli.demo as demo

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "run", interrupted)
    code, out, err = run_cli(capsys, "demo")
    assert code == 130 and one_error_line(err) == "twoview demo: interrupted"


@pytest.mark.parametrize("command", ["estimate", "refine", "demo", "bench", "train"])
def test_every_command_documents_its_exit_statuses(capsys, command):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Exit status: 0" in text and "2 bad input, 3 internal error (a bug)" in text
    assert ("1 no pose" in text) == (command in ("estimate", "refine", "demo"))


def test_input_error_survives_pickling():
    """An InputError raised in a bench worker process reaches the command as itself."""
    e = pickle.loads(pickle.dumps(InputError("--root", "not a folder")))
    assert isinstance(e, InputError) and (e.what, e.problem) == ("--root", "not a folder")


# --- one rotation tolerance --------------------------------------------------------------------
def _off_rotation(eps: float) -> np.ndarray:
    """A pose matrix whose rotation block is ``eps`` off orthonormal."""
    M = Pose(so3_exp(np.array([0.1, 0.2, 0.3])), np.array([1.0, 2.0, 3.0])).matrix
    M[:3, :3] @= np.diag([1.0 + eps, 1.0, 1.0])
    return M


@pytest.mark.parametrize("eps, accepted", [(2e-4, True), (0.9 * ROTATION_TOLERANCE / 2, True), (0.005, False), (0.01, False)])
def test_7scenes_and_kitti_poses_share_one_rotation_tolerance(tmp_path, eps, accepted):
    """A rotation a little off is re-orthonormalised; one further off is refused by the dataset
    reader naming file and line (no ValueError from Pose.from_matrix later)."""
    from twoview.datasets import get_dataset

    M = _off_rotation(eps)
    seq = tmp_path / "7s" / "seq-01"
    seq.mkdir(parents=True)
    kitti = tmp_path / "kitti"
    (kitti / "image_0").mkdir(parents=True)
    for k in range(2):
        cv2.imwrite(str(seq / f"frame-{k:06d}.color.png"), np.zeros((48, 64, 3), np.uint8))
        np.savetxt(seq / f"frame-{k:06d}.pose.txt", M if k else np.eye(4))
        cv2.imwrite(str(kitti / "image_0" / f"{k:06d}.png"), np.zeros((48, 64), np.uint8))
    (kitti / "poses.txt").write_text(" ".join(map(str, np.eye(4)[:3].ravel())) + "\n" + " ".join(map(str, M[:3].ravel())) + "\n")
    (kitti / "calib.txt").write_text("P0: 50 0 32 0 0 50 24 0 0 0 1 0\n")
    for kind, root, where in (("7scenes", tmp_path / "7s", r"frame-000001.pose.txt:1-4"), ("kitti", kitti, r"poses.txt:2")):
        if accepted:
            pose = get_dataset(kind, root).pairs()[0].cam1_from_cam0
            assert np.abs(pose.R @ pose.R.T - np.eye(3)).max() < 1e-12
        else:
            with pytest.raises(InputError, match=where + r": the 3x3 block is not a rotation"):
                get_dataset(kind, root).pairs()


def test_7scenes_frames_with_nan_poses_are_skipped(tmp_path):
    """7-Scenes marks lost tracking in the pose file: such a frame is skipped, the run goes on."""
    from twoview.datasets import get_dataset

    seq = tmp_path / "seq-01"
    seq.mkdir()
    for k in range(4):
        cv2.imwrite(str(seq / f"frame-{k:06d}.color.png"), np.zeros((48, 64, 3), np.uint8))
        M = np.full((4, 4), np.nan) if k == 2 else np.eye(4)
        np.savetxt(seq / f"frame-{k:06d}.pose.txt", M)
    ds = get_dataset("7scenes", tmp_path)
    assert [f.frame_id for f in ds.frames] == ["seq-01/frame-000000", "seq-01/frame-000001", "seq-01/frame-000003"]


def test_tum_zero_quaternion_names_the_line(tmp_path):
    from twoview.datasets import get_dataset

    (tmp_path / "rgb").mkdir()
    cv2.imwrite(str(tmp_path / "rgb" / "1.000000.png"), np.zeros((48, 64, 3), np.uint8))
    (tmp_path / "groundtruth.txt").write_text("0.9 0 0 0 0 0 0 1\n1.1 0 0 0 0 0 0 0\n")
    with pytest.raises(InputError, match=r"groundtruth.txt:2: the quaternion qx qy qz qw has norm 0"):
        get_dataset("tum", tmp_path)


# --- files that are not what they claim ------------------------------------------------------
def test_empty_depth_arrays_are_bad_input(tmp_path):
    from twoview.io.depth import load_depth, prepare_depth

    with pytest.raises(InputError, match="depth map is empty"):
        prepare_depth(np.zeros((0, 64)), (64, 48), "depth0")
    np.save(tmp_path / "d.npy", np.zeros((0, 64), np.float32))
    with pytest.raises(InputError, match="--depth0: depth map is empty"):
        load_depth(tmp_path / "d.npy", name="--depth0")


def test_non_utf8_text_files_name_the_file(tmp_path, pair, capsys):
    from twoview.datasets.kitti import read_kitti_poses

    d, *_ = pair
    bad = tmp_path / "K.txt"
    bad.write_bytes(b"525 525 319.5 239.5\xff\n")
    code, out, err = run_cli(capsys, "estimate", d / "left.png", d / "right.png", "--intrinsics", bad)
    assert code == 2 and "--intrinsics: " in one_error_line(err) and "is not UTF-8 text (byte 0xff" in err
    poses = tmp_path / "poses.txt"
    poses.write_bytes(b"1 0 0 0 0 1 0 0 0 0 1 0\n\xe9\n")
    with pytest.raises(InputError, match=r"poses.txt is not UTF-8 text"):
        read_kitti_poses(poses)


@pytest.mark.parametrize("flag", ["--init", "--intrinsics"])
def test_deeply_nested_json_is_bad_input(tmp_path, pair, capsys, flag):
    d, k0, *_ = pair
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    extra = ["--depth0", d / "left_depth.png", "--depth1", d / "left_depth.png", "--depth-scale", "1000"]
    cmd = ["refine", d / "left.png", d / "right.png", "--K0", k0, *extra, "--init", deep] if flag == "--init" else \
        ["estimate", d / "left.png", d / "right.png", "--intrinsics", deep]
    code, out, err = run_cli(capsys, *cmd)
    assert code == 2 and one_error_line(err).endswith("is nested too deeply to be a valid file of this kind")
    assert f"{flag}: " in err


def test_intrinsics_as_a_3x3_k_text_file(tmp_path, pair):
    from twoview.cli.common import load_intrinsics_file

    d, k0, k1, p = pair
    f = tmp_path / "K.txt"
    np.savetxt(f, p.camera0.K)
    K0, K1 = load_intrinsics_file(str(f))
    np.testing.assert_allclose(K0, p.camera0.K)
    np.testing.assert_allclose(K1, p.camera0.K)
    f.write_text("\n".join(" ".join(map(str, row)) for row in (*p.camera0.K, *p.camera1.K)) + "\n")
    K0, K1 = load_intrinsics_file(str(f))
    np.testing.assert_allclose(K1, p.camera1.K)
    f.write_text("1 2 3\n4 5 6\n7 8 9\n1 2 3\n")
    with pytest.raises(InputError, match="got 4 lines"):
        load_intrinsics_file(str(f))


# --- PLY -------------------------------------------------------------------------------------
def _ply(tmp_path, header_lines, body: bytes, binary=False) -> Path:
    fmt = "binary_little_endian" if binary else "ascii"
    text = f"ply\nformat {fmt} 1.0\n" + "".join(ln + "\n" for ln in header_lines)
    path = tmp_path / "m.ply"
    path.write_bytes(text.encode() + body)
    return path


_PROPS = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
          "rot_0", "rot_1", "rot_2", "rot_3"]
_ROW = "0 0 2 0 0 -1 0.1 0.2 0.3 0 -3 -3 -4 1 0 0 0"


@pytest.mark.parametrize("header, body, needle", [
    (["element vertex 1e3", *(f"property float {p}" for p in _PROPS), "end_header"], _ROW, r"m.ply:3: expected 'element NAME COUNT' with a whole-number count, got 'element vertex 1e3'"),
    (["element vertex 1", "property float", *(f"property float {p}" for p in _PROPS), "end_header"], _ROW, r"m.ply:4: expected 'property TYPE NAME'"),
    (["element vertex 1", *(f"property float {p}" for p in _PROPS if p != "f_dc_2"), "end_header"], _ROW, "missing f_dc_2"),
    (["element vertex 1", *(f"property float {p}" for p in _PROPS if p != "ny"), "end_header"], _ROW, "missing ny"),
    (["element vertex 2", *(f"property float {p}" for p in _PROPS), "end_header"], _ROW + "\n0 0 1\n", "vertex 1 has 3 values, the header declares 17"),
    (["element vertex 3", *(f"property float {p}" for p in _PROPS), "end_header"], _ROW + "\n" + _ROW, "truncated: the header claims 3 Gaussians"),
    (["element vertex 1", *(f"property float {p}" for p in _PROPS), "end_header"], _ROW.replace("1 0 0 0", "0 0 0 0"), "vertex 0 is zero"),
    (["element vertex 1", *(f"property float {p}" for p in _PROPS), "end_header"], _ROW.replace("-3 -3", "nan -3"), "vertex 0: scale_0 is nan"),
    (["element vertex 1", *(f"property float {p}" for p in _PROPS), "property float x", "end_header"], _ROW + " 0", "property 'x' given twice"),
    (["element face 1", "element vertex 1", *(f"property float {p}" for p in _PROPS), "end_header"], _ROW, "the vertex element must come first"),
])
def test_malformed_ply_names_the_problem(tmp_path, header, body, needle):
    from twoview.gmm.ply import read_ply

    path = _ply(tmp_path, header, (body + "\n").encode())
    with pytest.raises(InputError, match=needle):
        read_ply(path)


def test_ply_without_a_newline_after_end_header(tmp_path):
    from twoview.gmm.ply import read_ply

    path = tmp_path / "m.ply"
    path.write_bytes(("ply\nformat binary_little_endian 1.0\nelement vertex 1\n"
                      + "".join(f"property float {p}\n" for p in _PROPS) + "end_header").encode())
    with pytest.raises(InputError, match="no end_header line|must be a line of its own"):
        read_ply(path)


def test_ply_reading_is_vectorised_and_round_trips(tmp_path):
    """A binary and a big-endian file of many Gaussians read back exactly (float32)."""
    from twoview.gmm.mixture import GaussianMixture
    from twoview.gmm.ply import read_ply, write_ply

    rng = np.random.default_rng(0)
    n = 20_000
    A = rng.normal(size=(n, 3, 3)) * 0.02
    mix = GaussianMixture(rng.normal(size=(n, 3)), A @ A.transpose(0, 2, 1) + 1e-5 * np.eye(3), rng.random(n) + 0.1,
                          rng.random((n, 3)))
    back = read_ply(write_ply(tmp_path / "m.ply", mix))
    assert np.abs(back.covs - mix.covs).max() < 1e-6 * np.abs(mix.covs).max() + 1e-9
    np.testing.assert_allclose(back.weights, mix.weights, rtol=1e-5)
    data = (tmp_path / "m.ply").read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    body = np.frombuffer(data[end:], "<f4").astype(">f4").tobytes()
    (tmp_path / "be.ply").write_bytes(data[:end].replace(b"binary_little_endian", b"binary_big_endian") + body)
    np.testing.assert_array_equal(read_ply(tmp_path / "be.ply").means, back.means)


# --- images of sizes no estimate can use --------------------------------------------------------
def test_degenerate_image_sizes_are_refused(tmp_path):
    import twoview
    from twoview.io.images import load_image

    cv2.imwrite(str(tmp_path / "strip.png"), np.zeros((1, 100000, 3), np.uint8))
    with pytest.raises(InputError, match=r"image0: image is too small \(100000x1\)"):
        load_image(tmp_path / "strip.png", "image0")
    cv2.imwrite(str(tmp_path / "long.png"), np.zeros((30, 3000, 3), np.uint8))
    with pytest.raises(InputError, match="too elongated"):
        load_image(tmp_path / "long.png", "image0")
    with pytest.raises(InputError, match="too elongated"):
        twoview.estimate_relative_pose(np.zeros((20, 5000), np.uint8), np.zeros((20, 5000), np.uint8))


def test_matcher_resizing_keeps_a_pixel_a_side():
    from twoview.matching.base import scale_image

    assert scale_image(np.zeros((1, 4000), np.uint8), 0.1).shape == (1, 400)


# --- outputs ---------------------------------------------------------------------------------
def test_json_to_stdout_and_jpeg_viz(pair, capsys, tmp_path):
    d, k0, k1, p = pair
    viz = tmp_path / "m.jpg"
    code, out, err = run_cli(capsys, "estimate", d / "left.png", d / "right.png", "--K0", k0, "--K1", k1,
                             "--depth0", d / "left_depth.png", "--depth-scale", "1000", "--json", "-", "--viz", viz)
    assert code == 0, err
    res = json.loads(out)  # standard output is the JSON alone
    assert res["success"] and res["metric"]
    assert "cam1_from_cam0 via" in err and f"wrote {viz}" in err
    assert viz.read_bytes()[:3] == b"\xff\xd8\xff"  # JPEG, as the extension asks


@pytest.mark.parametrize("out, needle", [
    ("{L}", "--json: {L} is the input image0 of this command: choose another output file"),
    ("{TMP}/" + "n" * 256 + ".json", "--json: the name nnnn"),
    ("/dev/null", "--json: is not a regular file"),
    ("-", None),
])
def test_outputs_are_checked_before_the_work(pair, capsys, tmp_path, out, needle):
    d, k0, k1, p = pair
    before = (d / "left.png").read_bytes()
    out = out.replace("{L}", str(d / "left.png")).replace("{TMP}", str(tmp_path))
    if needle is None:  # '-' is standard output for --json only
        code, _, err = run_cli(capsys, "estimate", d / "left.png", d / "right.png", "--K0", k0, "--viz", "-")
        assert code == 2 and "--viz: '-' (standard output) is only supported for --json" in one_error_line(err)
        return
    code, _, err = run_cli(capsys, "estimate", d / "left.png", d / "right.png", "--K0", k0, "--K1", k1, "--json", out)
    assert code == 2 and needle.replace("{L}", str(d / "left.png")) in one_error_line(err)
    assert (d / "left.png").read_bytes() == before


def test_viz_extension_is_checked_before_the_work(pair, capsys, tmp_path, monkeypatch):
    import twoview.estimator

    monkeypatch.setattr(twoview.estimator, "estimate_relative_pose", _boom)  # must not be reached
    d, k0, *_ = pair
    code, _, err = run_cli(capsys, "estimate", d / "left.png", d / "right.png", "--K0", k0, "--viz", tmp_path / "m.gif")
    assert code == 2 and "--viz: unsupported picture format '.gif'" in one_error_line(err)


def test_longest_legal_output_name_is_written(tmp_path):
    """The temporary file of an atomic write has a short name of its own: any name the file
    system allows for the result works."""
    from twoview.io.atomic import atomic_write_json

    name = "r" * (os.pathconf(tmp_path, "PC_NAME_MAX") - 5) + ".json"
    assert json.loads(atomic_write_json(tmp_path / name, {"a": 1}).read_text()) == {"a": 1}
    assert [q.name for q in tmp_path.iterdir()] == [name]


def test_full_disk_while_writing_the_picture_names_the_flag(pair, capsys, tmp_path, monkeypatch):
    import twoview.io.atomic

    def full_disk(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(twoview.io.atomic, "atomic_write_bytes", full_disk)
    monkeypatch.setattr("twoview.viz.atomic_write_bytes", full_disk)
    d, k0, k1, p = pair
    code, out, err = run_cli(capsys, "estimate", d / "left.png", d / "right.png", "--K0", k0, "--K1", k1,
                             "--viz", tmp_path / "v.png")
    assert code == 2 and "--viz: cannot write" in one_error_line(err) and "No space left on device" in err


# --- results ---------------------------------------------------------------------------------
def test_pose_result_repr_is_one_short_line(pair):
    import twoview

    d, *_, p = pair
    r = twoview.estimate_relative_pose(p.image0, p.image1, p.camera0, p.camera1, depth0=p.depth0)
    text = repr(r)
    assert r.success and len(text) < 300 and "\n" not in text
    assert text.startswith("PoseResult(success=True, solver='pnp', rotation=") and "inliers=" in text


# --- pair lists and training -------------------------------------------------------------------
def test_pair_list_with_shared_file_names_gets_unique_ids(tmp_path):
    from twoview.datasets import get_dataset

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        for k in range(2):
            cv2.imwrite(str(tmp_path / folder / f"{k:04d}.png"), np.zeros((48, 64, 3), np.uint8))
    K = "50 0 32 0 50 24 0 0 1"
    T = " ".join(map(str, np.eye(4).ravel()))
    lines = [f"{f}/0000.png {f}/0001.png 0 0 {K} {K} {T}" for f in ("a", "b")]
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    ids = [s.pair_id for s in get_dataset("superglue_pairs", tmp_path, pairs_file=str(tmp_path / "pairs.txt")).pairs()]
    assert ids == ["a_0000__a_0001", "b_0000__b_0001"]
    (tmp_path / "one.txt").write_text(lines[0] + "\n")  # unique stems: the ids stay as they were
    assert [s.pair_id for s in get_dataset("superglue_pairs", tmp_path, pairs_file=str(tmp_path / "one.txt")).pairs()] == ["0000__0001"]


def test_scannet1500_pair_ids_are_unique(shared_data):
    """ScanNet-1500's list names scene/sens/frame-N.color.jpg: 1500 pairs but 1248 distinct stem
    pairs; the ids are its relative paths. YFCC-4000's stems are unique: its ids stay stems."""
    from twoview.datasets.pairlist import _pair_id

    for name, stems in (("scannet_test_pairs_with_gt.txt", False), ("yfcc_test_pairs_with_gt.txt", True)):
        lines = (shared_data / "scannet_pairs" / "metadata_only_no_images" / name).read_text().splitlines()
        names = {tuple(ln.split()[:2]) for ln in lines if ln.strip()}
        assert len({_pair_id(a, b, stems=True) for a, b in names}) == len(names) if stems else \
            len({_pair_id(a, b, stems=True) for a, b in names}) < len(names)
        assert len({_pair_id(a, b, stems=False) for a, b in names}) == len(names)


def test_train_out_dir_that_is_a_file_fails_before_setup(tmp_path, monkeypatch):
    from twoview.regress import train as train_mod
    from twoview.regress.config import TrainConfig

    def no_setup(*a, **k):
        raise AssertionError("the trainer was built before the output folder was checked")

    monkeypatch.setattr(train_mod, "Trainer", no_setup)
    (tmp_path / "file").write_text("x")
    cfg = TrainConfig.from_dict({"out_dir": str(tmp_path / "file")})
    with pytest.raises(InputError, match="out_dir: not a folder"):
        train_mod.train(cfg, base_dir=tmp_path)


def test_torn_last_log_line_is_dropped_with_a_warning(tmp_path):
    from twoview.regress.train import read_log

    log = tmp_path / "log.jsonl"
    log.write_bytes(b'{"step": 1, "loss": 0.5}\n{"step": 2, "loss": 0.4}\n{"step": 3, "lo')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = read_log(log, repair=True)
    assert [r["step"] for r in rows] == [1, 2] and "line 3 is torn" in str(caught[0].message)
    assert log.read_bytes() == b'{"step": 1, "loss": 0.5}\n{"step": 2, "loss": 0.4}\n'  # appends go after whole records
    log.write_bytes(b'{"step": 1}\nnot json\n{"step": 3}\n')
    with pytest.raises(InputError, match="line 2 is not a JSON record"):
        read_log(log)



def test_input_names_longer_than_the_file_system_allows_are_bad_input(pair, capsys, tmp_path):
    d, k0, *_ = pair
    long = tmp_path / ("i" * 300 + ".png")
    code, _, err = run_cli(capsys, "estimate", long, d / "right.png", "--K0", k0)
    assert code == 2 and "image0: cannot open" in one_error_line(err) and "File name too long" in err
    code, _, err = run_cli(capsys, "bench", "--dataset", "tum", "--root", long, "--method", "sift", "--out", tmp_path / "o")
    assert code == 2 and "--root: cannot open" in one_error_line(err)


if sys.platform != "linux":
    pytestmark = pytest.mark.skip(reason="uses /dev/null and POSIX path limits")
