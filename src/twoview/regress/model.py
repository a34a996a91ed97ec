"""Reloc3r-style two-view pose regressor (torch).

Module names follow Reloc3r / CroCo (``patch_embed.proj``, ``enc_blocks.i``,
``enc_norm``, ``decoder_embed``, ``dec_blocks.i`` with ``attn``/``cross_attn``/``norm_y``,
``dec_norm``, ``pose_head``), so Reloc3r's released checkpoints load with an identity key
map (see :mod:`twoview.regress.reloc3r`).

Semantics: the pose head applied to image A's decoder tokens (which cross-attend to
image B) gives ``camB_from_camA``; so the head on image 0 gives ``cam1_from_cam0``
(Reloc3r's ``pose2`` with ``view1 = image1, view2 = image0``).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from twoview.regress.config import RegressorConfig

#: Reloc3r/CroCo input normalisation: RGB in [0, 1] -> (x - 0.5) / 0.5.
IMG_MEAN = 0.5
IMG_STD = 0.5


class RoPE2D(nn.Module):
    """2D rotary position embedding (CroCo's formulation: y on the first half, x on the second).

    Per (head dim, positions) the cos/sin tables are built once and reused by every
    attention call that gets the same positions (all blocks of a forward pass).
    """

    def __init__(self, freq: float = 100.0):
        super().__init__()
        self.base = float(freq)
        self._last: tuple | None = None

    def _tables(self, D: int, pos: torch.Tensor, dtype):
        """(1 or B, 1, N, D) cos and signed sin for ``out = x * cos + swap(x) * sin``."""
        key = (D, pos.data_ptr(), tuple(pos.shape), tuple(pos.stride()), pos.device, dtype)
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        d = D // 2
        inv = 1.0 / (self.base ** (torch.arange(0, d, 2, device=pos.device).float() / d))  # d/2
        p = pos[:1] if bool((pos == pos[:1]).all()) else pos
        ang = p.float()[..., None] * inv  # b, N, 2, d/2 (y then x)
        ang = torch.cat((ang, ang), -1)  # b, N, 2, d
        sign = torch.cat((-torch.ones(d // 2, device=pos.device), torch.ones(d // 2, device=pos.device)))
        cos = ang.cos().flatten(2)[:, None].to(dtype)
        sin = (ang.sin() * sign).flatten(2)[:, None].to(dtype)
        self._last = (key, (cos, sin), pos)  # keep pos alive: its data_ptr identifies it
        return cos, sin

    def forward(self, tokens: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """tokens (B, heads, N, D), pos (B, N, 2) integer (y, x)."""
        B, h, N, D = tokens.shape
        cos, sin = self._tables(D, pos, tokens.dtype)
        # within each half (y, x), swap the two quarters: [a, b] -> [b, a] (the sign is in sin)
        sw = tokens.reshape(B, h, N, 2, 2, D // 4).flip(-2).reshape(B, h, N, D)
        return tokens * cos + sw * sin


def sincos_pos_embed_2d(dim: int, h: int, w: int, device=None) -> torch.Tensor:
    """Fixed 2D sine-cosine embedding (MAE style), (h * w, dim): y on the first half,
    x on the second, row-major like the tokens."""
    d = dim // 4
    omega = 1.0 / (10000.0 ** (torch.arange(d, device=device, dtype=torch.float32) / d))
    yy, xx = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                            torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
    parts = []
    for c in (yy.reshape(-1), xx.reshape(-1)):
        a = c[:, None] * omega[None]
        parts += [a.sin(), a.cos()]
    return torch.cat(parts, 1)


#: Softmax temperature of the descriptor similarity in :func:`descriptor_flow`.
FLOW_TEMPERATURE = 0.05


def descriptor_flow(da: torch.Tensor, db: torch.Tensor, token_stride: int) -> torch.Tensor:
    """Per token of image a: where its descriptors match in image b.

    Args:
        da, db: (B, C, H', W') descriptor maps of both images (the stem's, same size).
        token_stride: tokens per descriptor cell along each axis is ``1 / token_stride``
            (token grid = descriptor grid pooled ``token_stride`` times).

    Returns:
        (B, h * w, 5): offset (du, dv) to the matched position, own position (u, v),
        both in units of the image size centred at 0 (so in [-0.5, 0.5] for positions),
        and the match confidence (max probability), tokens row-major.
    """
    B, C, Hd, Wd = db.shape
    qa = F.normalize(F.avg_pool2d(da, token_stride) if token_stride > 1 else da, dim=1)
    h, w = qa.shape[-2:]
    kb = F.normalize(db, dim=1).flatten(2)  # B, C, Hd*Wd
    logits = qa.flatten(2).transpose(1, 2) @ kb / FLOW_TEMPERATURE  # B, h*w, Hd*Wd
    conf = logits.softmax(-1).max(-1).values
    best = logits.argmax(-1)
    by, bx = best // Wd, best % Wd
    off = torch.arange(-1, 2, device=da.device)
    N = h * w
    cy = (by[..., None, None] + off[:, None]).clamp(0, Hd - 1).expand(B, N, 3, 3).reshape(B, N, 9)
    cx = (bx[..., None, None] + off[None, :]).clamp(0, Wd - 1).expand(B, N, 3, 3).reshape(B, N, 9)
    p = torch.gather(logits, 2, cy * Wd + cx).softmax(-1)
    u = ((p * cx.to(p.dtype)).sum(-1) + 0.5) / Wd - 0.5
    v = ((p * cy.to(p.dtype)).sum(-1) + 0.5) / Hd - 0.5
    yy, xx = torch.meshgrid(torch.arange(h, device=da.device, dtype=p.dtype),
                            torch.arange(w, device=da.device, dtype=p.dtype), indexing="ij")
    u0 = ((xx.reshape(-1) + 0.5) / w - 0.5).expand(B, N)
    v0 = ((yy.reshape(-1) + 0.5) / h - 0.5).expand(B, N)
    return torch.stack((u - u0, v - v0, u0, v0, conf), -1)


def cell_matches(da: torch.Tensor, db: torch.Tensor, temperature: float = FLOW_TEMPERATURE) -> dict:
    """Every stem cell's best descriptor match in the other image, both directions.

    Args:
        da, db: (B, C, H', W') descriptor maps of images a and b (same size).

    Returns:
        dict with, for direction "ab" (cells of a matched in b) and "ba":
        ``uv_ab`` (B, N, 2) matched position (soft-argmax in the 3x3 cells around the best
        cell) in units of the image size centred at 0 (so in [-0.5, 0.5]), ``conf_ab``
        (B, N) the softmax's maximum probability, ``mutual_ab`` (B, N) float, 1 where
        the best match's best match is the cell itself; and ``grid`` (N, 2), the cell
        centres in the same units, row-major.
    """
    B, C, Hd, Wd = da.shape
    qa = F.normalize(da.flatten(2), dim=1)
    kb = F.normalize(db.flatten(2), dim=1)
    logits = qa.transpose(1, 2) @ kb / temperature  # B, Na, Nb
    out = {}
    best = {}
    for name, lg in (("ab", logits), ("ba", logits.transpose(1, 2))):
        uv, conf, bi = _soft_argmax(lg, Hd, Wd)
        out[f"uv_{name}"], out[f"conf_{name}"] = uv, conf
        best[name] = bi
    idx = torch.arange(Hd * Wd, device=da.device).expand(B, -1)
    out["mutual_ab"] = (torch.gather(best["ba"], 1, best["ab"]) == idx).to(da.dtype)
    out["mutual_ba"] = (torch.gather(best["ab"], 1, best["ba"]) == idx).to(da.dtype)
    yy, xx = torch.meshgrid(torch.arange(Hd, device=da.device, dtype=da.dtype),
                            torch.arange(Wd, device=da.device, dtype=da.dtype), indexing="ij")
    out["grid"] = torch.stack(((xx.reshape(-1) + 0.5) / Wd - 0.5, (yy.reshape(-1) + 0.5) / Hd - 0.5), -1)
    return out


def _soft_argmax(logits: torch.Tensor, Hd: int, Wd: int):
    """(B, N, Hd*Wd) scores -> position (B, N, 2) centred image units, max probability, argmax."""
    B, N, _ = logits.shape
    mx, best = logits.max(-1)
    conf = torch.exp(mx - torch.logsumexp(logits, -1))
    by, bx = best // Wd, best % Wd
    off = torch.arange(-1, 2, device=logits.device)
    cy = (by[..., None, None] + off[:, None]).clamp(0, Hd - 1).expand(B, N, 3, 3).reshape(B, N, 9)
    cx = (bx[..., None, None] + off[None, :]).clamp(0, Wd - 1).expand(B, N, 3, 3).reshape(B, N, 9)
    p = torch.gather(logits, 2, cy * Wd + cx).softmax(-1)
    u = ((p * cx.to(p.dtype)).sum(-1) + 0.5) / Wd - 0.5
    v = ((p * cy.to(p.dtype)).sum(-1) + 0.5) / Hd - 0.5
    return torch.stack((u, v), -1), conf, best


#: Scales of the flow-token inputs: offsets and positions (in image units) brought to order one,
#: so the first layer sees them as strongly as the sine-cosine positions from the start.
FLOW_OFFSET_SCALE, FLOW_POSITION_SCALE = 8.0, 2.0


def cell_inverse_depth(depth: torch.Tensor, Hd: int, Wd: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, H, W) depth in metres (NaN / <= 0 invalid) -> per stem cell the mean inverse depth
    (1/m) of its valid pixels and whether a quarter of them are valid, (B, Hd, Wd) each."""
    ok = torch.isfinite(depth) & (depth > 0)
    inv = torch.where(ok, 1.0 / torch.where(ok, depth, torch.ones_like(depth)), torch.zeros_like(depth))
    k = depth.shape[-1] // Wd
    num = F.avg_pool2d(inv[:, None], k)[:, 0]
    den = F.avg_pool2d(ok[:, None].to(inv.dtype), k)[:, 0]
    valid = den > 0.25
    return torch.where(valid, num / den.clamp_min(1e-6), torch.zeros_like(num)), valid


def depth_at_matches(m: dict, direction: str, inv_a, valid_a, inv_b, valid_b) -> torch.Tensor:
    """Per cell of the first image of ``direction``: its inverse depth, the other image's
    inverse depth where it matches (nearest cell), and whether both are known -> (B, N, 3).
    Missing depth (None) gives zeros."""
    uv = m[f"uv_{direction}"]
    B, N, _ = uv.shape
    out = uv.new_zeros(B, N, 3)
    if inv_a is None or inv_b is None:
        if inv_a is not None:
            out[..., 0] = (inv_a * valid_a).flatten(1)
        return out
    grid = (uv * 2)[:, :, None, :]  # centred image units -> [-1, 1]
    at = lambda x: F.grid_sample(x[:, None].to(uv.dtype), grid, mode="nearest", align_corners=False)[:, 0, :, 0]  # noqa: E731
    vb = at(valid_b) > 0.5
    va = valid_a.flatten(1)
    return torch.stack(((inv_a * valid_a).flatten(1), at(inv_b) * vb, (va & vb).to(uv.dtype)), -1)


def cell_flow_tokens(m: dict, direction: str, Hd: int, Wd: int, s: int, depth: torch.Tensor | None = None) -> torch.Tensor:
    """Flow-token input from :func:`cell_matches`: per token (``s`` x ``s`` stem cells), each
    cell's offset to its match (du, dv), confidence and mutual flag (and, with ``depth``
    (B, N, 3) from :func:`depth_at_matches`, its inverse depths), and the token's own
    position -> (B, h * w, c s^2 + 2), tokens row-major (offsets and positions scaled by
    :data:`FLOW_OFFSET_SCALE`, :data:`FLOW_POSITION_SCALE`)."""
    uv, conf, mutual = m[f"uv_{direction}"], m[f"conf_{direction}"], m[f"mutual_{direction}"]
    B = uv.shape[0]
    off = (uv - m["grid"]) * FLOW_OFFSET_SCALE
    f = torch.cat((off, conf[..., None], mutual[..., None]) + ((depth,) if depth is not None else ()), -1)
    c = f.shape[-1]
    h, w = Hd // s, Wd // s
    f = f.reshape(B, h, s, w, s, c).permute(0, 1, 3, 2, 4, 5).reshape(B, h * w, c * s * s)
    g = m["grid"].reshape(h, s, w, s, 2).mean((1, 3)).reshape(1, h * w, 2).expand(B, -1, -1) * FLOW_POSITION_SCALE
    return torch.cat((f, g), -1)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, rope: RoPE2D):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.rope = rope

    def forward(self, x, pos):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        q, k = self.rope(q, pos), self.rope(k, pos)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class CrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int, rope: RoPE2D):
        super().__init__()
        self.heads = heads
        self.projq = nn.Linear(dim, dim, bias=True)
        self.projk = nn.Linear(dim, dim, bias=True)
        self.projv = nn.Linear(dim, dim, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.rope = rope

    def forward(self, q, kv, qpos, kpos):
        B, Nq, C = q.shape
        Nk = kv.shape[1]
        h = self.heads
        q = self.projq(q).reshape(B, Nq, h, C // h).transpose(1, 2)
        k = self.projk(kv).reshape(B, Nk, h, C // h).transpose(1, 2)
        v = self.projv(kv).reshape(B, Nk, h, C // h).transpose(1, 2)
        q, k = self.rope(q, qpos), self.rope(k, kpos)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, Nq, C))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, rope: RoPE2D):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, rope)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x, pos):
        x = x + self.attn(self.norm1(x), pos)
        return x + self.mlp(self.norm2(x))


class DecoderBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, rope: RoPE2D):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, rope)
        self.cross_attn = CrossAttention(dim, heads, rope)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.norm3 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.norm_y = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x, y, xpos, ypos):
        x = x + self.attn(self.norm1(x), xpos)
        y = self.norm_y(y)
        x = x + self.cross_attn(self.norm2(x), y, xpos, ypos)
        return x + self.mlp(self.norm3(x))


class PatchEmbed(nn.Module):
    """Tokens from the stem's output: a ``kernel = stride`` convolution (Reloc3r's on RGB
    pixels; on a stride-``in_stride`` feature map, kernel ``patch / in_stride``)."""

    def __init__(self, patch: int, dim: int, in_channels: int = 3, in_stride: int = 1):
        super().__init__()
        self.patch = patch
        k = patch // in_stride
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=k, stride=k)

    def forward(self, img):
        x = self.proj(img)  # B, C, h, w
        B, _, h, w = x.shape
        yy, xx = torch.meshgrid(torch.arange(h, device=img.device), torch.arange(w, device=img.device), indexing="ij")
        pos = torch.stack((yy, xx), -1).reshape(1, h * w, 2).expand(B, -1, -1)
        return x.flatten(2).transpose(1, 2), pos


class ResConvBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.res_conv1 = nn.Conv2d(c, c, 1)
        self.res_conv2 = nn.Conv2d(c, c, 1)
        self.res_conv3 = nn.Conv2d(c, c, 1)

    def forward(self, x):
        """x (B, N, c) tokens; the 1x1 convolutions act as linear layers (same weights)."""
        y = x
        for conv in (self.res_conv1, self.res_conv2, self.res_conv3):
            y = F.relu(F.linear(y, conv.weight.flatten(1), conv.bias))
        return x + y


def rotation_6d_to_matrix(d6: torch.Tensor) -> torch.Tensor:
    """(..., 6) -> (..., 3, 3), rows b1, b2, b3 (Zhou et al. 2019, as in Reloc3r)."""
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = F.normalize(a1, dim=-1)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    return torch.stack((b1, b2, torch.cross(b1, b2, dim=-1)), dim=-2)


def svd_orthogonalize(m: torch.Tensor) -> torch.Tensor:
    """(B, 9) -> (B, 3, 3) nearest rotation (Reloc3r's 9D representation)."""
    m = m.reshape(-1, 3, 3)
    mt = F.normalize(m, p=2, dim=-1).transpose(-1, -2)
    u, _, vh = torch.linalg.svd(mt)
    v = vh.transpose(-1, -2)
    det = torch.det(v @ u.transpose(-1, -2))
    return torch.cat([v[:, :, :-1], v[:, :, -1:] * det.view(-1, 1, 1)], dim=2) @ u.transpose(-1, -2)


class PoseHead(nn.Module):
    """Reloc3r's pose head: linear -> 1x1-conv residual blocks -> average pool -> MLP ->
    rotation (6D/9D) and translation (+ log-norm when ``metric_scale``)."""

    def __init__(self, cfg: RegressorConfig):
        super().__init__()
        c = cfg.head_width
        self.cfg = cfg
        self.proj = nn.Linear(cfg.dec_dim, c)
        self.res_conv = nn.ModuleList([ResConvBlock(c) for _ in range(cfg.head_resconv_blocks)])
        self.more_mlps = nn.Sequential(nn.Linear(c, c), nn.ReLU(), nn.Linear(c, c), nn.ReLU())
        self.fc_t = nn.Linear(c, 3)
        self.fc_rot = nn.Linear(c, 6 if cfg.rot_repr == "6d" else 9)
        if cfg.metric_scale:
            self.fc_scale = nn.Linear(c, 1)

    def forward(self, tokens: torch.Tensor, hw: tuple[int, int]):
        """tokens (B, h*w, D) -> R (B, 3, 3), t (B, 3), log_norm (B,) or None."""
        f = self.proj(tokens)
        for blk in self.res_conv:
            f = blk(f)
        f = self.more_mlps(f.mean(dim=1))
        r = self.fc_rot(f)
        R = rotation_6d_to_matrix(r) if self.cfg.rot_repr == "6d" else svd_orthogonalize(r)
        t = self.fc_t(f)
        if self.cfg.metric_scale:
            log_norm = self.fc_scale(f)[:, 0]
            t = F.normalize(t, dim=-1) * torch.exp(log_norm)[:, None]
            return R, t, log_norm
        return R, t, None


def rotation_residual_flow(m: dict, direction: str, R: torch.Tensor, focal: float, width: int, height: int) -> dict:
    """The cell matches of :func:`cell_matches` minus where a pure camera rotation ``R``
    (B, 3, 3; cam_b_from_cam_a for direction "ab") would put each cell, in the same
    centred image units: what the rotation leaves unexplained (translation parallax and
    the rotation's own error). Cells that ``R`` turns behind the camera get mutual 0."""
    g = m["grid"]  # N, 2 centred units
    px = (g[:, 0] + 0.5) * width - 0.5 - (width - 1) / 2
    py = (g[:, 1] + 0.5) * height - 0.5 - (height - 1) / 2
    rays = torch.stack((px / focal, py / focal, torch.ones_like(px)), -1)  # N, 3
    r = rays @ R.transpose(1, 2)  # B, N, 3
    z = r[..., 2]
    front = z > 0.1
    z = torch.where(front, z, torch.ones_like(z))
    pred = torch.stack(((focal * r[..., 0] / z + (width - 1) / 2 + 0.5) / width - 0.5,
                        (focal * r[..., 1] / z + (height - 1) / 2 + 0.5) / height - 0.5), -1)
    out = {"grid": g, f"uv_{direction}": m[f"uv_{direction}"] - pred + g, f"conf_{direction}": m[f"conf_{direction}"],
           f"mutual_{direction}": m[f"mutual_{direction}"] * front.to(pred.dtype)}
    return out


def flow_token_width(cfg: RegressorConfig) -> int:
    """Inputs per token of :func:`cell_flow_tokens` for a config."""
    return (7 if cfg.depth_tokens else 4) * (cfg.patch_size // 8) ** 2 + 2


class RefineStage(nn.Module):
    """A second regression from the flow left over by the first stage's rotation.

    The cell matches are compensated by the coarse rotation
    (:func:`rotation_residual_flow`: a fixed warp, no solver), embedded, added to the
    decoder's tokens and passed through ``cfg.refine_depth`` more decoder blocks; its pose
    head gives a rotation correction (applied on the left) and a new translation.
    """

    def __init__(self, cfg: RegressorConfig, rope: RoPE2D):
        super().__init__()
        self.cfg = cfg
        n_in = flow_token_width(cfg)
        self.embed = nn.Sequential(nn.Linear(n_in, cfg.dec_dim), nn.GELU(), nn.Linear(cfg.dec_dim, cfg.dec_dim))
        self.blocks = nn.ModuleList([DecoderBlock(cfg.dec_dim, cfg.dec_heads, cfg.mlp_ratio, rope)
                                     for _ in range(cfg.refine_depth)])
        self.norm = nn.LayerNorm(cfg.dec_dim, eps=1e-6)
        self.head = PoseHead(cfg)


class RelPoseRegressor(nn.Module):
    """Shared ViT encoder + cross-attention decoder + pose head.

    ``forward(img0, img1)`` takes normalised images (B, 3, H, W) and returns a dict:
    ``R01, t01`` (cam1_from_cam0), ``R10, t10`` (cam0_from_cam1, the symmetric branch),
    ``log_norm01/10`` (or None), ``feat0, feat1`` decoder tokens (B, h, w, D) and ``hw``.

    With ``cfg.stem == "xfeat"`` a frozen XFeat backbone (``self.stem``, not part of the
    state dict) precedes the patch embedding; ``stem_features`` + ``forward_features``
    split the forward pass so training can cache the frozen stem's output.
    """

    def __init__(self, cfg: RegressorConfig):
        super().__init__()
        self.cfg = cfg
        self.rope = RoPE2D(cfg.rope_freq)
        if cfg.stem == "xfeat":
            from twoview.regress.stem import XFeatStem

            self.stem = XFeatStem()
            stem_channels, stem_stride = XFeatStem.out_channels, XFeatStem.stride
        else:
            self.stem = None
            stem_channels, stem_stride = 3, 1
        #: tokens are this many stem-map cells apart
        self.token_stride = cfg.patch_size // stem_stride
        if cfg.appearance:
            self.patch_embed = PatchEmbed(cfg.patch_size, cfg.enc_dim, stem_channels, stem_stride)
            self.enc_blocks = nn.ModuleList([Block(cfg.enc_dim, cfg.enc_heads, cfg.mlp_ratio, self.rope)
                                             for _ in range(cfg.enc_depth)])
            self.enc_norm = nn.LayerNorm(cfg.enc_dim, eps=1e-6)
            self.decoder_embed = nn.Linear(cfg.enc_dim, cfg.dec_dim)
        if cfg.flow_tokens:
            n_in = 5 if cfg.flow_features == "pooled" else flow_token_width(cfg)
            self.flow_embed = nn.Sequential(nn.Linear(n_in, cfg.dec_dim), nn.GELU(), nn.Linear(cfg.dec_dim, cfg.dec_dim))
        self.dec_blocks = nn.ModuleList([DecoderBlock(cfg.dec_dim, cfg.dec_heads, cfg.mlp_ratio, self.rope) for _ in range(cfg.dec_depth)])
        self.dec_norm = nn.LayerNorm(cfg.dec_dim, eps=1e-6)
        self.pose_head = PoseHead(cfg)
        self.refine = RefineStage(cfg, self.rope) if cfg.refine_iters else None
        self.apply(self._init)
        if cfg.appearance:
            w = self.patch_embed.proj.weight.data
            nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        self._init_pose_outputs()

    def _init_pose_outputs(self):
        """Start near the identity rotation and a small translation (stable early training)."""
        self._init_head(self.pose_head)
        if self.refine is not None:
            self._init_head(self.refine.head)

    def _init_head(self, h: PoseHead):
        with torch.no_grad():
            h.fc_rot.weight.mul_(0.01)
            eye = [1.0, 0, 0, 0, 1.0, 0] if self.cfg.rot_repr == "6d" else [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0]
            h.fc_rot.bias.copy_(torch.tensor(eye))
            h.fc_t.weight.mul_(0.1)
            if self.cfg.metric_scale:
                h.fc_scale.weight.mul_(0.1)
                h.fc_scale.bias.fill_(-1.5)  # about 0.2 m

    @staticmethod
    def _init(m):
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def stem_features(self, img: torch.Tensor) -> torch.Tensor:
        """What the patch embedding reads: the image itself, or the frozen stem's map."""
        return img if self.stem is None else self.stem(img)

    def encode(self, feat):
        x, pos = self.patch_embed(feat)
        if self.cfg.pos_embed == "sincos":
            f = self.token_stride
            x = x + sincos_pos_embed_2d(x.shape[-1], feat.shape[-2] // f, feat.shape[-1] // f, x.device).to(x.dtype)
        for blk in self.enc_blocks:
            x = blk(x, pos)
        return self.enc_norm(x), pos

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, both: bool = True, depth0=None, depth1=None) -> dict:
        s0, s1 = self.stem_features(torch.cat((img0, img1), 0)).chunk(2, 0)
        return self.forward_features(s0, s1, both, depth0, depth1)

    def forward_features(self, s0: torch.Tensor, s1: torch.Tensor, both: bool = True, depth0=None, depth1=None) -> dict:
        """``forward`` from :meth:`stem_features` outputs (B, C, H', W') of both images.

        ``depth0``, ``depth1``: (B, H, W) metres at the input size (NaN invalid) or None,
        read by models with ``depth_tokens`` (ignored otherwise)."""
        B = s0.shape[0]
        f = self.token_stride
        h, w = s0.shape[-2] // f, s0.shape[-1] // f
        matches = None
        if self.cfg.appearance:
            x, pos = self.encode(torch.cat((s0, s1), 0))
            f0, f1 = self.decoder_embed(x).chunk(2, 0)
            p0, p1 = pos.chunk(2, 0)
        else:  # correspondence-only: the decoder sees where things match and where they are, not what they look like
            f0, p0 = self._position_tokens(B, h, w, s0.device, s0.dtype)
            f1, p1 = f0, p0
        if self.cfg.flow_tokens:
            # f = tokens per stem-map cell: the patch embedding's stride on the stem map
            if self.cfg.flow_features == "pooled":
                f0 = f0 + self.flow_embed(descriptor_flow(s0, s1, f))
                f1 = f1 + self.flow_embed(descriptor_flow(s1, s0, f))
            else:
                matches = cell_matches(s0, s1)
                Hd, Wd = s0.shape[-2:]
                dab = dba = None
                if self.cfg.depth_tokens:
                    i0, v0 = cell_inverse_depth(depth0, Hd, Wd) if depth0 is not None else (None, None)
                    i1, v1 = cell_inverse_depth(depth1, Hd, Wd) if depth1 is not None else (None, None)
                    dab = depth_at_matches(matches, "ab", i0, v0, i1, v1)
                    dba = depth_at_matches(matches, "ba", i1, v1, i0, v0)
                f0 = f0 + self.flow_embed(cell_flow_tokens(matches, "ab", Hd, Wd, f, dab))
                f1 = f1 + self.flow_embed(cell_flow_tokens(matches, "ba", Hd, Wd, f, dba))
        # both images' tokens in one batch (the blocks are shared): x attends to y, y to x
        pxy, pyx = torch.cat((p0, p1), 0), torch.cat((p1, p0), 0)
        for blk in self.dec_blocks:
            f0, f1 = blk(torch.cat((f0, f1), 0), torch.cat((f1, f0), 0), pxy, pyx).chunk(2, 0)
        f0, f1 = self.dec_norm(f0), self.dec_norm(f1)
        out = {"hw": (h, w)}
        self._heads(out, self.pose_head, f0, f1, both or self.refine is not None)
        if self.refine is not None:
            Hd, Wd = s0.shape[-2:]
            for _ in range(self.cfg.refine_iters):
                for k in ("R01", "t01", "log_norm01", "R10", "t10", "log_norm10"):
                    out.setdefault(k + "_coarse", out.get(k))
                R1 = out["R01"].detach()  # as RAFT's updates: each stage learns its own correction
                g0 = cell_flow_tokens(rotation_residual_flow(matches, "ab", R1, *self._canonical(Hd, Wd)), "ab", Hd, Wd, f,
                                      dab)
                g1 = cell_flow_tokens(rotation_residual_flow(matches, "ba", R1.transpose(1, 2), *self._canonical(Hd, Wd)),
                                      "ba", Hd, Wd, f, dba)
                r0, r1 = f0 + self.refine.embed(g0), f1 + self.refine.embed(g1)
                for blk in self.refine.blocks:
                    r0, r1 = blk(torch.cat((r0, r1), 0), torch.cat((r1, r0), 0), pxy, pyx).chunk(2, 0)
                r0, r1 = self.refine.norm(r0), self.refine.norm(r1)
                d = {}
                self._heads(d, self.refine.head, r0, r1, both)
                out["R01"], out["t01"], out["log_norm01"] = d["R01"] @ R1, d["t01"], d["log_norm01"]
                if both:
                    out["R10"], out["t10"], out["log_norm10"] = d["R10"] @ R1.transpose(1, 2), d["t10"], d["log_norm10"]
        D = f0.shape[-1]
        out["feat0"] = f0.reshape(B, h, w, D)
        out["feat1"] = f1.reshape(B, h, w, D)
        # the frozen stem's maps (descriptors for GCR matching); None without a stem
        out["stem0"], out["stem1"] = (s0, s1) if self.stem is not None else (None, None)
        out["matches"] = matches  # cell_matches of the flow tokens (or None)
        return out

    def _heads(self, out: dict, head: PoseHead, f0: torch.Tensor, f1: torch.Tensor, both: bool) -> None:
        """Pose head on view 0's tokens (cam1_from_cam0) and, with ``both``, view 1's."""
        if both:
            R, t, s = head(torch.cat((f0, f1), 0), None)
            out["R01"], out["R10"] = R.chunk(2, 0)
            out["t01"], out["t10"] = t.chunk(2, 0)
            out["log_norm01"], out["log_norm10"] = s.chunk(2, 0) if s is not None else (None, None)
        else:
            out["R01"], out["t01"], out["log_norm01"] = head(f0, None)

    def _canonical(self, Hd: int, Wd: int) -> tuple[float, int, int]:
        """(focal, width, height) of the input image in pixels (the canonical camera)."""
        stride = self.cfg.patch_size // self.token_stride
        return float(self.cfg.canonical_focal), Wd * stride, Hd * stride

    def _position_tokens(self, B: int, h: int, w: int, device, dtype):
        """Decoder tokens that carry only their grid position (sine-cosine), and the positions."""
        D = self.cfg.dec_dim
        x = sincos_pos_embed_2d(D, h, w, device).to(dtype)[None].expand(B, -1, -1)
        yy, xx = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
        return x, torch.stack((yy, xx), -1).reshape(1, h * w, 2).expand(B, -1, -1)
