"""Inference: :class:`PoseRegressor` (one forward pass per pair, batched for many pairs).

    from twoview.regress import PoseRegressor
    reg = PoseRegressor.from_checkpoint()            # the shipped model
    res = reg.estimate(img0, img1, cam0, cam1, depth0, depth1)

The images are resampled into the model's canonical camera (intrinsics used, unsupported
ones refused: :mod:`twoview.regress.canonical`); with depth, the translation's length comes
from depth at the descriptor matches (:func:`twoview.regress.check.depth_scale`); the
confidence is calibrated (:mod:`twoview.regress.confidence`); images that share no view
are a failure. :func:`estimate` / :func:`estimate_batch` are thin wrappers for callers of
the first API (cameras guessed when not given).
"""

from __future__ import annotations

import time
import warnings
from concurrent.futures import wait
from pathlib import Path

import numpy as np

from twoview._threads import worker
from twoview.errors import BackendUnavailable, InputError, TwoViewWarning
from twoview.result import IDENTICAL_IMAGES, PoseResult, identical_images

#: The shipped checkpoint (see README.md in this folder for what it was trained on).
DEFAULT_CHECKPOINT = Path(__file__).with_name("weights") / "tiny_gcr.pt"


def _torch():
    try:
        import torch
    except ImportError:
        raise BackendUnavailable("pose regression needs torch: pip install 'twoview[learned]'") from None
    return torch


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


def _resolve_checkpoint(checkpoint) -> Path:
    if checkpoint is None:
        if not DEFAULT_CHECKPOINT.is_file():
            raise BackendUnavailable(f"no default regressor checkpoint at {DEFAULT_CHECKPOINT}; pass checkpoint=PATH")
        return DEFAULT_CHECKPOINT
    return Path(checkpoint)


def _read_checkpoint(checkpoint, what: str = "--checkpoint"):
    """(model in eval mode, the checkpoint dict or None for Reloc3r files, path)."""
    _torch()  # no torch: BackendUnavailable before anything else
    path = _resolve_checkpoint(checkpoint)
    st = _load_torch_file(path, what)
    if isinstance(st, dict) and st.get("format") == "twoview-regress":
        from twoview.regress.config import RegressorConfig
        from twoview.regress.model import RelPoseRegressor

        model = RelPoseRegressor(RegressorConfig.from_dict(st["model_config"]))
        model.load_state_dict({k: v.float() for k, v in st["model"].items()})
        return model.eval(), st, path
    from twoview.regress.reloc3r import load_reloc3r

    model, rep = load_reloc3r(path)
    if not rep.complete:
        warnings.warn(f"{path}: {rep.summary()}", category=TwoViewWarning, stacklevel=3)
    return model.eval(), None, path


def load_regressor(checkpoint: str | Path | None = None):
    """The network of a checkpoint (eval mode; a new instance per call).

    Accepts a twoview checkpoint (``model.pt``/``last.pt`` from ``twoview train``) or a
    Reloc3r checkpoint (``.pth`` with ``{"model": ...}`` or ``.safetensors``).

    Raises:
        InputError: the file is missing or unreadable. BackendUnavailable: no default
        checkpoint is installed and none was given.
    """
    return _read_checkpoint(checkpoint)[0]


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


def load_weights_into(model, path: str | Path, state: dict | None = None) -> None:
    """Initialise ``model`` from a twoview or Reloc3r checkpoint (non-strict, reported);
    ``state``: the file's :func:`read_weights`, when already read."""
    from twoview.regress.reloc3r import load_state_into

    state = read_weights(path) if state is None else state
    rep = load_state_into(model, state)
    if not rep.complete:
        warnings.warn(f"init_checkpoint {path}: {rep.summary()}", category=TwoViewWarning, stacklevel=2)


def regress_arrays(model, img0: np.ndarray, img1: np.ndarray, batch_size: int = 32, with_matches: bool = False,
                   depth0: np.ndarray | None = None, depth1: np.ndarray | None = None, onnx=None):
    """Poses for network-size images.

    Args:
        img0, img1: (B, H, W, 3) uint8 at the model's input size.
        with_matches: also return the descriptor cell matches of each batch chunk.
        depth0, depth1: (B, H, W) metres at the input size (NaN invalid) or None; read by
            models with ``depth_tokens`` only.
        onnx: the model's :class:`~twoview.regress.onnx.OnnxNetwork`, used where it gives
            the same poses (both depth maps or neither); None: torch.

    Returns:
        R (B, 3, 3) and t (B, 3) float64, cam1_from_cam0 (and, with ``with_matches``, a
        list of (start index, :func:`~twoview.regress.model.cell_matches` dict) per chunk).
    """
    if onnx is not None and (depth0 is None) == (depth1 is None):
        Rs, ts, chunks = [], [], []
        for s in range(0, len(img0), batch_size):
            sl = slice(s, s + batch_size)
            R, t, m = onnx(img0[sl], img1[sl], None if depth0 is None else depth0[sl], None if depth1 is None else depth1[sl])
            Rs.append(R.astype(np.float64))
            ts.append(t.astype(np.float64))
            chunks.append((s, m))
        R = np.concatenate(Rs) if Rs else np.zeros((0, 3, 3))
        t = np.concatenate(ts) if ts else np.zeros((0, 3))
        return (R, t, chunks) if with_matches else (R, t)
    torch = _torch()
    from twoview.regress.model import cell_matches
    from twoview.regress.train import to_tensor_images

    was = model.training
    model.eval()
    Rs, ts, chunks = [], [], []
    with torch.inference_mode():
        for s in range(0, len(img0), batch_size):
            dev = next(model.parameters()).device
            dd = [None if d is None else torch.as_tensor(np.asarray(d[s:s + batch_size], dtype=np.float32), device=dev)
                  for d in (depth0, depth1)]
            out = model(to_tensor_images(img0[s:s + batch_size]).to(dev), to_tensor_images(img1[s:s + batch_size]).to(dev),
                        False, *dd)
            Rs.append(out["R01"].double().cpu().numpy())
            ts.append(out["t01"].double().cpu().numpy())
            if with_matches:
                m = out.get("matches")
                if m is None and out.get("stem0") is not None:
                    m = cell_matches(out["stem0"], out["stem1"])
                chunks.append((s, m))
    model.train(was)
    if not Rs:
        R, t = np.zeros((0, 3, 3)), np.zeros((0, 3))
    else:
        R, t = np.concatenate(Rs), np.concatenate(ts)
    return (R, t, chunks) if with_matches else (R, t)


#: How the translation is obtained: "regressed" -- the network's direction, its length
#: from depth (:func:`twoview.regress.check.depth_scale`); "depth" -- with both depth maps,
#: the translation that best aligns the matched depth points given the regressed rotation
#: (:func:`twoview.regress.check.aligned_translation`), else as "regressed".
TRANSLATION_MODES = ("regressed", "depth")


class PoseRegressor:
    """A two-view pose regressor that owns its network.

    Build with :meth:`from_checkpoint`; call :meth:`estimate` (one pair) or
    :meth:`estimate_many`.

    Attributes:
        model: the torch network (eval mode). cfg: its RegressorConfig.
        calibration: the :class:`~twoview.regress.confidence.Calibration` stored with
            the checkpoint (a documented prior when it has none).
        metric_without_depth: whether the network's own translation length is reported
            as metric when no depth is given (set in the checkpoint after measuring it;
            False otherwise).
        checkpoint: the file the model came from.
        rigid_from_matches: with both depth maps, the pose is the rigid motion of the
            network's own descriptor cell matches lifted by the depth
            (:func:`twoview.regress.check.rigid_from_matches`: RANSAC and Kabsch with the
            rigid3d solver's thresholds) where at least ``min_inliers`` of them agree, else
            the regressed pose; the regressed one stays in ``info["network_pose"]``. The
            matches come out of the same forward pass: no matcher runs. On the held-out
            fr3_cabinet pairs up to 30 frames apart the median rotation error goes from
            4.05 to 1.65 deg (``benchmarks/results/regress.md``). False: the regressed pose.
        runtime: "onnx" runs the network under onnxruntime (exported once per checkpoint,
            :mod:`twoview.regress.onnx`: the same poses, about twice as fast on a CPU),
            "torch" in torch; "auto" (default): onnx where onnxruntime is installed, the
            model has a descriptor stem and runs on the CPU.
    """

    def __init__(self, model, checkpoint: Path, calibration=None, metric_without_depth: bool = False,
                 translation: str = "regressed", runtime: str = "auto", rigid_from_matches: bool = True):
        from twoview.regress.confidence import Calibration

        if translation not in TRANSLATION_MODES:
            raise InputError("translation", f"expected one of {list(TRANSLATION_MODES)}, got {translation!r}")
        if runtime not in ("auto", "torch", "onnx"):
            raise InputError("runtime", f"expected 'auto', 'torch' or 'onnx', got {runtime!r}")
        self.translation = translation
        self.rigid_from_matches = bool(rigid_from_matches)
        self.runtime = runtime
        self._onnx = None
        self.model = model
        self.cfg = model.cfg
        self.checkpoint = Path(checkpoint)
        self.calibration = Calibration.coerce(calibration)
        self.metric_without_depth = bool(metric_without_depth and self.cfg.metric_scale)
        self._views: dict = {}

    def onnx_network(self):
        """The network under onnxruntime per :attr:`runtime` (exported on first use), or None."""
        if self.runtime == "torch":
            return None
        if self._onnx is None:
            from twoview.onnx_cache import onnxruntime_available
            from twoview.regress.onnx import OnnxNetwork, exported_regressor, onnx_supported

            on_cpu = next(self.model.parameters()).device.type == "cpu"
            usable = onnxruntime_available() and onnx_supported(self.model) and on_cpu
            if not usable:
                if self.runtime == "onnx":
                    raise BackendUnavailable("runtime 'onnx' needs onnxruntime, a model with a descriptor stem, on the CPU")
                self.runtime = "torch"
                return None
            try:
                self._onnx = OnnxNetwork(exported_regressor(self.model, self.checkpoint))
            except Exception as e:  # noqa: BLE001 - an unwritable cache, a failed export or load
                if self.runtime == "onnx":
                    raise BackendUnavailable(f"the regressor under onnxruntime is unavailable: {e}") from None
                warnings.warn(f"the regressor under onnxruntime is unavailable ({e}); running it in torch",
                              category=TwoViewWarning, stacklevel=2)
                self.runtime = "torch"
                return None
        return self._onnx

    @classmethod
    def from_checkpoint(cls, path: str | Path | None = None, translation: str | None = None,
                        runtime: str = "auto", rigid_from_matches: bool = True) -> PoseRegressor:
        """Load a twoview checkpoint (with its calibration) or a Reloc3r one; None = the shipped model.

        ``translation`` (see :data:`TRANSLATION_MODES`; None: the checkpoint's choice,
        else "regressed"); ``runtime``, ``rigid_from_matches``: see the class.

        Raises:
            InputError: naming ``--checkpoint``, a missing or unreadable file.
            BackendUnavailable: no torch, or no shipped checkpoint and no path.
        """
        model, st, p = _read_checkpoint(path)
        st = st or {}
        return cls(model, p, st.get("calibration"), st.get("metric_without_depth", False),
                   translation or st.get("translation", "regressed"), runtime, rigid_from_matches)

    # --- inputs --------------------------------------------------------------------
    def _view(self, camera, name: str):
        from twoview.regress.canonical import network_view

        key = (camera, name)
        if key not in self._views:
            self._views[key] = network_view(camera, self.cfg, name)
        return self._views[key]

    def _prepare(self, image0, image1, camera0, camera1, depth0, depth1, tag: str = "", depth_scale=None) -> dict:
        """Checked inputs at network resolution (view 1 on a worker thread beside view 0:
        decoding, resampling and depth conversion release the GIL)."""
        job = worker("regress").submit(self._prepare_view, image1, camera1, depth1, "1", tag, depth_scale)
        try:
            im0, v0, net0, d0 = self._prepare_view(image0, camera0, depth0, "0", tag, depth_scale)
        except BaseException:
            wait([job])  # view 0's error is reported first, and no job is left running
            raise
        im1, v1, net1, d1 = job.result()
        if not np.allclose(v0.target.K, v1.target.K):
            raise InputError(f"camera1{tag}", "this model ignores intrinsics (resize_mode 'stretch'/'crop') and needs "
                             "two images of one size")
        return {"net0": net0, "net1": net1, "K": v0.target.K, "depth0": d0, "depth1": d1,
                "same": identical_images(im0, im1), "coverage": [v0.coverage, v1.coverage]}

    def _prepare_view(self, image, camera, depth, k: str, tag: str, depth_scale):
        """One view: (image, network view, network image, network depth or None)."""
        from twoview.io.depth import as_depth_map
        from twoview.view import as_camera

        im = _as_image(image, f"image{k}{tag}")
        # the cameras the rest of the API takes (Camera, K, (fx, fy, cx, cy), None: EXIF or a guess)
        cam = as_camera(camera, im, image, f"camera{k}{tag}")
        v = self._view(cam, f"camera{k}{tag}")
        d = None if depth is None else v.depth(as_depth_map(depth, cam.size, depth_scale, f"depth{k}{tag}"),
                                               f"depth{k}{tag}")
        return im, v, v.image(im, f"image{k}{tag}"), d

    # --- estimation ------------------------------------------------------------------
    def estimate(self, image0, image1, camera0=None, camera1=None, depth0=None, depth1=None,
                 depth_scale: float | None = None) -> PoseResult:
        """Relative pose cam1_from_cam0 by regression (one forward pass, no matching solver).

        Args:
            image0, image1: RGB uint8 (H, W, 3) arrays (or paths).
            camera0, camera1: each image's camera: a :class:`twoview.Camera`, a 3x3 K,
                ``(fx, fy, cx, cy)`` or None (EXIF focal length, else a 65 deg field-of-view
                guess, with a warning), as :func:`twoview.estimate_relative_pose` takes them.
            depth0, depth1: (H, W) depth in metres, NaN invalid, or None; or integer maps /
                depth files with ``depth_scale`` units per metre (1000 for millimetres).

        Returns:
            :class:`PoseResult` (solver "regress"). With depth, the translation's length is
            measured from depth (``info["scale_source"]``) and ``metric`` is True; without,
            it is a unit direction (``metric`` False) unless the checkpoint states its own
            length is trustworthy. ``confidence`` is the calibrated probability that the
            pose is within 5 deg and 10 cm (10 deg direction without depth);
            ``num_matches`` / ``num_inliers`` count the mutual descriptor matches and those
            on the pose's epipolar lines (12 px). Images sharing no view: a failure.

        Raises:
            InputError: bad images, cameras or depth (naming the argument), or a camera
            outside what the model supports.
        """
        return self.estimate_many([dict(image0=image0, image1=image1, camera0=camera0, camera1=camera1,
                                        depth0=depth0, depth1=depth1, depth_scale=depth_scale)], batch_size=1)[0]

    def estimate_many(self, items, batch_size: int = 16) -> list[PoseResult]:
        """:meth:`estimate` for many pairs: ``items`` are dicts of its arguments."""
        t0 = time.perf_counter()
        items = _guess_cameras(list(items))
        prepared = []
        for i, it in enumerate(items):
            tag = f" (pair {i})" if len(items) > 1 else ""
            prepared.append(self._prepare(it.get("image0"), it.get("image1"), it.get("camera0"), it.get("camera1"),
                                          it.get("depth0"), it.get("depth1"), tag, it.get("depth_scale")))
        if not prepared:
            return []
        t1 = time.perf_counter()
        depths = [None, None]
        for v in (0, 1):  # missing maps as all-invalid ones (the network reads NaN as "no depth")
            if any(p[f"depth{v}"] is not None for p in prepared):
                H, W = prepared[0]["net0"].shape[:2]
                depths[v] = np.stack([p[f"depth{v}"] if p[f"depth{v}"] is not None else np.full((H, W), np.nan, np.float32)
                                      for p in prepared])
        R, t, chunks = regress_arrays(self.model, np.stack([p["net0"] for p in prepared]),
                                      np.stack([p["net1"] for p in prepared]), batch_size, True, *depths,
                                      onnx=self.onnx_network())
        t2 = time.perf_counter()
        out = []
        for k, p in enumerate(prepared):
            start, m = max((c for c in chunks if c[0] <= k), key=lambda c: c[0])
            out.append(self._result(p, R[k], t[k], m, k - start))
        t3 = time.perf_counter()
        n = len(prepared)
        for r in out:
            r.timings_ms.update({"preprocess": 1e3 * (t1 - t0) / n, "regress": 1e3 * (t2 - t1) / n,
                                 "check": 1e3 * (t3 - t2) / n})
        return out

    def _result(self, p: dict, R: np.ndarray, t: np.ndarray, matches, index: int) -> PoseResult:
        from twoview.geometry.pose import Pose
        from twoview.geometry.rotation import project_to_so3
        from twoview.regress.check import agreement, aligned_translation, matched_pixels, rigid_from_matches
        from twoview.regress.confidence import confidence, no_overlap_reason

        if p["same"]:
            return PoseResult.failure(IDENTICAL_IMAGES, solver="regress")
        if not (np.all(np.isfinite(R)) and np.all(np.isfinite(t))):
            return PoseResult.failure("regressor produced a non-finite pose", solver="regress")
        info = {"checkpoint": str(self.checkpoint), "input_size": [self.cfg.img_width, self.cfg.img_height],
                "canonical_coverage": p["coverage"]}
        if matches is None:  # a model without a descriptor stem (Reloc3r layouts): nothing to check against
            metric = bool(self.cfg.metric_scale and self.metric_without_depth)
            T = t if metric else t / max(np.linalg.norm(t), 1e-12)
            info["scale_source"] = "network" if metric else "none"
            return PoseResult(success=True, cam1_from_cam0=Pose(project_to_so3(R), T), metric=metric, solver="regress",
                              confidence=0.5, info={**info, "confidence": "no descriptor matches to check against"})
        H, W = p["net0"].shape[:2]
        p0, p1, cells, coherent = matched_pixels(matches, index, W, H)
        info["translation"] = "regressed direction"
        rigid = rigid_from_matches(p0, p1, p["K"], p["depth0"], p["depth1"]) if self.rigid_from_matches else None
        if rigid is not None:
            info["network_pose"] = {"R": R.tolist(), "t_direction": (t / max(np.linalg.norm(t), 1e-12)).tolist()}
            R, t, n_rigid = rigid
            info["pose_source"] = f"rigid motion of {n_rigid} cell matches with depth"
            info["translation"] = "rigid motion of the cell matches with depth"
        else:
            info["pose_source"] = "network"
        if rigid is None and self.translation == "depth":
            t_aligned = aligned_translation(R, p0, p1, p["K"], p["depth0"], p["depth1"])
            if t_aligned is not None and np.linalg.norm(t_aligned) > 1e-6:
                t, info["translation"] = t_aligned, "aligned from depth given the regressed rotation"
        a = agreement(R, t, p0, p1, p["K"], cells, p["depth0"], p["depth1"], coherent)
        info["agreement"] = a.to_dict()
        reason = no_overlap_reason(a, self.calibration)
        if reason:
            return PoseResult.failure(reason, solver="regress", num_matches=a.num_matches, info=info)
        tdir = t / max(np.linalg.norm(t), 1e-12)
        if rigid is not None:  # metres already
            T, metric, info["scale_source"] = t, True, "rigid motion of the cell matches with depth"
        elif a.scale is not None and a.scale > 0:
            T, metric, info["scale_source"] = tdir * a.scale, True, a.scale_source
        elif a.scale is not None:
            info["scale_source"] = f"{a.scale_source} (negative: the regressed direction points away from the depth)"
            T, metric = tdir, False
        elif self.metric_without_depth:
            T, metric, info["scale_source"] = t, True, "network"
        else:
            T, metric, info["scale_source"] = tdir, False, "none"
        return PoseResult(success=True, cam1_from_cam0=Pose(project_to_so3(R), T), metric=metric, solver="regress",
                          num_matches=a.num_matches, num_inliers=int(round(a.epipolar[1] * a.num_matches)),
                          confidence=confidence(a, self.calibration), info=info)


def _as_image(x, name: str) -> np.ndarray:
    from twoview.io.images import check_image_array, load_image

    if isinstance(x, (str, Path)):
        return load_image(x, name)
    if x is None:
        raise InputError(name, "missing image")
    img = check_image_array(np.asarray(x), name)
    return np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img


def _guess_cameras(items: list[dict]) -> list[dict]:
    """``items`` with the field-of-view guess as the camera of each in-memory image given
    none, and one warning per view for the whole call (not one per pair: a batch of 1,000
    pairs without intrinsics would print 2,000 lines). Paths are left to
    :func:`twoview.view.as_camera` (EXIF first)."""
    from twoview.geometry.camera import DEFAULT_HFOV_DEG, Camera
    from twoview.view import warn_fov_guess

    guessed: dict[int, list[int]] = {0: [], 1: []}
    out = []
    for i, it in enumerate(items):
        it = dict(it)
        for k in (0, 1):
            image = it.get(f"image{k}")
            if it.get(f"camera{k}") is None and isinstance(image, np.ndarray) and image.ndim in (2, 3) and image.size:
                it[f"camera{k}"] = Camera.from_fov(DEFAULT_HFOV_DEG, image.shape[1], image.shape[0], source="fov-guess")
                guessed[k].append(i)
        out.append(it)
    for k, which in guessed.items():
        if which:
            where = "" if len(items) == 1 else (f" (pair {which[0]})" if len(which) == 1 else
                                                 f" ({len(which)} of {len(items)} pairs, first {which[0]})")
            warn_fov_guess(f"camera{k}{where}", stacklevel=3)
    return out


def estimate_batch(pairs, checkpoint: str | Path | None = None, batch_size: int = 16) -> list[PoseResult]:
    """Regressed poses of many pairs (the first API; cameras guessed, no depth).

    Args:
        pairs: iterable of (image0, image1), each a path or an RGB uint8 (H, W, 3) array.
        checkpoint: twoview or Reloc3r checkpoint; None = the shipped model.
    """
    reg = PoseRegressor.from_checkpoint(checkpoint)
    return reg.estimate_many([dict(image0=a, image1=b) for a, b in pairs], batch_size)


def estimate(image0, image1, checkpoint: str | Path | None = None, camera0=None, camera1=None, depth0=None,
             depth1=None, depth_scale: float | None = None) -> PoseResult:
    """One pair with a freshly loaded :class:`PoseRegressor` (see :meth:`PoseRegressor.estimate`;
    build the regressor once for many pairs)."""
    return PoseRegressor.from_checkpoint(checkpoint).estimate(image0, image1, camera0, camera1, depth0, depth1,
                                                              depth_scale)
