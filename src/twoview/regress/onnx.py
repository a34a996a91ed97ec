"""The regressor's network under onnxruntime: the same poses, about twice as fast on a CPU.

At batch size 1 on two cores the torch forward pass of the shipped model takes about
32 ms; onnxruntime runs the same graph in about half that. The graph is exported once per
checkpoint file (torch's tracer, opset 17) into ``$TWOVIEW_CACHE/onnx`` (default
``~/.cache/twoview/onnx``), in a folder named after the checkpoint's path, size and time,
the export format and onnxruntime's version, and reused by every later process.

The graph takes both depth maps (NaN where there is none): the network reads a missing
map as an all-invalid one when the other view has none either, so a pair with both maps
or with neither runs here. A pair with one map only runs in torch (the network then
treats the two directions differently). Models without a descriptor stem (Reloc3r
layouts) run in torch too.
"""

from __future__ import annotations

import hashlib
import shutil
import time
import warnings
from pathlib import Path

import numpy as np

EXPORT_FORMAT = 1
_MATCH_KEYS = ("grid", "uv_ab", "conf_ab", "mutual_ab", "uv_ba", "conf_ba", "mutual_ba")


def onnx_supported(model) -> bool:
    """Whether :class:`OnnxNetwork` can run ``model`` (a descriptor stem: the checks need its matches)."""
    return getattr(model, "stem", None) is not None


def _key(checkpoint: Path) -> str:
    import onnxruntime as ort

    st = checkpoint.stat()
    text = f"twoview-regress-onnx-{EXPORT_FORMAT}-ort-{ort.__version__}|{checkpoint.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _export(model, dest: Path) -> None:
    """Trace ``model`` (a RelPoseRegressor in eval mode) into ``dest/model.onnx``."""
    import torch

    from twoview.regress.model import IMG_MEAN, IMG_STD, cell_matches

    class Exported(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, img0, img1, depth0, depth1):
            # uint8 (B, H, W, 3) -> normalised (B, 3, H, W), as twoview.regress.train.to_tensor_images
            x0 = (img0.permute(0, 3, 1, 2).float() / 255.0 - IMG_MEAN) / IMG_STD
            x1 = (img1.permute(0, 3, 1, 2).float() / 255.0 - IMG_MEAN) / IMG_STD
            out = self.net(x0, x1, False, depth0, depth1)
            m = out["matches"] if out.get("matches") is not None else cell_matches(out["stem0"], out["stem1"])
            return (out["R01"], out["t01"], *(m[k] for k in _MATCH_KEYS))

    cfg = model.cfg
    H, W = cfg.img_height, cfg.img_width
    g = torch.Generator().manual_seed(0)
    img = torch.randint(0, 255, (1, H, W, 3), generator=g, dtype=torch.uint8)
    depth = 1.0 + torch.rand(1, H, W, generator=g)
    net = Exported(model).eval().requires_grad_(False)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net, (img, img.flip(2), depth, depth.flip(2)), str(dest / "model.onnx"), dynamo=False, opset_version=17,
            input_names=["image0", "image1", "depth0", "depth1"], output_names=["R01", "t01", *_MATCH_KEYS],
            dynamic_axes={**{k: {0: "B"} for k in ("image0", "image1", "depth0", "depth1", "R01", "t01")},
                          **{k: {0: "B"} for k in _MATCH_KEYS if k != "grid"}},
        )


def exported_regressor(model, checkpoint: Path) -> Path:
    """The folder with ``model.onnx`` for ``checkpoint``, exported from ``model`` when missing
    (:func:`twoview.onnx_cache.export_once`: whole or absent)."""
    from twoview.onnx_cache import cache_root, export_once, optimise

    checkpoint = Path(checkpoint)

    def write(tmp: Path) -> dict:
        (tmp / "traced").mkdir()
        _export(model, tmp / "traced")
        optimise(tmp / "traced" / "model.onnx", tmp / "model.onnx")
        shutil.rmtree(tmp / "traced")
        return {"format": EXPORT_FORMAT, "checkpoint": str(checkpoint.resolve()),
                "input_size": [model.cfg.img_width, model.cfg.img_height],
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    return export_once(cache_root() / f"regress-{_key(checkpoint)}", write, "regressor graph", "use runtime='torch'")

class OnnxNetwork:
    """The exported network: uint8 images (B, H, W, 3) and depth maps (B, H, W) or None ->
    R01 (B, 3, 3), t01 (B, 3) and the descriptor cell matches (numpy, the keys of
    :func:`twoview.regress.model.cell_matches`)."""

    def __init__(self, folder: Path):
        from twoview.onnx_cache import session

        self.session = session(folder / "model.onnx", layout_optimisations=True)
        # a model without depth tokens has no use for the depth inputs: the export drops them
        self._inputs = {i.name for i in self.session.get_inputs()}

    def __call__(self, img0: np.ndarray, img1: np.ndarray, depth0: np.ndarray | None, depth1: np.ndarray | None):
        B, H, W = img0.shape[:3]
        missing = np.full((B, H, W), np.nan, np.float32)
        feed = {"image0": np.ascontiguousarray(img0, np.uint8), "image1": np.ascontiguousarray(img1, np.uint8),
                "depth0": missing if depth0 is None else np.asarray(depth0, np.float32),
                "depth1": missing if depth1 is None else np.asarray(depth1, np.float32)}
        out = self.session.run(None, {k: v for k, v in feed.items() if k in self._inputs})
        return out[0], out[1], dict(zip(_MATCH_KEYS, out[2:]))
