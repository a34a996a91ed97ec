"""Loader for Reloc3r's released checkpoint format.

Reloc3r (Dong et al., CVPR 2025) ships ``Reloc3r-224.pth`` / ``Reloc3r-512.pth`` as
``{"model": state_dict}`` (and the Hugging Face repos ``siyan824/reloc3r-224|512`` as a
flat ``model.safetensors``). Key names come from its ``Reloc3rRelpose`` (CroCo blocks):

    patch_embed.proj.{weight,bias}
    enc_blocks.{i}.{norm1,norm2}.{weight,bias}, .attn.{qkv,proj}.*, .mlp.{fc1,fc2}.*
    enc_norm.*   decoder_embed.*   dec_norm.*
    dec_blocks.{i}.{norm1,norm2,norm3,norm_y}.*, .attn.{qkv,proj}.*,
        .cross_attn.{projq,projk,projv,proj}.*, .mlp.{fc1,fc2}.*
    pose_head.proj.*, pose_head.res_conv.{j}.res_conv{1,2,3}.*,
        pose_head.more_mlps.{0,2}.*, pose_head.fc_t.*, pose_head.fc_rot.*  (9D rotation)

Legacy DUSt3R-style names (``dec_blocks2.``, ``module.`` prefixes) are renamed as
Reloc3r's own ``load_state_dict`` does. The network here uses the same module names, so
the map is the identity after those renames; every key that does not map (unknown
name, or a shape that differs) is reported, never silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from twoview.errors import InputError
from twoview.regress.config import RegressorConfig, preset


@dataclass
class LoadReport:
    """What a checkpoint load did.

    Attributes:
        mapped: checkpoint key -> model key, for every loaded tensor.
        unmapped: checkpoint keys with no counterpart in the model.
        shape_mismatch: checkpoint key -> (checkpoint shape, model shape).
        missing: model keys the checkpoint did not provide (left at initialisation).
    """

    mapped: dict[str, str] = field(default_factory=dict)
    unmapped: list[str] = field(default_factory=list)
    shape_mismatch: dict[str, tuple] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not (self.unmapped or self.shape_mismatch or self.missing)

    def summary(self) -> str:
        lines = [f"{len(self.mapped)} tensors loaded"]
        for name, items in (("unmapped checkpoint keys", self.unmapped), ("model keys missing from the checkpoint", self.missing)):
            if items:
                lines.append(f"{len(items)} {name}: " + ", ".join(items[:12]) + (" ..." if len(items) > 12 else ""))
        if self.shape_mismatch:
            lines.append(f"{len(self.shape_mismatch)} shape mismatches: " + ", ".join(
                f"{k} {tuple(a)} vs {tuple(b)}" for k, (a, b) in list(self.shape_mismatch.items())[:8]))
        return "; ".join(lines)


def map_key(key: str) -> str:
    """Reloc3r/DUSt3R checkpoint key -> this network's key."""
    for prefix in ("module.", "model."):
        if key.startswith(prefix):
            key = key[len(prefix):]
    if key.startswith("dec_blocks2."):
        key = "dec_blocks." + key[len("dec_blocks2."):]
    if key.startswith("head4."):
        key = "pose_head." + key[len("head4."):]
    return key


def read_state_dict(path: str | Path) -> dict:
    """Tensors of a ``.pth``/``.pt`` (``{"model": ...}`` or flat) or ``.safetensors`` file."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "checkpoint file not found")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise InputError(str(path), "reading .safetensors needs the 'safetensors' package") from None
        return load_file(str(path))
    try:
        st = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file
        raise InputError(str(path), f"cannot read checkpoint: {e}") from None
    if isinstance(st, dict) and isinstance(st.get("model"), dict):
        st = st["model"]
    if not isinstance(st, dict) or not all(hasattr(v, "shape") for v in st.values()):
        raise InputError(str(path), "not a state dict (expected tensors, or {'model': tensors})")
    return st


def load_state_into(model, state: dict, strict: bool = False, name: str = "checkpoint") -> LoadReport:
    """Copy a Reloc3r-format state dict into a :class:`RelPoseRegressor`.

    Raises:
        InputError: ``strict`` and some key could not be mapped / was missing.
    """
    import torch

    own = model.state_dict()
    rep = LoadReport()
    new = {}
    for k, v in state.items():
        mk = map_key(k)
        if mk not in own:
            rep.unmapped.append(k)
        elif tuple(own[mk].shape) != tuple(v.shape):
            rep.shape_mismatch[k] = (tuple(v.shape), tuple(own[mk].shape))
        else:
            rep.mapped[k] = mk
            new[mk] = v.to(own[mk].dtype)
    rep.missing = sorted(set(own) - set(new))
    if strict and not rep.complete:
        raise InputError(name, "checkpoint does not match the network: " + rep.summary())
    with torch.no_grad():
        model.load_state_dict({**own, **new})
    return rep


def guess_config(state: dict, path: str | Path | None = None) -> RegressorConfig:
    """Reloc3r-224 or -512 layout (from the file name; 512 by default), with depths and
    widths read from the tensors so shrunk variants load too."""
    name = Path(path).name.lower() if path else ""
    base = preset("reloc3r-224" if "224" in name else "reloc3r-512").to_dict()
    keys = [map_key(k) for k in state]
    sd = {map_key(k): v for k, v in state.items()}
    if "patch_embed.proj.weight" in sd:
        w = sd["patch_embed.proj.weight"]
        base["enc_dim"], base["patch_size"] = int(w.shape[0]), int(w.shape[-1])
    if "decoder_embed.weight" in sd:
        base["dec_dim"] = int(sd["decoder_embed.weight"].shape[0])
    depth = lambda pre: len({k[len(pre):].split(".")[0] for k in keys if k.startswith(pre)})  # noqa: E731
    base["enc_depth"] = depth("enc_blocks.") or base["enc_depth"]
    base["dec_depth"] = depth("dec_blocks.") or base["dec_depth"]
    if "enc_blocks.0.mlp.fc1.weight" in sd:
        base["mlp_ratio"] = sd["enc_blocks.0.mlp.fc1.weight"].shape[0] / base["enc_dim"]
    if "pose_head.proj.weight" in sd:
        hw = int(sd["pose_head.proj.weight"].shape[0])
        base["head_dim"] = None if hw == 4 * base["patch_size"] ** 2 else hw
    base["head_resconv_blocks"] = depth("pose_head.res_conv.")
    if "pose_head.fc_rot.weight" in sd:
        base["rot_repr"] = "9d" if sd["pose_head.fc_rot.weight"].shape[0] == 9 else "6d"
    base["metric_scale"] = "pose_head.fc_scale.weight" in sd
    # Reloc3r uses 64-dim heads: 1024/16 and 768/12
    base["enc_heads"] = max(1, base["enc_dim"] // 64)
    base["dec_heads"] = max(1, base["dec_dim"] // 64)
    for k in ("img_width", "img_height"):
        base[k] = base[k] // 16 * base["patch_size"]
    return RegressorConfig.from_dict(base)


def load_reloc3r(path_or_state, config: RegressorConfig | None = None, strict: bool = False):
    """Build a regressor and load Reloc3r weights into it.

    Args:
        path_or_state: checkpoint path (.pth/.pt/.safetensors) or a state dict.
        config: the layout; default from :func:`guess_config` (Reloc3r-512 unless the file
            name says 224; depths/widths from the tensors).
        strict: raise :class:`InputError` unless every key maps and nothing is missing.

    Returns:
        (model in eval mode, :class:`LoadReport`).
    """
    from twoview.regress.model import RelPoseRegressor

    path = None
    state = path_or_state
    if not isinstance(state, dict):
        path = path_or_state
        state = read_state_dict(path)
    cfg = config or guess_config(state, path)
    model = RelPoseRegressor(cfg)
    rep = load_state_into(model, state, strict=strict, name=str(path or "state dict"))
    return model.eval(), rep
