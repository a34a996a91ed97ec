"""Monocular metric depth from one photo, through Hugging Face transformers.

Supported architectures (whatever the installed transformers provides):

- ``depth_anything`` with ``depth_estimation_type="metric"`` (Depth Anything V2 metric),
  e.g. ``depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf`` or ``...-Outdoor-...``.
  Output is metres directly. Relative (disparity) checkpoints are refused.
- ``depth_pro`` (Apple Depth Pro), e.g. ``apple/DepthPro-hf``. The network predicts a
  canonical inverse depth; metres follow from the focal length: the camera's when it is
  known, else the model's field-of-view head, else the camera's guessed focal.
- ``zoedepth``, e.g. ``Intel/zoedepth-nyu-kitti``. Output is metres.

Models load from a local folder (``save_pretrained`` layout) or a hub id already in the
Hugging Face cache; nothing is downloaded unless ``allow_download=True``. Pre- and
post-processing follow each model's image processor (its ``preprocessor_config.json``:
size, mean, std) but run here in torch, because the transformers image processors of
some of these models need torchvision, which twoview does not install.

Predictions are cached on disk as float32 ``.npy`` keyed by the image content, the
model's weights and the resolution (atomic writes), so benchmarks and repeated CLI runs
pay for inference once.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from twoview.config import StrictConfig
from twoview.errors import BackendUnavailable, ConfigError, InputError
from twoview.geometry.camera import Camera

SUPPORTED_MODEL_TYPES = ("depth_anything", "depth_pro", "zoedepth")

#: Known metric checkpoints (for messages and docs; any compatible folder works).
KNOWN_MODELS = (
    "depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf",
    "depth-anything/Depth-Anything-V2-Metric-Indoor-Base-hf",
    "depth-anything/Depth-Anything-V2-Metric-Indoor-Large-hf",
    "depth-anything/Depth-Anything-V2-Metric-Outdoor-Small-hf",
    "depth-anything/Depth-Anything-V2-Metric-Outdoor-Base-hf",
    "depth-anything/Depth-Anything-V2-Metric-Outdoor-Large-hf",
    "apple/DepthPro-hf",
    "Intel/zoedepth-nyu-kitti",
    "Intel/zoedepth-nyu",
    "Intel/zoedepth-kitti",
)

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def default_cache_dir() -> Path:
    """``$TWOVIEW_CACHE/depth`` or ``~/.cache/twoview/depth``."""
    from twoview._cache import cache_dir

    return cache_dir("depth")


@dataclass
class DepthModelConfig(StrictConfig):
    """A monocular metric depth model.

    Attributes:
        model: a local folder (``save_pretrained`` layout) or a Hugging Face hub id.
        resolution: network input size: the shorter image side for Depth Anything
            (rounded to the patch size) and ZoeDepth (rounded to 32). None: the model's
            image-processor default (518 / 384). Depth Pro always runs at its fixed size.
        allow_download: let transformers download a hub id that is not cached.
        cache_dir: where predictions are cached; None: :func:`default_cache_dir`;
            "" disables the cache.
        device: torch device.
        num_threads: torch CPU threads during inference (None: leave torch's setting).
    """

    model: str = "depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf"
    resolution: int | None = None
    allow_download: bool = False
    cache_dir: str | None = None
    device: str = "cpu"
    num_threads: int | None = None

    def validate(self):
        if not self.model:
            raise ConfigError("depth model: must name a folder or hub id")
        if self.resolution is not None and not 32 <= self.resolution <= 4096:
            raise ConfigError(f"depth model resolution must be in [32, 4096], got {self.resolution}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ConfigError("depth model num_threads must be >= 1")


def _import_transformers():
    try:
        import torch  # noqa: F401
        import transformers
    except ImportError as e:
        raise BackendUnavailable(
            f"monocular depth models need torch and transformers ({e}); install them with "
            "pip install 'twoview[depth]'"
        ) from None
    return transformers


def _missing_model_message(model: str) -> str:
    return (
        f"depth model {model!r} is neither a local folder nor available offline in the Hugging Face cache "
        f"(model weights cannot be downloaded here). On a machine with internet run "
        f"`python -c \"from transformers import AutoModelForDepthEstimation as M; "
        f"M.from_pretrained('{model}').save_pretrained('DIR')\"` "
        f"(or `huggingface-cli download {model} --local-dir DIR`), copy DIR here and pass it as "
        f"--depth-model DIR. Known metric models: {', '.join(KNOWN_MODELS[:1] + KNOWN_MODELS[6:8])}, ..."
    )


class MonocularDepthEstimator:
    """Metric depth (metres) for an RGB image with one of the supported networks.

    Use :func:`load_depth_estimator`; call :meth:`predict`.
    """

    def __init__(self, cfg: DepthModelConfig, model, processor_config: dict, model_type: str):
        self.cfg = cfg
        self.model = model
        self.model_type = model_type
        self.proc = processor_config
        self._fingerprint: str | None = None

    # ------------------------------------------------------------------ identity
    @property
    def fingerprint(self) -> str:
        """Hash of the model's config and weights (the cache key's model part)."""
        if self._fingerprint is None:
            import torch

            h = hashlib.sha256()
            h.update(json.dumps(self.model.config.to_dict(), sort_keys=True, default=str).encode())
            h.update(json.dumps(self.proc, sort_keys=True, default=str).encode())
            with torch.no_grad():
                for name, p in self.model.state_dict().items():
                    h.update(name.encode())
                    t = p.detach().double()
                    h.update(np.array([float(t.sum()), float(t.abs().sum()), float((t * t).sum())]).tobytes())
            self._fingerprint = h.hexdigest()[:24]
        return self._fingerprint

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """Network input (height, width) for an image of ``height x width``."""
        if self.model_type == "depth_pro":
            size = self.proc.get("size") or {}
            c = self.model.config
            default = int(round(c.patch_size / min(c.scaled_images_ratios)))
            return int(size.get("height", default)), int(size.get("width", default))
        if self.model_type == "depth_anything":
            multiple = int(getattr(self.model.config.backbone_config, "patch_size", 14))
            default = int((self.proc.get("size") or {}).get("height", 518))
        else:  # zoedepth: BEiT patch 16, DPT neck halves 4 times -> multiple of 32
            multiple = 32
            default = int((self.proc.get("size") or {}).get("height", 384))
            pad_h, pad_w = _zoe_padding(height, width) if self.proc.get("do_pad", True) else (0, 0)
            height, width = height + 2 * pad_h, width + 2 * pad_w
        r = self.cfg.resolution or default
        scale = r / min(height, width)
        h = max(multiple, int(round(height * scale / multiple)) * multiple)
        w = max(multiple, int(round(width * scale / multiple)) * multiple)
        return h, w

    # ---------------------------------------------------------------- inference
    def predict(self, image: np.ndarray, camera: Camera | None = None) -> np.ndarray:
        """Metric depth of ``image``.

        Args:
            image: RGB uint8 (H, W, 3) (grey (H, W) is replicated).
            camera: intrinsics of the image; Depth Pro converts its output to metres with
                the focal length (a "fov-guess" camera defers to the model's own
                field-of-view head when it has one).

        Returns:
            (H, W) float64 metres; NaN where the network gives no valid depth (a
            non-positive or beyond-10-km value), > 0 elsewhere.
        """
        return self.predict_with_info(image, camera)[0]

    def predict_with_info(self, image: np.ndarray, camera: Camera | None = None) -> tuple[np.ndarray, dict]:
        """:meth:`predict` plus a dict: ``model``, ``cached``, ``input_size``, ``focal_px`` (Depth Pro)."""
        img = _as_rgb(image)
        H, W = img.shape[:2]
        if camera is not None and (camera.width, camera.height) != (W, H):
            raise InputError("camera", f"is for a {camera.width}x{camera.height} image but the image is {W}x{H}")
        focal, focal_src = self._focal(camera, W)
        key = self._cache_key(img, focal)
        path = self._cache_path(key)
        info = {"model": self.cfg.model, "model_type": self.model_type, "input_size": list(self.input_size(H, W))}
        if self.model_type == "depth_pro":
            info["focal_source"] = focal_src
        if path is not None and path.is_file():
            try:
                d = np.load(path, allow_pickle=False).astype(np.float64)
                if d.shape == (H, W):
                    info["cached"] = True
                    if focal_src == "fov-head":
                        info["focal_px"] = None
                    return d, info
            except Exception:  # a corrupt cache entry is recomputed and overwritten
                pass
        d, extra = self._infer(img, focal, None if camera is None else float(camera.fx))
        info.update(extra)
        info["cached"] = False
        if path is not None:
            from twoview.io.atomic import atomic_write_bytes

            buf = io.BytesIO()
            np.save(buf, d.astype(np.float32))
            atomic_write_bytes(path, buf.getvalue())
        return d, info

    def _focal(self, camera: Camera | None, width: int) -> tuple[float | None, str]:
        if self.model_type != "depth_pro":
            return None, ""
        has_fov = bool(getattr(self.model, "fov_model", None) is not None)
        if camera is not None and (camera.source != "fov-guess" or not has_fov):
            return float(camera.fx), f"camera ({camera.source})"
        if has_fov:
            return None, "fov-head"
        raise InputError(
            "camera", "Depth Pro needs the focal length to give metres: pass the intrinsics (this checkpoint has no field-of-view head)"
        )

    def _cache_key(self, img: np.ndarray, focal: float | None) -> str:
        h = hashlib.sha256()
        h.update(str(img.shape).encode())
        h.update(np.ascontiguousarray(img).tobytes())
        h.update(self.fingerprint.encode())
        H, W = img.shape[:2]
        h.update(str(self.input_size(H, W)).encode())
        h.update(repr(None if focal is None else round(focal, 6)).encode())
        return h.hexdigest()[:32]

    def _cache_path(self, key: str) -> Path | None:
        if self.cfg.cache_dir == "":
            return None
        base = Path(self.cfg.cache_dir) if self.cfg.cache_dir else default_cache_dir()
        return base / key[:2] / f"{key}.npy"

    def preprocess(self, image: np.ndarray):
        """The network input (1, 3, h, w) float32 torch tensor for an RGB uint8 image: the
        model's image-processor steps (resize keeping the aspect ratio to the size of
        :meth:`input_size`, ZoeDepth's reflect padding, rescale to [0, 1], normalise)."""
        import torch
        import torch.nn.functional as F

        img = _as_rgb(image)
        H, W = img.shape[:2]
        x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 255.0
        mean = torch.tensor(self.proc.get("image_mean") or _default_mean(self.model_type)).view(1, 3, 1, 1)
        std = torch.tensor(self.proc.get("image_std") or _default_std(self.model_type)).view(1, 3, 1, 1)
        h_in, w_in = self.input_size(H, W)
        if self.model_type == "depth_anything":
            x = F.interpolate(x, size=(h_in, w_in), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
            return (x - mean) / std
        if self.model_type == "zoedepth":
            pad_h, pad_w = _zoe_padding(H, W) if self.proc.get("do_pad", True) else (0, 0)
            if pad_h or pad_w:
                x = F.pad(x, (pad_w, pad_w, pad_h, pad_h), mode="reflect")
            x = F.interpolate(x, size=(h_in, w_in), mode="bilinear", align_corners=True)
            return (x - mean) / std
        # depth_pro: normalise first, then resize (as its image processor does)
        x = (x - mean) / std
        return F.interpolate(x, size=(h_in, w_in), mode="bilinear", align_corners=False)

    def _infer(self, img: np.ndarray, focal: float | None, camera_focal: float | None = None) -> tuple[np.ndarray, dict]:
        import torch
        import torch.nn.functional as F

        H, W = img.shape[:2]
        old_threads = torch.get_num_threads()
        if self.cfg.num_threads:
            torch.set_num_threads(self.cfg.num_threads)
        try:
            extra: dict = {}
            x = self.preprocess(img).to(self.cfg.device)
            pad_h, pad_w = _zoe_padding(H, W) if self.model_type == "zoedepth" and self.proc.get("do_pad", True) else (0, 0)
            with torch.no_grad():
                out = self.model(pixel_values=x)
            pred = out.predicted_depth.detach().float().cpu()
            if pred.ndim == 3:
                pred = pred[:, None]
            if self.model_type == "zoedepth" and (pad_h or pad_w):
                # remove the padding in proportion to the padded input size
                ph, pw = pred.shape[-2:]
                top = int(round(pad_h * ph / (H + 2 * pad_h)))
                left = int(round(pad_w * pw / (W + 2 * pad_w)))
                pred = pred[..., top : ph - top, left : pw - left]
            if self.model_type == "depth_pro":
                fov = getattr(out, "field_of_view", None)
                if focal is None:
                    fov_deg = float(fov.reshape(-1)[0]) if fov is not None else float("nan")
                    extra["fov_deg"] = fov_deg
                    if np.isfinite(fov_deg) and 5.0 < fov_deg < 175.0:
                        focal = 0.5 * W / np.tan(0.5 * np.radians(fov_deg))
                    elif camera_focal is not None:  # implausible field of view: keep the guess
                        focal = camera_focal
                        extra["focal_source"] = "camera (fov-guess; the fov head gave an implausible value)"
                    else:
                        raise InputError("camera", f"Depth Pro's field-of-view head gave {fov_deg:.3g} deg; pass the intrinsics")
                extra["focal_px"] = float(focal)
                inv = F.interpolate(pred, size=(H, W), mode="bilinear", align_corners=False)[0, 0]
                inv = inv * (W / focal)  # canonical inverse depth -> inverse metres
                depth = torch.where(inv > 1e-4, 1.0 / inv.clamp(min=1e-4), torch.full_like(inv, float("nan")))
            else:
                depth = F.interpolate(pred, size=(H, W), mode="bilinear", align_corners=False)[0, 0]
            d = depth.double().numpy()
        finally:
            if self.cfg.num_threads:
                torch.set_num_threads(old_threads)
        # invalid (non-positive or non-finite network output) -> NaN, the depth-map convention
        d = np.where(np.isfinite(d) & (d > 0), d, np.nan)
        return d, extra


def _zoe_padding(height: int, width: int) -> tuple[int, int]:
    """ZoeDepth's reflect padding (its image processor): int(sqrt(size / 2) * 3)."""
    return int(np.sqrt(height / 2) * 3), int(np.sqrt(width / 2) * 3)


def _default_mean(model_type: str):
    return _IMAGENET_MEAN if model_type == "depth_anything" else (0.5, 0.5, 0.5)


def _default_std(model_type: str):
    return _IMAGENET_STD if model_type == "depth_anything" else (0.5, 0.5, 0.5)


def _as_rgb(image) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise InputError("image", f"expected an RGB (H, W, 3) image, got shape {img.shape}")
    img = img[..., :3]
    if img.dtype != np.uint8:
        if np.issubdtype(img.dtype, np.floating) and np.nanmax(img) <= 1.0:
            img = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
        else:
            img = np.clip(img, 0, 255).astype(np.uint8)
    if img.shape[0] < 16 or img.shape[1] < 16:
        raise InputError("image", f"image is too small ({img.shape[1]}x{img.shape[0]})")
    return img


_LOADED: dict[tuple, MonocularDepthEstimator] = {}


def load_depth_estimator(cfg: DepthModelConfig | str, name: str = "--depth-model") -> MonocularDepthEstimator:
    """Load a metric depth model from a folder or an offline hub id (memoised per config in
    this process, for direct use; pipelines build and own theirs).

    Args:
        cfg: a :class:`DepthModelConfig` or just the model folder / hub id.
        name: the argument named in error messages.

    Raises:
        BackendUnavailable: torch/transformers are not installed.
        InputError: the model is not available offline, is not a supported metric depth
            architecture, or its files are broken; the message says how to get it.
    """
    if isinstance(cfg, str):
        cfg = DepthModelConfig(model=cfg)  # validated on construction
    key = (cfg.model, cfg.allow_download, cfg.device, cfg.resolution, cfg.cache_dir, cfg.num_threads)
    if key not in _LOADED:
        _LOADED[key] = build_depth_estimator(cfg, name)
    return _LOADED[key]


def build_depth_estimator(cfg: DepthModelConfig | str, name: str = "--depth-model") -> MonocularDepthEstimator:
    """A new estimator of ``cfg`` (not memoised: pipelines own theirs); see
    :func:`load_depth_estimator` for the arguments and errors."""
    if isinstance(cfg, str):
        cfg = DepthModelConfig(model=cfg)
    transformers = _import_transformers()
    src = cfg.model
    local = Path(os.path.expanduser(src))
    if local.exists():
        if not (local / "config.json").is_file():
            raise InputError(name, f"{local} is not a model folder (no config.json); expected a save_pretrained() folder")
        src = str(local)
    elif src.startswith((".", "/", "~")) or src.count("/") > 1 or os.sep != "/" and os.sep in src:
        raise InputError(name, f"model folder not found: {src}")
    local_only = not cfg.allow_download
    try:
        config = transformers.AutoConfig.from_pretrained(src, local_files_only=local_only)
    except (OSError, ValueError) as e:
        if local.exists():
            raise InputError(name, f"cannot read the model config in {src}: {e}") from None
        raise InputError(name, _missing_model_message(src)) from None
    model_type = getattr(config, "model_type", "")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise InputError(
            name, f"{src} is a {model_type!r} model; supported metric depth architectures: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    if model_type == "depth_anything" and getattr(config, "depth_estimation_type", "relative") != "metric":
        raise InputError(
            name,
            f"{src} is a relative-depth Depth Anything model (depth up to an unknown scale and shift); use a metric "
            "checkpoint such as depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf (indoor) or ...-Outdoor-... ",
        )
    try:
        import logging as _logging

        _logging.getLogger("transformers").setLevel(_logging.ERROR)
        kw = {}
        if model_type == "depth_pro":
            kw["use_fov_model"] = bool(getattr(config, "use_fov_model", False))
        model = transformers.AutoModelForDepthEstimation.from_pretrained(src, local_files_only=local_only, **kw)
    except (OSError, ValueError) as e:
        if local.exists():
            raise InputError(name, f"cannot load the model weights in {src}: {e}") from None
        raise InputError(name, _missing_model_message(src)) from None
    model.eval().to(cfg.device)
    proc = _load_processor_config(src, local_only)
    return MonocularDepthEstimator(cfg, model, proc, model_type)


def _load_processor_config(src: str, local_only: bool) -> dict:
    """The model's ``preprocessor_config.json`` as a dict ({} when absent)."""
    p = Path(src) / "preprocessor_config.json"
    if p.is_file():
        from twoview.io.text import read_json

        return read_json(p)
    try:
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(src, "preprocessor_config.json", local_files_only=local_only)
        return json.loads(Path(path).read_text())
    except Exception:  # absent: the documented defaults of each architecture apply
        return {}


def clear_loaded_models() -> None:
    """Forget memoised models (frees memory)."""
    _LOADED.clear()
