"""Inference: one forward pass per pair, batched for many pairs."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from twoview.errors import BackendUnavailable, InputError
from twoview.result import IDENTICAL_IMAGES, PoseResult, identical_images

#: The shipped tiny checkpoint (trained with GCR on ICL-NUIM livingroom1 frames 0-150).
DEFAULT_CHECKPOINT = Path(__file__).with_name("weights") / "tiny_gcr.pt"

_CACHE: dict = {}
_LOCK = threading.Lock()


def _torch():
    try:
        import torch
    except ImportError:
        raise BackendUnavailable("pose regression needs torch: pip install 'twoview[learned]'") from None
    return torch


def load_regressor(checkpoint: str | Path | None = None):
    """Model (eval mode, cached per path) and whether its translation is metric.

    Accepts a twoview checkpoint (``model.pt``/``last.pt`` from ``twoview train``) or a
    Reloc3r checkpoint (``.pth`` with ``{"model": ...}`` or ``.safetensors``).

    Raises:
        InputError: the file is missing or unreadable. BackendUnavailable: no default
        checkpoint is installed and none was given.
    """
    _torch()  # no torch: BackendUnavailable before anything else
    if checkpoint is None:
        if not DEFAULT_CHECKPOINT.is_file():
            raise BackendUnavailable(f"no default regressor checkpoint at {DEFAULT_CHECKPOINT}; pass checkpoint=PATH")
        checkpoint = DEFAULT_CHECKPOINT
    path = Path(checkpoint)
    key = str(path.resolve()) if path.exists() else str(path)
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
        model = None
        st = _load_torch_file(path, "--checkpoint")
        if isinstance(st, dict) and st.get("format") == "twoview-regress":
            from twoview.regress.config import RegressorConfig
            from twoview.regress.model import RelPoseRegressor

            model = RelPoseRegressor(RegressorConfig.from_dict(st["model_config"]))
            model.load_state_dict({k: v.float() for k, v in st["model"].items()})
        if model is None:
            from twoview.regress.reloc3r import load_reloc3r

            model, rep = load_reloc3r(path)
            if not rep.complete:
                import warnings

                warnings.warn(f"{path}: {rep.summary()}")
        model.eval()
        _CACHE[key] = model
        return model


def read_weights(path: str | Path, what: str = "init_checkpoint") -> dict:
    """The state dict of a twoview or Reloc3r checkpoint.

    Raises:
        InputError: naming ``what``, when the file is missing or unreadable.
    """
    _torch()
    from twoview.regress.reloc3r import read_state_dict

    path = Path(path)
    st = _load_torch_file(path, what)
    if isinstance(st, dict) and st.get("format") == "twoview-regress":
        return st["model"]
    try:
        return read_state_dict(path)
    except Exception as e:  # noqa: BLE001 -- pickle, zip and safetensors raise many kinds
        raise InputError(what, f"cannot read {path}: {e}") from None


def _load_torch_file(path: Path, what: str):
    """``torch.load`` of a .pt/.pth checkpoint (None for other suffixes); a missing or
    unreadable file is an InputError naming ``what``."""
    if not path.is_file():
        raise InputError(what, f"checkpoint file not found: {path}")
    if path.suffix not in (".pt", ".pth"):
        return None
    try:
        return _torch().load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 -- pickle and zip errors of many kinds
        raise InputError(what, f"cannot read {path}: {e}") from None


def load_weights_into(model, path: str | Path, state: dict | None = None) -> None:
    """Initialise ``model`` from a twoview or Reloc3r checkpoint (non-strict, reported);
    ``state``: the file's :func:`read_weights`, when already read."""
    from twoview.regress.reloc3r import load_state_into

    state = read_weights(path) if state is None else state
    rep = load_state_into(model, state)
    if not rep.complete:
        import warnings

        warnings.warn(f"init_checkpoint {path}: {rep.summary()}")


def preprocess(image: np.ndarray, cfg) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> network-size RGB uint8 (cfg.img_height, cfg.img_width, 3)."""
    from twoview.regress.data import resize_image

    return resize_image(image, cfg.img_width, cfg.img_height, cfg.resize_mode)[0]


def regress_arrays(model, img0: np.ndarray, img1: np.ndarray, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Poses for network-size images.

    Args:
        img0, img1: (B, H, W, 3) uint8 at the model's input size.

    Returns:
        R (B, 3, 3) and t (B, 3) float64, cam1_from_cam0.
    """
    torch = _torch()
    from twoview.regress.train import to_tensor_images

    was = model.training
    model.eval()
    Rs, ts = [], []
    with torch.inference_mode():
        for s in range(0, len(img0), batch_size):
            dev = next(model.parameters()).device
            out = model(to_tensor_images(img0[s:s + batch_size]).to(dev), to_tensor_images(img1[s:s + batch_size]).to(dev),
                        both=False)
            Rs.append(out["R01"].double().cpu().numpy())
            ts.append(out["t01"].double().cpu().numpy())
    model.train(was)
    if not Rs:
        return np.zeros((0, 3, 3)), np.zeros((0, 3))
    return np.concatenate(Rs), np.concatenate(ts)


def _as_image(x, name: str) -> np.ndarray:
    from twoview.io.images import check_image_array, load_image

    if isinstance(x, (str, Path)):
        return load_image(x, name)
    img = check_image_array(np.asarray(x), name)
    return np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img


def estimate_batch(pairs, checkpoint: str | Path | None = None, batch_size: int = 16) -> list[PoseResult]:
    """Regressed poses of many pairs.

    Args:
        pairs: iterable of (image0, image1), each a path or an RGB uint8 (H, W, 3) array.
        checkpoint: twoview or Reloc3r checkpoint; None = the shipped tiny model.

    Returns:
        one :class:`PoseResult` per pair (solver "regress"; ``metric`` True when the model
        predicts a metric scale). Non-finite network output is a failure, never identity.
    """
    model = load_regressor(checkpoint)
    cfg = model.cfg
    t0 = time.perf_counter()
    a, b, same = [], [], []
    for i, (im0, im1) in enumerate(pairs):
        x0, x1 = _as_image(im0, f"image0 (pair {i})"), _as_image(im1, f"image1 (pair {i})")
        same.append(identical_images(x0, x1))
        a.append(preprocess(x0, cfg))
        b.append(preprocess(x1, cfg))
    t1 = time.perf_counter()
    if not a:
        return []
    R, t = regress_arrays(model, np.stack(a), np.stack(b), batch_size)
    t2 = time.perf_counter()
    n = len(a)
    out = []
    from twoview.geometry.pose import Pose

    for i in range(n):
        if same[i]:
            out.append(PoseResult.failure(IDENTICAL_IMAGES, solver="regress"))
            continue
        if not (np.all(np.isfinite(R[i])) and np.all(np.isfinite(t[i]))):
            out.append(PoseResult.failure("regressor produced a non-finite pose", solver="regress"))
            continue
        out.append(PoseResult(
            success=True, cam1_from_cam0=Pose.from_matrix(np.c_[R[i], t[i]]), metric=bool(cfg.metric_scale),
            solver="regress", confidence=0.5,
            timings_ms={"preprocess": 1000 * (t1 - t0) / n, "regress": 1000 * (t2 - t1) / n},
            info={"checkpoint": str(checkpoint or DEFAULT_CHECKPOINT), "input_size": [cfg.img_width, cfg.img_height]},
        ))
    return out


def estimate(image0, image1, checkpoint: str | Path | None = None) -> PoseResult:
    """Relative pose cam1_from_cam0 of two images by regression (no matching, no intrinsics).

    Args:
        image0, image1: paths or RGB uint8 (H, W, 3) arrays.
        checkpoint: twoview/Reloc3r checkpoint; None = the shipped tiny model.

    Returns:
        :class:`PoseResult` with solver "regress"; ``metric`` is True for models with a
        metric scale output (the tiny ones), False for Reloc3r layouts (direction only).
        ``confidence`` is a constant 0.5: the regressor has no uncertainty output.
    """
    return estimate_batch([(image0, image1)], checkpoint, batch_size=1)[0]
