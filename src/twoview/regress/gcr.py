"""Geometric consistency regularisation (GeLoc3r), training only.

Pipeline per pair (see :class:`~twoview.regress.config.GCRConfig`):

1. :func:`make_correspondences`: pixels of view 0 with GT depth -> 3D points X0,
   projected into view 1 with the GT pose (kept only if visible in depth 1).
   *Choice* (``GCRConfig.corr_source``): exact GT correspondences would make the
   geometric pose equal to GT whatever the weights. Default "predicted": the view-1
   locations are predicted by soft-argmax matching (differentiable) of the network's
   decoder features -- plus, with a frozen stem, its frozen descriptors (XFeat's, as
   GeLoc3r uses frozen MASt3R descriptor heads) -- so the geometric pose depends on the
   features and the fusion weights must find the reliable matches. Alternative
   "noisy_gt": GT projections corrupted like a matcher's output (pixel noise, gross and
   near outliers).
2. :class:`FusionTransformer`: weight per correspondence from the decoder tokens of both
   views sampled at its two ends (+ normalised coordinates and match confidence), a small
   transformer over the set, sigmoid output.
3. :func:`twoview.regress.wpnp.weighted_pnp`: PoseLib RANSAC selects inliers; weighted
   Gauss-Newton from the regressed pose refines (differentiable).
4. Losses: consistency ``d(regressed, geometric)`` (gradients reach the regressor and, via
   the geometric pose, the weights and features) and ``d(geometric, GT)`` which keeps the
   weights honest (without it they could collapse onto the regressed pose).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from twoview.regress.config import GCRConfig
from twoview.regress.wpnp import weighted_pnp


def make_correspondences(depth0: np.ndarray, depth1: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray,
                         cfg: GCRConfig, rng: np.random.Generator) -> dict:
    """Noisy 3D-2D correspondences for a batch (numpy).

    Args:
        depth0, depth1: (B, H, W) metres, NaN invalid. K: (3, 3) or per pair (B, 3, 3).
        R, t: (B, 3, 3), (B, 3) cam1_from_cam0.

    Returns:
        ``X`` (B, N, 3) points in camera 0, ``uv0`` (B, N, 2), ``uv1_gt`` (B, N, 2) GT
        projections, ``uv1`` (B, N, 2) corrupted pixels in image 1, ``outlier`` (B, N) bool
        (gross or near), ``valid`` (B,) bool.
    """
    B, H, W = depth0.shape
    N = cfg.num_corr
    Ks = np.broadcast_to(np.asarray(K, dtype=np.float64), (B, 3, 3))
    X = np.zeros((B, N, 3))
    uv0 = np.zeros((B, N, 2))
    uv1 = np.zeros((B, N, 2))
    uv1_gt = np.zeros((B, N, 2))
    outlier = np.zeros((B, N), bool)
    valid = np.zeros(B, bool)
    for b in range(B):
        K = Ks[b]
        Kinv = np.linalg.inv(K)
        cand = rng.choice(H * W, size=min(H * W, 8 * N), replace=False)
        v, u = np.divmod(cand, W)
        z = depth0[b, v, u].astype(np.float64)
        ok = np.isfinite(z) & (z > 0.05)
        uvc = np.stack([u, v], 1).astype(np.float64)[ok]
        Xc = (np.c_[uvc, np.ones(len(uvc))] @ Kinv.T) * z[ok, None]
        P = Xc @ R[b].T + t[b]
        zp = P[:, 2]
        front = zp > 0.05
        proj = (P @ K.T)[:, :2] / np.where(front, zp, 1.0)[:, None]
        inside = front & (proj[:, 0] > -0.5) & (proj[:, 0] < W - 0.5) & (proj[:, 1] > -0.5) & (proj[:, 1] < H - 0.5)
        ui = np.clip(np.rint(proj[:, 0]), 0, W - 1).astype(int)
        vi = np.clip(np.rint(proj[:, 1]), 0, H - 1).astype(int)
        d1 = depth1[b, vi, ui]
        visible = inside & np.isfinite(d1) & (np.abs(d1 - zp) < 0.05 * zp + 0.02)
        idx = np.flatnonzero(visible)
        if len(idx) < 24:
            continue
        sel = rng.choice(idx, size=N, replace=len(idx) < N)
        X[b], uv0[b], uv1_gt[b] = Xc[sel], uvc[sel], proj[sel]
        obs = proj[sel] + rng.normal(0, cfg.noise_px, size=(N, 2))
        perm = rng.permutation(N)
        n_out = int(round(cfg.outlier_ratio * N))
        n_near = int(round(cfg.near_outlier_ratio * N))
        gross, near = perm[:n_out], perm[n_out:n_out + n_near]
        obs[gross] = rng.uniform([-0.5, -0.5], [W - 0.5, H - 0.5], size=(n_out, 2))
        ang = rng.uniform(0, 2 * np.pi, n_near)
        rad = rng.uniform(*cfg.near_outlier_px, n_near)
        obs[near] += np.c_[np.cos(ang), np.sin(ang)] * rad[:, None]
        uv1[b] = obs
        outlier[b, gross] = True
        outlier[b, near] = True
        valid[b] = True
    return {"X": X, "uv0": uv0, "uv1": uv1, "uv1_gt": uv1_gt, "outlier": outlier, "valid": valid}


def sample_tokens(feat: torch.Tensor, uv: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
    """Bilinear sample of token maps at pixel positions.

    Args:
        feat: (B, h, w, D) decoder tokens. uv: (B, N, 2) pixels of the (H, W) network input.

    Returns:
        (B, N, D).
    """
    H, W = image_hw
    grid = torch.stack(((uv[..., 0] + 0.5) / W * 2 - 1, (uv[..., 1] + 0.5) / H * 2 - 1), -1)
    s = F.grid_sample(feat.permute(0, 3, 1, 2), grid[:, :, None, :].to(feat.dtype), mode="bilinear",
                      padding_mode="border", align_corners=False)
    return s[..., 0].transpose(1, 2)


class FusionTransformer(nn.Module):
    """Weight in (0, 1) per correspondence from the features at both ends."""

    def __init__(self, feat_dim: int, cfg: GCRConfig):
        super().__init__()
        d = cfg.fusion_dim
        self.proj0 = nn.Linear(feat_dim, d)
        self.proj1 = nn.Linear(feat_dim, d)
        self.coord = nn.Linear(5, d)
        self.match_q = nn.Linear(feat_dim, d)
        self.match_k = nn.Linear(feat_dim, d)
        self.mix = nn.Sequential(nn.Linear(3 * d, d), nn.GELU(), nn.Linear(d, d))
        layer = nn.TransformerEncoderLayer(d, cfg.fusion_heads, dim_feedforward=2 * d, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, cfg.fusion_layers, enable_nested_tensor=False)
        self.out = nn.Linear(d, 1)

    def match(self, f0: torch.Tensor, feat1: torch.Tensor, image_hw: tuple[int, int], upsample: int = 2,
              temperature: float = 0.1, desc0: torch.Tensor | None = None, desc1: torch.Tensor | None = None,
              desc_temperature: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
        """Soft-argmax matches of view-0 features in the view-1 map (differentiable).

        Scores: cosine similarity of learned projections of the decoder features
        (``/ temperature``), plus -- with ``desc0``/``desc1``, frozen descriptors such as
        the XFeat stem's (GeLoc3r matches with frozen MASt3R descriptor heads) -- their
        cosine similarity ``/ desc_temperature``, on the descriptor map's grid.

        Args:
            f0: (B, N, D) view-0 decoder features at the query pixels. feat1: (B, h, w, D).
            desc0: (B, N, C) view-0 descriptors at the query pixels; desc1: (B, C, h', w').

        Returns:
            uv1 (B, N, 2) expected pixel in image 1 (soft-argmax around the best cell) and
            confidence (B, N) (max probability of the softmax over all cells).
        """
        H, W = image_hw
        m = feat1.permute(0, 3, 1, 2)
        if desc1 is not None:
            m = F.interpolate(m, size=desc1.shape[-2:], mode="bilinear", align_corners=False)
        elif upsample > 1:
            m = F.interpolate(m, scale_factor=upsample, mode="bilinear", align_corners=False)
        B, D, h, w = m.shape
        k = self.match_k(m.flatten(2).transpose(1, 2))  # B, hw, d
        q = self.match_q(f0)
        logits = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(1, 2) / temperature
        if desc1 is not None:
            d1 = F.normalize(desc1.flatten(2), dim=1)  # B, C, hw
            logits = logits + F.normalize(desc0, dim=-1) @ d1 / desc_temperature
        conf = logits.softmax(-1).max(-1).values
        # soft-argmax in the 3x3 cells around the best cell: a global expectation would
        # average the modes of repeated structure
        N = logits.shape[1]
        best = logits.argmax(-1)  # B, N
        by, bx = best // w, best % w
        off = torch.arange(-1, 2, device=logits.device)
        cy = (by[..., None, None] + off[:, None]).clamp(0, h - 1).expand(B, N, 3, 3)
        cx = (bx[..., None, None] + off[None, :]).clamp(0, w - 1).expand(B, N, 3, 3)
        idx = (cy * w + cx).reshape(B, N, 9)
        p = torch.gather(logits, 2, idx).softmax(-1)  # B, N, 9
        cu = (cx.reshape(B, N, 9).to(p.dtype) + 0.5) * W / w - 0.5
        cv = (cy.reshape(B, N, 9).to(p.dtype) + 0.5) * H / h - 0.5
        return torch.stack(((p * cu).sum(-1), (p * cv).sum(-1)), -1), conf

    def forward(self, f0: torch.Tensor, f1: torch.Tensor, uv0: torch.Tensor, uv1: torch.Tensor,
                image_hw: tuple[int, int], conf: torch.Tensor | None = None) -> torch.Tensor:
        """f0, f1 (B, N, D); uv0, uv1 (B, N, 2); conf (B, N) or None -> weights (B, N)."""
        H, W = image_hw
        scale = uv0.new_tensor([W, H, W, H])
        conf = torch.ones_like(uv0[..., 0]) if conf is None else conf
        a, b = self.proj0(f0), self.proj1(f1)
        c = torch.cat(((torch.cat((uv0, uv1), -1) / scale - 0.5), conf[..., None]), -1)
        x = self.mix(torch.cat((a, b, a * b), -1)) + self.coord(c)
        return torch.sigmoid(self.out(self.blocks(x))[..., 0])


def rotation_angle(R1: torch.Tensor, R2: torch.Tensor) -> torch.Tensor:
    """Geodesic angle (rad) between (B, 3, 3) rotations, with finite gradients at 0."""
    chord = torch.sqrt(((R1 - R2) ** 2).sum((-1, -2)) + 1e-12)
    return 2 * torch.asin((chord / (2 * np.sqrt(2))).clamp(0, 1 - 1e-7))


def pose_loss(R: torch.Tensor, t: torch.Tensor, R_ref: torch.Tensor, t_ref: torch.Tensor, w_rot=1.0, w_tdir=1.0,
              w_scale=0.5, metric: bool = True) -> tuple[torch.Tensor, dict]:
    """Per-pair pose distance: geodesic rotation (rad) + direction chord + |log-norm ratio|.

    Returns:
        (B,) loss and a dict of (B,) components.
    """
    rot = rotation_angle(R, R_ref)
    n, nr = t.norm(dim=-1).clamp_min(1e-8), t_ref.norm(dim=-1).clamp_min(1e-8)
    tdir = (t / n[:, None] - t_ref / nr[:, None]).norm(dim=-1)
    loss = w_rot * rot + w_tdir * tdir
    parts = {"rot": rot, "tdir": tdir}
    if metric:
        scale = (torch.log(n) - torch.log(nr)).abs()
        loss = loss + w_scale * scale
        parts["scale"] = scale
    return loss, parts


def gcr_losses(out: dict, corr: dict, K: np.ndarray, R_gt: torch.Tensor, t_gt: torch.Tensor, fusion: FusionTransformer,
               cfg: GCRConfig, image_hw: tuple[int, int], loss_weights: dict, metric: bool) -> dict:
    """Consistency and geometric losses for a batch.

    Args:
        out: the regressor's output (``R01``, ``t01``, ``feat0``, ``feat1``).
        corr: :func:`make_correspondences` output. K: (3, 3) or per pair (B, 3, 3).

    Returns:
        ``consistency``, ``geometric`` (0 when no pair is usable) and ``correspondence``
        (predicted matches vs GT projections; 0 for "noisy_gt") scalar losses, and
        diagnostics (``geo_rot_deg``, ``w_inlier``, ``w_outlier`` -- inlier = within
        ``ransac_px`` of the GT projection for predicted matches --, ``match_px``, ``gcr_pairs``).
    """
    dev = out["R01"].device
    X = torch.as_tensor(corr["X"], dtype=torch.float64, device=dev)
    uv0 = torch.as_tensor(corr["uv0"], dtype=torch.float32, device=dev)
    B = X.shape[0]
    Kt = torch.as_tensor(np.asarray(K), dtype=torch.float64, device=dev).expand(B, 3, 3)
    f0 = sample_tokens(out["feat0"], uv0, image_hw)
    zero = out["R01"].sum() * 0.0
    corr_loss = zero
    cvalid = torch.as_tensor(corr["valid"], device=dev)
    diag = {}
    if cfg.corr_source == "predicted":
        desc0 = desc1 = None
        if cfg.match_descriptors and out.get("stem1") is not None:
            desc1 = out["stem1"]
            desc0 = sample_tokens(out["stem0"].permute(0, 2, 3, 1), uv0, image_hw)
        uv1, conf = fusion.match(f0, out["feat1"], image_hw, cfg.match_upsample, cfg.match_temperature, desc0, desc1,
                                 cfg.desc_temperature)
        gt = torch.as_tensor(corr["uv1_gt"], dtype=torch.float32, device=dev)
        err = (uv1 - gt).norm(dim=-1)  # B, N pixels
        if cvalid.any():
            corr_loss = (err[cvalid] / image_hw[1]).mean()  # end-point error / image width
            with torch.no_grad():
                diag["match_px"] = err[cvalid].median().item()
        outl = (err > cfg.ransac_px).detach()
    else:
        uv1 = torch.as_tensor(corr["uv1"], dtype=torch.float32, device=dev)
        conf = None
        outl = torch.as_tensor(corr["outlier"], device=dev)
    if cfg.fusion_weights == "learned":
        f1 = sample_tokens(out["feat1"], uv1, image_hw)
        w = fusion(f0, f1, uv0, uv1, image_hw, conf)
    else:  # ablation: every correspondence weighs the same (RANSAC still picks the inliers)
        w = torch.ones_like(uv1[..., 0])
    R0, t0 = out["R01"].double(), out["t01"].double()
    R_geo, t_geo, inl, ok = weighted_pnp(X, uv1.double(), Kt, w.double(), R0, t0, ransac_px=cfg.ransac_px, iters=cfg.gn_iters)
    valid = ok & cvalid
    # a geometric pose far from GT (poor matches, or Gauss-Newton not converged) is not a target
    with torch.no_grad():
        geo_err = rotation_angle(R_geo, R_gt.double())
        valid &= geo_err < np.radians(cfg.max_geo_err_deg)
        tg, tr = t_geo.double(), t_gt.double()
        ng, nr = tg.norm(dim=-1).clamp_min(1e-9), tr.norm(dim=-1).clamp_min(1e-9)
        cos = ((tg * tr).sum(-1) / (ng * nr)).clamp(-1, 1)
        valid &= torch.rad2deg(torch.arccos(cos)) < cfg.max_geo_tdir_deg
        valid &= (torch.log(ng / nr)).abs() < np.log(cfg.max_geo_scale_ratio)
    diag["gcr_pairs"] = valid.float().mean().item()
    with torch.no_grad():
        vm = valid[:, None].expand_as(outl)
        if (vm & ~outl).any():
            diag["w_inlier"] = float(w[vm & ~outl].mean())
        if (vm & outl).any():
            diag["w_outlier"] = float(w[vm & outl].mean())
    if not valid.any():
        return {"consistency": zero, "geometric": zero, "correspondence": corr_loss, **diag}
    cons, _ = pose_loss(out["R01"][valid], out["t01"][valid], R_geo[valid].float(), t_geo[valid].float(), metric=metric, **loss_weights)
    geo, parts = pose_loss(R_geo[valid].float(), t_geo[valid].float(), R_gt[valid], t_gt[valid], metric=metric, **loss_weights)
    diag["geo_rot_deg"] = torch.rad2deg(parts["rot"].detach()).mean().item()
    return {"consistency": cons.mean(), "geometric": geo.mean(), "correspondence": corr_loss, **diag}
