"""Reloc3r checkpoint format: every key of a randomly initialised checkpoint maps."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from twoview.errors import InputError  # noqa: E402
from twoview.regress.reloc3r import guess_config, load_reloc3r, map_key  # noqa: E402


def reloc3r_state_shapes(enc_dim=1024, enc_depth=24, dec_dim=768, dec_depth=12, patch=16, mlp_ratio=4, head_blocks=2):
    """Key -> shape of Reloc3r's ``Reloc3rRelpose`` state dict, written out from its
    definition (CroCo ``Block``/``DecoderBlock``, ``ManyAR_PatchEmbed``, ``PoseHead`` with
    ``output_dim = 4 * patch**2`` and 9D rotation), independently of twoview's network."""
    s = {"patch_embed.proj.weight": (enc_dim, 3, patch, patch), "patch_embed.proj.bias": (enc_dim,)}

    def lin(name, i, o):
        s[f"{name}.weight"] = (o, i)
        s[f"{name}.bias"] = (o,)

    def ln(name, d):
        s[f"{name}.weight"] = (d,)
        s[f"{name}.bias"] = (d,)

    for i in range(enc_depth):
        p = f"enc_blocks.{i}"
        ln(f"{p}.norm1", enc_dim), ln(f"{p}.norm2", enc_dim)
        lin(f"{p}.attn.qkv", enc_dim, 3 * enc_dim), lin(f"{p}.attn.proj", enc_dim, enc_dim)
        lin(f"{p}.mlp.fc1", enc_dim, mlp_ratio * enc_dim), lin(f"{p}.mlp.fc2", mlp_ratio * enc_dim, enc_dim)
    ln("enc_norm", enc_dim)
    lin("decoder_embed", enc_dim, dec_dim)
    for i in range(dec_depth):
        p = f"dec_blocks.{i}"
        for n in ("norm1", "norm2", "norm3", "norm_y"):
            ln(f"{p}.{n}", dec_dim)
        lin(f"{p}.attn.qkv", dec_dim, 3 * dec_dim), lin(f"{p}.attn.proj", dec_dim, dec_dim)
        for n in ("projq", "projk", "projv", "proj"):
            lin(f"{p}.cross_attn.{n}", dec_dim, dec_dim)
        lin(f"{p}.mlp.fc1", dec_dim, mlp_ratio * dec_dim), lin(f"{p}.mlp.fc2", mlp_ratio * dec_dim, dec_dim)
    ln("dec_norm", dec_dim)
    c = 4 * patch**2
    lin("pose_head.proj", dec_dim, c)
    for j in range(head_blocks):
        for n in ("res_conv1", "res_conv2", "res_conv3"):
            s[f"pose_head.res_conv.{j}.{n}.weight"] = (c, c, 1, 1)
            s[f"pose_head.res_conv.{j}.{n}.bias"] = (c,)
    lin("pose_head.more_mlps.0", c, c), lin("pose_head.more_mlps.2", c, c)
    lin("pose_head.fc_t", c, 3), lin("pose_head.fc_rot", c, 9)
    return s


#: shrunk depth/width (same structure) so the file stays small
SMALL = dict(enc_dim=128, enc_depth=2, dec_dim=64, dec_depth=2, patch=4)


def random_state(**kw):
    g = torch.Generator().manual_seed(0)
    return {k: torch.randn(v, generator=g) * 0.02 for k, v in reloc3r_state_shapes(**kw).items()}


def test_full_size_layouts_match_reloc3r_key_names_and_shapes():
    from twoview.regress.config import preset
    from twoview.regress.model import RelPoseRegressor

    ref = reloc3r_state_shapes()
    with torch.device("meta"):
        model = RelPoseRegressor(preset("reloc3r-512"))
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert own == ref  # every key and shape, nothing extra or missing


def test_loader_maps_every_key_of_a_random_reloc3r_checkpoint(tmp_path):
    state = random_state(**SMALL)
    path = tmp_path / "Reloc3r-224.pth"
    torch.save({"model": state, "epoch": 3}, path)  # Reloc3r's .pth layout
    model, rep = load_reloc3r(path, strict=True)
    assert rep.complete and len(rep.mapped) == len(state)
    assert model.cfg.img_width == 56 and model.cfg.rot_repr == "9d" and not model.cfg.metric_scale  # 224 layout, patch 4
    own = model.state_dict()
    for k, v in state.items():
        torch.testing.assert_close(own[map_key(k)], v)
    x = torch.randn(1, 3, model.cfg.img_height, model.cfg.img_width)
    out = model(x, x)
    R = out["R01"][0]
    torch.testing.assert_close(R @ R.T, torch.eye(3), atol=1e-5, rtol=0)


def test_loader_reads_safetensors_and_legacy_names(tmp_path):
    st = pytest.importorskip("safetensors.torch")
    state = random_state(**SMALL)
    legacy = {("module." + k.replace("dec_blocks.", "dec_blocks2.")): v for k, v in state.items()}
    path = tmp_path / "model.safetensors"
    st.save_file(legacy, str(path))
    _, rep = load_reloc3r(path, strict=True)
    assert rep.complete and len(rep.mapped) == len(state)


def test_loader_reports_unmapped_missing_and_mismatched_keys(tmp_path):
    state = random_state(**SMALL)
    cfg = guess_config(state)
    state["pose_head.extra.weight"] = torch.zeros(3)
    del state["dec_norm.bias"]
    state["enc_norm.weight"] = torch.zeros(7)
    model, rep = load_reloc3r(state, config=cfg)
    assert rep.unmapped == ["pose_head.extra.weight"]
    assert rep.missing == ["dec_norm.bias", "enc_norm.weight"]
    assert list(rep.shape_mismatch) == ["enc_norm.weight"]
    assert "pose_head.extra.weight" in rep.summary() and "dec_norm.bias" in rep.summary()
    with pytest.raises(InputError, match="does not match"):
        load_reloc3r(state, config=cfg, strict=True)


def test_reloc3r_checkpoint_through_estimate(tmp_path):
    from twoview.regress import estimate

    path = tmp_path / "Reloc3r-512.pth"
    torch.save({"model": random_state(**SMALL)}, path)
    img = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    res = estimate(img, img[:, ::-1], checkpoint=path)
    assert res.success and not res.metric  # Reloc3r: translation direction only
