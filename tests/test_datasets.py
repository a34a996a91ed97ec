"""Dataset readers: poses agree with the ground-truth files, for every format."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from twoview.datasets import get_dataset
from twoview.errors import InputError
from twoview.geometry.pose import Pose
from twoview.geometry.rotation import quaternion_to_rotation, so3_exp


def _pairs_gt(path: Path, first: int, ncols_before: int):
    """{(col0, col1): 4x4} from a '... T_0to1(16)' file."""
    out = {}
    for ln in path.read_text().splitlines():
        if not ln.strip() or ln.startswith("#"):
            continue
        p = ln.split()
        out[(p[first], p[first + 1])] = np.array(p[ncols_before:], float).reshape(4, 4)
    return out


# --- TUM -------------------------------------------------------------------------------------
def test_tum_matches_reference_files(shared_data):
    root = shared_data / "tum" / "fr1_xyz"
    ds = get_dataset("tum", root, gaps=[1, 2, 3, 4, 5])
    ref = {}
    for ln in (root / "frames_gt.txt").read_text().splitlines():
        if ln.startswith("#"):
            continue
        p = ln.split()
        ref[p[0]] = (p[2], np.array(p[3:6], float), np.array(p[6:10], float))
    assert len(ds.frames) == 6
    for f in ds.frames:
        depth, t, q = ref[f.frame_id]
        assert f.depth.name == Path(depth).name  # association by timestamp
        np.testing.assert_allclose(f.world_from_cam.t, t, atol=2e-6)
        np.testing.assert_allclose(f.world_from_cam.R, quaternion_to_rotation(q, "xyzw"), atol=2e-6)
    gt = _pairs_gt(root / "pairs_gt.txt", 0, 4)
    pairs = ds.pairs()
    assert len(pairs) == 15
    for p in pairs:
        T = gt[(f"rgb/{p.meta['frame0']}.png", f"rgb/{p.meta['frame1']}.png")]
        np.testing.assert_allclose(p.cam1_from_cam0.matrix, T, atol=2e-5)
        assert p.depth_scale == 5000.0 and p.camera0.dist is not None


def _write_tum(root: Path, gt_lines: list[str]):
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    import cv2

    for ts in ("10.000000", "10.500000", "11.000000"):
        cv2.imwrite(str(root / "rgb" / f"{ts}.png"), np.zeros((48, 64, 3), np.uint8))
    for ts in ("10.010000", "10.600000"):  # 10 ms and 100 ms away
        cv2.imwrite(str(root / "depth" / f"{ts}.png"), np.full((48, 64), 5000, np.uint16))
    (root / "groundtruth.txt").write_text("\n".join(gt_lines) + "\n")


def test_tum_interpolation_and_association(tmp_path):
    q0 = [0, 0, 0, 1.0]
    R1 = so3_exp(np.radians(20.0) * np.array([0, 0, 1.0]))
    q1 = list(Pose(R1, np.zeros(3)).quaternion("xyzw"))
    _write_tum(tmp_path, [
        "# timestamp tx ty tz qx qy qz qw",
        "9.9 0 0 0 " + " ".join(map(str, q0)),
        "10.9 1 2 0 " + " ".join(map(str, q1)),
    ])
    ds = get_dataset("tum", tmp_path, gaps=[1], max_gt_gap=2.0)  # mocap samples 1 s apart here
    assert [f.frame_id for f in ds.frames] == ["10.000000", "10.500000"]  # 11.0 is outside the mocap coverage
    f0, f1 = ds.frames
    assert f0.depth.name == "10.010000.png" and f1.depth is None  # 100 ms > 20 ms
    # at 10.5: s = 0.6 -> t = (0.6, 1.2, 0), rotation 12 deg about z (slerp)
    np.testing.assert_allclose(f1.world_from_cam.t, [0.6, 1.2, 0.0], atol=1e-9)
    np.testing.assert_allclose(f1.world_from_cam.R, so3_exp(np.radians(12.0) * np.array([0, 0, 1.0])), atol=1e-9)


def test_tum_malformed_groundtruth_names_line(tmp_path):
    _write_tum(tmp_path, ["9.9 0 0 0 0 0 0 1", "10.9 1 2 0 0 0 0"])
    with pytest.raises(InputError, match=r"groundtruth.txt:2"):
        get_dataset("tum", tmp_path)


# --- 7-Scenes --------------------------------------------------------------------------------
def test_7scenes_poses_and_cross_sequence_pairs(shared_data, tmp_path):
    root = shared_data / "7scenes_stairs" / "stairs"
    pl = tmp_path / "pairs.txt"
    pl.write_text("# id0 id1\nseq-01/frame-000000 seq-03/frame-000000\nseq-03/frame-000000 seq-04/frame-000000\n")
    ds = get_dataset("7scenes", root, pairs_file=str(pl))
    assert len(ds.frames) == 12
    P = {s: np.loadtxt(root / s / "frame-000000.pose.txt") for s in ("seq-01", "seq-03")}
    p = ds.pairs()[0]
    np.testing.assert_allclose(p.cam1_from_cam0.matrix, np.linalg.inv(P["seq-03"]) @ P["seq-01"], atol=1e-4)  # files are not exactly orthonormal
    assert p.depth0.name == "frame-000000.depth.png" and p.depth_scale == 1000.0
    assert p.camera0.fx == 585.0
    # gaps stay inside a sequence
    gap_pairs = get_dataset("7scenes", root, gaps=[1, 2]).pairs()
    assert len(gap_pairs) == 12 and all(q.meta["frame0"][:6] == q.meta["frame1"][:6] for q in gap_pairs)


def test_pair_list_naming_a_missing_frame(shared_data, tmp_path):
    pl = tmp_path / "pairs.txt"
    pl.write_text("seq-01/frame-000000 seq-01/frame-000001\nseq-01/frame-000000 seq-09/frame-000123\n")
    with pytest.raises(InputError, match=r"pairs.txt:2.*seq-09/frame-000123"):
        get_dataset("7scenes", shared_data / "7scenes_stairs" / "stairs", pairs_file=str(pl)).pairs()


# --- ICL-NUIM / Redwood .log -----------------------------------------------------------------
def _read_log(path):
    rows = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    return {int(rows[k][0]): np.array(rows[k + 1 : k + 5], float) for k in range(0, len(rows), 5)}


def test_icl_nuim_log_round_trip(shared_data):
    root = shared_data / "icl_nuim_livingroom1"
    ds = get_dataset("icl_nuim", root, trajectory="gt_trajectory_frames0-4.log", gaps=[1, 4])
    P = _read_log(root / "gt_trajectory_frames0-4.log")
    assert [f.frame_id for f in ds.frames] == ["0", "1", "2", "3", "4"]
    pairs = ds.pairs()
    assert len(pairs) == 5
    for p in pairs:
        i, j = int(p.meta["frame0"]), int(p.meta["frame1"])
        np.testing.assert_allclose(p.cam1_from_cam0.matrix, np.linalg.inv(P[j]) @ P[i], atol=1e-6)
        assert p.image0.name == f"{i:05d}.jpg" and p.depth0.name == f"{i:05d}.png"
    assert (ds.frames[0].camera.fx, ds.frames[0].camera.cx) == (525.0, 319.5)
    # the pseudo ground truth agrees with the true one to a few mm
    pseudo = get_dataset("icl_nuim", root, trajectory="pseudo_gt_in_gt_world_frame.log", pairs_file=None, gaps=[4], max_pairs=1)
    p = pseudo.pairs()[0]
    assert np.linalg.norm(p.cam1_from_cam0.t - pairs[-1].cam1_from_cam0.t) < 0.005


def test_icl_nuim_selection_ranges(shared_data):
    root = shared_data / "icl_nuim_livingroom1"
    opts = dict(trajectory="pseudo_gt_in_gt_world_frame.log", gaps=[10, 30, 60], stride=5)
    all_pairs = get_dataset("icl_nuim", root, **opts).pairs()
    assert len(all_pairs) == 109
    sel = get_dataset("icl_nuim", root, **opts, min_trans_m=0.3, max_trans_m=0.6, min_rot_deg=5.0).pairs()
    assert 0 < len(sel) < len(all_pairs)
    assert all(0.3 <= p.meta["baseline_m"] <= 0.6 and p.meta["rotation_deg"] >= 5 for p in sel)
    assert len(get_dataset("icl_nuim", root, **opts, max_pairs=10).pairs()) == 10
    ov = get_dataset("icl_nuim", root, trajectory="pseudo_gt_in_gt_world_frame.log", gaps=[10, 60], stride=100,
                     min_overlap=0.5).pairs()
    assert ov and all(p.meta["overlap"] >= 0.5 for p in ov)
    near = get_dataset("icl_nuim", root, trajectory="pseudo_gt_in_gt_world_frame.log", gaps=[1], stride=100, min_overlap=0.0,
                       max_overlap=1.0).pairs()
    assert near


def test_malformed_log_names_file_and_line(tmp_path, shared_data):
    root = tmp_path / "seq"
    (root / "color").mkdir(parents=True)
    import shutil

    shutil.copy(shared_data / "icl_nuim_livingroom1" / "color" / "00000.jpg", root / "color" / "00000.jpg")
    (root / "trajectory.log").write_text("0 0 1\n1 0 0 0\n0 1 0 0\n0 0 1 zero\n0 0 0 1\n")
    with pytest.raises(InputError, match=r"trajectory.log:4"):
        get_dataset("redwood", root)
    (root / "trajectory.log").write_text("0 0 1\n1 0 0 0\n0 1 0 0\n0 0 1 0\n")
    with pytest.raises(InputError, match=r"5 lines per frame"):
        get_dataset("redwood", root)


# --- KITTI -----------------------------------------------------------------------------------
def test_kitti_matches_pairs_file(shared_data):
    root = shared_data / "kitti_odometry" / "seq00"
    ds = get_dataset("kitti", root, gaps=[1, 2, 3, 4, 5])
    gt = _pairs_gt(root / "pairs_gt_image_0.txt", 0, 2)
    pairs = ds.pairs()
    assert len(pairs) == 15
    for p in pairs:
        key = next(k for k in gt if Path(k[0]).stem == p.meta["frame0"] and Path(k[1]).stem == p.meta["frame1"])
        np.testing.assert_allclose(p.cam1_from_cam0.matrix, gt[key], atol=1e-5)
    assert ds.frames[0].camera.fx == pytest.approx(718.856) and pairs[0].depth0 is None


def test_kitti_malformed_pose_line(tmp_path, shared_data):
    import shutil

    root = tmp_path / "07"
    shutil.copytree(shared_data / "kitti_odometry" / "seq00" / "image_0", root / "image_0")
    (root / "calib.txt").write_text("P0: 718.8 0 607.1 0 0 718.8 185.2 0 0 0 1 0\n")
    lines = ["1 0 0 0 0 1 0 0 0 0 1 0"] * 6
    lines[3] = "1 0 0 0 0 1 0 0 0 0 1"
    (root / "poses_07.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"poses_07.txt:4"):
        get_dataset("kitti", root)


# --- SuperGlue pair lists --------------------------------------------------------------------
def test_superglue_pair_list(shared_data, tmp_path):
    root = shared_data / "scannet_pairs"
    ds = get_dataset("superglue_pairs", root, pairs_file=str(root / "scannet_sample_pairs_with_gt.txt"))
    pairs = ds.pairs()
    first = (root / "scannet_sample_pairs_with_gt.txt").read_text().splitlines()[0].split()
    assert len(pairs) == 15
    np.testing.assert_allclose(pairs[0].cam1_from_cam0.matrix, np.array(first[22:], float).reshape(4, 4), atol=2e-3)
    assert pairs[0].camera0.fx == pytest.approx(float(first[4])) and pairs[0].camera0.size == (1296, 968)
    bad = tmp_path / "pairs.txt"
    bad.write_text(" ".join(first) + "\n" + " ".join(["missing.jpg", *first[1:]]) + "\n")
    with pytest.raises(InputError, match=r"pairs.txt:2.*missing.jpg"):
        get_dataset("superglue_pairs", root, pairs_file=str(bad)).pairs()
    bad.write_text(" ".join(first[:30]) + "\n")
    with pytest.raises(InputError, match=r"pairs.txt:1.*38 fields"):
        get_dataset("superglue_pairs", root, pairs_file=str(bad)).pairs()


# --- registry --------------------------------------------------------------------------------
def test_registry_errors(tmp_path, shared_data):
    with pytest.raises(InputError, match="unknown dataset kind 'nope'"):
        get_dataset("nope", tmp_path)
    with pytest.raises(InputError, match="folder not found"):
        get_dataset("tum", tmp_path / "absent")
    with pytest.raises(InputError, match="unknown option.*colour"):
        get_dataset("tum", shared_data / "tum" / "fr1_xyz", colour=True)
    with pytest.raises(InputError, match="choose one with the option trajectory"):
        get_dataset("icl_nuim", shared_data / "icl_nuim_livingroom1")


# --- formats without shared data: fixtures written in the real format -----------------------
def _random_poses(n, seed=0):
    rng = np.random.default_rng(seed)
    return [Pose(so3_exp(rng.normal(scale=0.3, size=3)), rng.normal(size=3)) for _ in range(n)]


def _png(path: Path, w=64, h=48):
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.zeros((h, w, 3), np.uint8))


def test_megadepth_scene_info_npz(tmp_path):
    cam_from_world = _random_poses(3)
    names = np.array(["Undistorted_SfM/0015/images/a.jpg", None, "Undistorted_SfM/0015/images/b.jpg"], dtype=object)
    for n in names:
        if n:
            _png(tmp_path / n)
    K = np.array([[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]])
    infos = np.empty(2, dtype=object)
    infos[0] = ((0, 2), 0.4, np.zeros((2, 2)))
    infos[1] = ((2, 0), 0.05, np.zeros((2, 2)))
    np.savez(tmp_path / "0015_0.1_0.3.npz", image_paths=names, depth_paths=names, intrinsics=np.stack([K] * 3),
             poses=np.stack([p.matrix for p in cam_from_world]), pair_infos=infos)
    ds = get_dataset("megadepth1500", tmp_path, scene_info="0015_0.1_0.3.npz", min_overlap=0.1)
    (p,) = ds.pairs()
    expected = cam_from_world[2].matrix @ np.linalg.inv(cam_from_world[0].matrix)  # LoFTR: T1 @ inv(T0)
    np.testing.assert_allclose(p.cam1_from_cam0.matrix, expected, atol=1e-9)
    assert p.meta["metric_gt"] is False and p.camera1.fx == 50.0
    infos[0] = ((0, 1), 0.4, None)
    np.savez(tmp_path / "bad.npz", image_paths=names, intrinsics=np.stack([K] * 3),
             poses=np.stack([p.matrix for p in cam_from_world]), pair_infos=infos)
    with pytest.raises(InputError, match=r"bad.npz:pair_infos\[0\]"):
        get_dataset("megadepth1500", tmp_path, scene_info="bad.npz").pairs()


def test_realestate10k_camera_txt(tmp_path):
    cam_from_world = _random_poses(3, seed=1)
    lines = ["https://www.youtube.com/watch?v=abcdefghijk"]
    for k, P in enumerate(cam_from_world):
        ts = 1000000 + 33366 * k
        _png(tmp_path / "frames" / "seq1" / f"{ts}.png", 64, 48)
        lines.append(" ".join([str(ts), "0.5", "0.6666", "0.5", "0.5", "0", "0"] + [f"{v:.12f}" for v in P.matrix[:3].ravel()]))
    (tmp_path / "seq1.txt").write_text("\n".join(lines) + "\n")
    ds = get_dataset("realestate10k", tmp_path, gaps=[2])
    (p,) = ds.pairs()
    np.testing.assert_allclose(p.cam1_from_cam0.matrix, (cam_from_world[2] @ cam_from_world[0].inverse()).matrix, atol=1e-9)
    assert p.camera0.fx == pytest.approx(32.0) and p.camera0.cx == pytest.approx(31.5)
    assert p.meta["metric_gt"] is False and p.meta["frame0"] == "1000000"
    lines[2] = lines[2].rsplit(" ", 1)[0]
    (tmp_path / "seq1.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"seq1.txt:3.*19 numbers"):
        get_dataset("realestate10k", tmp_path)


@pytest.mark.parametrize("fmt", ["ndc_isotropic", "ndc_norm_image_bounds"])
def test_co3d_frame_annotations(tmp_path, fmt):
    W, H = 80, 60
    rng = np.random.default_rng(2)
    entries = []
    p3d = []
    for k in range(3):
        R = so3_exp(rng.normal(scale=0.2, size=3))
        T = np.array([0.1 * k, -0.05, 3.0])
        f, pp = [1.8, 2.1], [0.05, -0.1]
        p3d.append((R, T, np.array(f), np.array(pp)))
        rel = f"car/110_13051_23361/images/frame{k + 1:06d}.jpg"
        _png(tmp_path / rel, W, H)
        entries.append({"sequence_name": "110_13051_23361", "frame_number": k + 1, "frame_timestamp": 0.1 * k,
                        "image": {"path": rel, "size": [H, W]},
                        "viewpoint": {"R": R.tolist(), "T": T.tolist(), "focal_length": f, "principal_point": pp,
                                      "intrinsics_format": fmt}})
    with gzip.open(tmp_path / "car" / "frame_annotations.jgz", "wt") as fh:
        json.dump(entries, fh)
    ds = get_dataset("co3d", tmp_path / "car", gaps=[1])
    assert len(ds.frames) == 3 and len(ds.pairs()) == 2
    # a world point projected with PyTorch3D's own conventions lands where ours does
    Xw = np.array([[0.2, -0.1, 0.3], [-0.3, 0.2, -0.2]])
    for fr, (R, T, f, pp) in zip(ds.frames, p3d):
        Xc = Xw @ R + T  # PyTorch3D row-vector convention, +X left, +Y up
        ndc = f * Xc[:, :2] / Xc[:, 2:] + pp
        sx, sy = (min(W, H) / 2,) * 2 if fmt == "ndc_isotropic" else (W / 2, H / 2)
        pix_corner = np.stack([W / 2 - ndc[:, 0] * sx, H / 2 - ndc[:, 1] * sy], 1)
        ours = fr.camera.project(fr.world_from_cam.inverse().apply(Xw))
        np.testing.assert_allclose(ours + 0.5, pix_corner, atol=1e-9)
    assert ds.pairs()[0].meta["metric_gt"] is False


# --- overlap -----------------------------------------------------------------------------------
def test_covisibility_invalid_frame1_depth_does_not_veto(tmp_path):
    import cv2

    from twoview.datasets.base import PairSample
    from twoview.datasets.common import covisibility
    from twoview.geometry.camera import Camera

    W, H = 64, 48
    cam = Camera(50.0, 50.0, 31.5, 23.5, W, H)
    cv2.imwrite(str(tmp_path / "d0.png"), np.full((H, W), 2000, np.uint16))  # a wall at 2 m
    d1 = np.full((H, W), 2000, np.uint16)
    d1[:, : W // 2] = 0  # no measurement on the left half of frame 1
    cv2.imwrite(str(tmp_path / "d1.png"), d1)
    p = PairSample("p", tmp_path / "i0.png", tmp_path / "i1.png", cam, cam, Pose(np.eye(3), np.zeros(3)),
                   tmp_path / "d0.png", tmp_path / "d1.png", 1000.0)
    assert covisibility(p, step=1) == pytest.approx(1.0)
    d1[:, W // 2 :] = 1000  # an occluder at 1 m on the right half: those points are hidden
    cv2.imwrite(str(tmp_path / "d1.png"), d1)
    assert covisibility(p, step=1) == pytest.approx(0.5)
    # moved 10 cm right (x1 = x0 - 0.1): the columns that leave the image are not covisible
    shifted = PairSample("q", p.image0, p.image1, cam, cam, Pose(np.eye(3), [-0.1, 0.0, 0.0]), p.depth0, None, 1000.0)
    lost = int(np.sum(np.arange(W) - 50.0 * 0.1 / 2.0 < -0.5))  # u1 = u0 - f * 0.1 / z
    assert covisibility(shifted, step=1) == pytest.approx(1 - lost / W)


# --- more real-data round trips ---------------------------------------------------------------
def test_tum_fr3_matches_reference_files(shared_data):
    root = shared_data / "tum" / "fr3_long_office_household"
    ref = {}
    for ln in (root / "frames_gt.txt").read_text().splitlines():
        if not ln.startswith("#"):
            p = ln.split()
            ref[p[0]] = None if p[3] == "NA" else (np.array(p[3:6], float), np.array(p[6:10], float))
    ds = get_dataset("tum", root, gaps=list(range(1, 20)))
    assert sorted(f.frame_id for f in ds.frames) == sorted(k for k, v in ref.items() if v is not None)
    for f in ds.frames:
        t, q = ref[f.frame_id]
        np.testing.assert_allclose(f.world_from_cam.t, t, atol=2e-6)
        np.testing.assert_allclose(f.world_from_cam.R, quaternion_to_rotation(q, "xyzw"), atol=2e-6)
    assert ds.frames[0].camera.dist is None or not any(ds.frames[0].camera.dist)
    gt = _pairs_gt(root / "pairs_gt.txt", 0, 4)
    pairs = ds.pairs()
    assert len(pairs) == len(gt) == 190
    for p in pairs:
        np.testing.assert_allclose(p.cam1_from_cam0.matrix, gt[(f"rgb/{p.meta['frame0']}.png", f"rgb/{p.meta['frame1']}.png")],
                                   atol=2e-5)


def test_7scenes_one_sequence_folder(shared_data):
    scene = shared_data / "7scenes_stairs" / "stairs"
    seq = next(p for p in sorted(scene.iterdir()) if p.name.startswith("seq-"))
    ds = get_dataset("7scenes", seq, gaps=[1])
    whole = [f for f in get_dataset("7scenes", scene).frames if f.sequence == seq.name]
    assert [f.frame_id for f in ds.frames] == [f.frame_id for f in whole] and ds.scene == "stairs"
    for f in ds.frames:
        np.testing.assert_allclose(f.world_from_cam.matrix, np.loadtxt(seq / f"{f.frame_id.split('/')[1]}.pose.txt"), atol=1e-4)


def test_7scenes_malformed_pose_file(tmp_path, shared_data):
    import shutil

    src = shared_data / "7scenes_stairs" / "stairs" / "seq-01"
    seq = tmp_path / "stairs" / "seq-01"
    seq.mkdir(parents=True)
    shutil.copy(src / "frame-000000.color.png" if (src / "frame-000000.color.png").is_file() else src / "frame-000000.color.jpg",
                seq)
    (seq / "frame-000000.pose.txt").write_text("1 0 0 0\n0 1 0 0\n0 0 1 0 7\n0 0 0 1\n")
    with pytest.raises(InputError, match=r"frame-000000.pose.txt:3.*expected 4 numbers"):
        get_dataset("7scenes", tmp_path / "stairs")


@pytest.mark.parametrize("name", ["scannet_test_pairs_with_gt.txt", "yfcc_test_pairs_with_gt.txt"])
def test_superglue_benchmark_lists_round_trip(shared_data, tmp_path, name):
    """Real ScanNet-1500 / YFCC-4000 lines, with placeholder images (the real ones are not here)."""
    src = shared_data / "scannet_pairs" / "metadata_only_no_images" / name
    lines = [ln for ln in src.read_text().splitlines() if ln.strip()]
    plain = [ln for ln in lines if ln.split()[2:4] == ["0", "0"]][:3]
    rotated = [ln for ln in lines if ln.split()[2:4] != ["0", "0"]][:1]
    for ln in plain + rotated:
        p = ln.split()
        for name_, K in ((p[0], p[4:13]), (p[1], p[13:22])):
            cx, cy = float(K[2]), float(K[5])
            _png(tmp_path / name_, int(2 * cx + 1), int(2 * cy + 1))
    pl = tmp_path / "pairs.txt"
    pl.write_text("\n".join(plain + rotated) + "\n")
    yfcc = "yfcc" in name
    ds = get_dataset("superglue_pairs", tmp_path, pairs_file=str(pl), metric_gt=not yfcc, exif_rotation="skip")
    pairs = ds.pairs()
    assert len(pairs) == len(plain) and ds.describe()["skipped_rotated"] == len(rotated)
    for p, ln in zip(pairs, plain):
        v = ln.split()
        np.testing.assert_allclose(p.cam1_from_cam0.matrix, np.array(v[22:], float).reshape(4, 4), atol=1e-3)
        assert (p.camera0.fx, p.camera0.cx, p.camera1.fy) == pytest.approx((float(v[4]), float(v[6]), float(v[17])))
        assert p.meta["metric_gt"] is (not yfcc)
    if rotated:
        with pytest.raises(InputError, match=r"pairs.txt:4.*EXIF rotation"):
            get_dataset("superglue_pairs", tmp_path, pairs_file=str(pl)).pairs()
