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
    """2D rotary position embedding (CroCo's formulation: y on the first half, x on the second)."""

    def __init__(self, freq: float = 100.0):
        super().__init__()
        self.base = float(freq)
        self._cache: dict = {}

    def _cos_sin(self, d: int, n: int, device, dtype):
        key = (d, n, device, dtype)
        if key not in self._cache:
            inv = 1.0 / (self.base ** (torch.arange(0, d, 2, device=device).float() / d))
            t = torch.arange(n, device=device, dtype=inv.dtype)
            f = torch.einsum("i,j->ij", t, inv).to(dtype)
            f = torch.cat((f, f), dim=-1)
            self._cache[key] = (f.cos(), f.sin())
        return self._cache[key]

    @staticmethod
    def _rot_half(x):
        a, b = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
        return torch.cat((-b, a), dim=-1)

    def forward(self, tokens: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """tokens (B, heads, N, D), pos (B, N, 2) integer (y, x)."""
        d = tokens.size(3) // 2
        cos, sin = self._cos_sin(d, int(pos.max()) + 1, tokens.device, tokens.dtype)
        y, x = tokens.chunk(2, dim=-1)
        out = []
        for part, p in ((y, pos[:, :, 0]), (x, pos[:, :, 1])):
            c = F.embedding(p, cos)[:, None]
            s = F.embedding(p, sin)[:, None]
            out.append(part * c + self._rot_half(part) * s)
        return torch.cat(out, dim=-1)


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
    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

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
        y = F.relu(self.res_conv1(x))
        y = F.relu(self.res_conv2(y))
        y = F.relu(self.res_conv3(y))
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
        B = tokens.shape[0]
        f = self.proj(tokens).transpose(1, 2).reshape(B, -1, hw[0], hw[1])
        for blk in self.res_conv:
            f = blk(f)
        f = self.more_mlps(f.mean(dim=(2, 3)))
        r = self.fc_rot(f)
        R = rotation_6d_to_matrix(r) if self.cfg.rot_repr == "6d" else svd_orthogonalize(r)
        t = self.fc_t(f)
        if self.cfg.metric_scale:
            log_norm = self.fc_scale(f)[:, 0]
            t = F.normalize(t, dim=-1) * torch.exp(log_norm)[:, None]
            return R, t, log_norm
        return R, t, None


class RelPoseRegressor(nn.Module):
    """Shared ViT encoder + cross-attention decoder + pose head.

    ``forward(img0, img1)`` takes normalised images (B, 3, H, W) and returns a dict:
    ``R01, t01`` (cam1_from_cam0), ``R10, t10`` (cam0_from_cam1, the symmetric branch),
    ``log_norm01/10`` (or None), ``feat0, feat1`` decoder tokens (B, h, w, D) and ``hw``.
    """

    def __init__(self, cfg: RegressorConfig):
        super().__init__()
        self.cfg = cfg
        self.rope = RoPE2D(cfg.rope_freq)
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.enc_dim)
        self.enc_blocks = nn.ModuleList([Block(cfg.enc_dim, cfg.enc_heads, cfg.mlp_ratio, self.rope) for _ in range(cfg.enc_depth)])
        self.enc_norm = nn.LayerNorm(cfg.enc_dim, eps=1e-6)
        self.decoder_embed = nn.Linear(cfg.enc_dim, cfg.dec_dim)
        self.dec_blocks = nn.ModuleList([DecoderBlock(cfg.dec_dim, cfg.dec_heads, cfg.mlp_ratio, self.rope) for _ in range(cfg.dec_depth)])
        self.dec_norm = nn.LayerNorm(cfg.dec_dim, eps=1e-6)
        self.pose_head = PoseHead(cfg)
        self.apply(self._init)
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        self._init_pose_outputs()

    def _init_pose_outputs(self):
        """Start near the identity rotation and a small translation (stable early training)."""
        h = self.pose_head
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

    def encode(self, img):
        x, pos = self.patch_embed(img)
        for blk in self.enc_blocks:
            x = blk(x, pos)
        return self.enc_norm(x), pos

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, both: bool = True) -> dict:
        B = img0.shape[0]
        h, w = img0.shape[-2] // self.cfg.patch_size, img0.shape[-1] // self.cfg.patch_size
        x, pos = self.encode(torch.cat((img0, img1), 0))
        f0, f1 = self.decoder_embed(x).chunk(2, 0)
        p0, p1 = pos.chunk(2, 0)
        for blk in self.dec_blocks:
            f0, f1 = blk(f0, f1, p0, p1), blk(f1, f0, p1, p0)
        f0, f1 = self.dec_norm(f0), self.dec_norm(f1)
        out = {"hw": (h, w)}
        if both:
            R, t, s = self.pose_head(torch.cat((f0, f1), 0), (h, w))
            out["R01"], out["R10"] = R.chunk(2, 0)
            out["t01"], out["t10"] = t.chunk(2, 0)
            out["log_norm01"], out["log_norm10"] = s.chunk(2, 0) if s is not None else (None, None)
        else:
            out["R01"], out["t01"], out["log_norm01"] = self.pose_head(f0, (h, w))
        D = f0.shape[-1]
        out["feat0"] = f0.reshape(B, h, w, D)
        out["feat1"] = f1.reshape(B, h, w, D)
        return out
