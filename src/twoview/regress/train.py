"""Training loop: pose loss (+ GCR), checkpoint/resume, JSON-lines log and curves.

Usage: ``twoview train --config configs/regress_tiny_gcr.json`` or
:func:`train(TrainConfig, base_dir)`. Outputs in ``out_dir``: ``last.pt`` (resumable),
``model.pt`` (weights + model config only), ``log.jsonl`` and ``curves.png``.
"""

from __future__ import annotations

import io
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from twoview.errors import InputError, TwoViewWarning
from twoview.io.atomic import writing
from twoview.regress.config import TrainConfig

CKPT_FORMAT = "twoview-regress"


def resolve(path: str | None, base: Path) -> Path | None:
    if path is None:
        return None
    p = Path(path)
    return p if p.is_absolute() else (base / p).resolve()


def to_tensor_images(imgs: np.ndarray):
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float32 normalised to [-1, 1]."""
    import torch

    from twoview.regress.model import IMG_MEAN, IMG_STD

    x = torch.from_numpy(np.ascontiguousarray(imgs)).permute(0, 3, 1, 2).float() / 255.0
    return (x - IMG_MEAN) / IMG_STD


class Trainer:
    """Holds model, fusion head, optimiser, data and RNG state; one ``step()`` per batch."""

    def __init__(self, cfg: TrainConfig, base_dir: str | Path = ".", seqs=None):
        import torch

        from twoview.regress.data import RGBDSequence
        from twoview.regress.gcr import FusionTransformer
        from twoview.regress.model import RelPoseRegressor

        self.cfg = cfg
        self.base = Path(base_dir)
        self.out_dir = resolve(cfg.out_dir, self.base)
        self.mcfg = cfg.model_config()
        torch.set_num_threads(cfg.optim.num_threads)
        torch.manual_seed(cfg.optim.seed)
        self.rng = np.random.default_rng(cfg.optim.seed)  # batches and augmentation
        # GCR's correspondence sampling has its own stream: with and without GCR, the same
        # seed gives the same sequence of training batches
        self.gcr_rng = np.random.default_rng([cfg.optim.seed, 2])
        # the init weights first: a missing or broken file fails before the model and data are built
        from twoview.regress.infer import load_weights_into, read_weights

        init = resolve(cfg.init_checkpoint, self.base)
        init_state = read_weights(init) if init is not None else None
        self.model = RelPoseRegressor(self.mcfg)
        if init_state is not None:
            load_weights_into(self.model, init, init_state)
        d = cfg.data
        if seqs is None:
            from twoview.regress.data import load_split_sequences

            split = resolve(d.split, self.base)
            train = load_split_sequences(split, "train", self.mcfg, d.sequences)
            val = load_split_sequences(split, "heldout", self.mcfg, d.val_sequences) if d.val_sequences else []
            seqs = (RGBDSequence.concat(train), RGBDSequence.concat(val) if val else None)
        self.train_seq, self.val_seq = seqs
        pairs = self.train_seq.covisible_pairs(d.min_overlap, d.max_rot_deg, d.max_trans_m, d.min_gap)
        if len(pairs) == 0:
            raise InputError("data", f"no training pair: the {len(self.train_seq.ids)} training frames have no two "
                             f"at least {d.min_gap} frames apart (data.min_gap) with covisibility >= {d.min_overlap} "
                             f"(data.min_overlap), rotation <= {d.max_rot_deg} deg and baseline <= {d.max_trans_m} m")
        self.set_pairs(pairs)
        self.val_pairs = None
        if self.val_seq is not None:
            vp = self.val_seq.covisible_pairs(d.min_overlap, d.max_rot_deg, d.max_trans_m, d.min_gap)
            self.val_pairs = np.concatenate([evenly(vp[self.val_seq.names[vp[:, 0]] == n], d.val_max_pairs)
                                             for n in dict.fromkeys(self.val_seq.names)]).reshape(-1, 2)
        self.fusion = FusionTransformer(self.mcfg.dec_dim, cfg.gcr) if cfg.gcr.enabled else None
        self.device = torch.device(cfg.optim.device)
        self.model.to(self.device)
        if self.fusion is not None:
            self.fusion.to(self.device)
        self.bank = self._build_bank()
        params = list(self.model.parameters()) + (list(self.fusion.parameters()) if self.fusion else [])
        self.opt = torch.optim.AdamW(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
        self.step_num = 0
        self.elapsed = 0.0

    def set_pairs(self, pairs: np.ndarray) -> None:
        """The (M, 2) frame pairs to train on, and their sampling probabilities
        (``data.sequence_weight_power``)."""
        self.train_pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        names = self.train_seq.names[self.train_pairs[:, 0]]
        self.pair_prob = pair_probabilities(names, self.cfg.data.sequence_weight_power)

    def _build_bank(self):
        """The augmented training views (deterministic per seed: rebuilt identically on resume),
        read from / written to ``augment.cache_dir`` when set (keyed by everything they depend on)."""
        import hashlib

        import torch

        from twoview.regress.data import ViewBank

        a = self.cfg.augment
        cache = None
        if a.cache_dir:
            m = self.mcfg
            key = {"augment": {k: v for k, v in a.to_dict().items() if k != "cache_dir"}, "seed": self.cfg.optim.seed,
                   "input": [m.stem, m.img_width, m.img_height, m.resize_mode, m.canonical_focal],
                   "frames": hashlib.sha256(self.train_seq.images.tobytes()).hexdigest(),
                   "poses": hashlib.sha256(self.train_seq.world_from_cam.tobytes()).hexdigest()}
            digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
            cache = resolve(a.cache_dir, self.base) / f"viewbank_{digest}.pt"
            if cache.is_file():
                return ViewBank.from_state(self.train_seq, torch.load(cache, weights_only=False))
        bank = self._new_bank()
        if cache is not None:
            from twoview.io.atomic import atomic_write_bytes

            buf = io.BytesIO()
            torch.save(bank.state(), buf)
            atomic_write_bytes(cache, buf.getvalue())
        return bank

    def _new_bank(self):
        import torch

        from twoview.regress.data import ViewBank

        a = self.cfg.augment
        stem = None
        if self.model.stem is not None:
            def stem(imgs):
                with torch.no_grad():
                    return self.model.stem_features(to_tensor_images(imgs).to(self.device)).cpu()
        return ViewBank(self.train_seq, a.hflip, a.views_per_frame, a.roll_deg, a.tilt_deg,
                        np.random.default_rng([self.cfg.optim.seed, 1]), stem, a.color_jitter,
                        a.synthetic_views, a.synthetic_rot_deg, tuple(a.synthetic_trans_m),
                        photometric=a.photometric, depth_noise=a.depth_noise)

    # --- state ------------------------------------------------------------------
    def state_dict(self) -> dict:
        import torch

        return {
            "format": CKPT_FORMAT, "version": 1,
            "model_config": self.mcfg.to_dict(), "train_config": self.cfg.to_dict(),
            "model": self.model.state_dict(),
            "fusion": self.fusion.state_dict() if self.fusion else None,
            "optimizer": self.opt.state_dict(),
            "step": self.step_num, "elapsed_s": self.elapsed,
            "numpy_rng": self.rng.bit_generator.state, "gcr_rng": self.gcr_rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, st: dict) -> None:
        import torch

        self.model.load_state_dict(st["model"])
        if self.fusion is not None and st.get("fusion") is not None:
            self.fusion.load_state_dict(st["fusion"])
        self.opt.load_state_dict(st["optimizer"])
        self.step_num = int(st["step"])
        self.elapsed = float(st.get("elapsed_s", 0.0))
        self.rng.bit_generator.state = st["numpy_rng"]
        if "gcr_rng" in st:
            self.gcr_rng.bit_generator.state = st["gcr_rng"]
        torch.set_rng_state(st["torch_rng"].cpu())

    def save(self, path: Path, weights_only: bool = False) -> Path:
        import torch

        from twoview.io.atomic import atomic_write_bytes

        st = self.state_dict()
        if weights_only:
            st = {k: st[k] for k in ("format", "version", "model_config", "model", "step")}
            st["train_config"] = self.cfg.to_dict()
        buf = io.BytesIO()
        torch.save(st, buf)
        return atomic_write_bytes(path, buf.getvalue())

    def resume(self, path: Path) -> None:
        import torch

        try:
            st = torch.load(path, map_location=self.device, weights_only=False)
        except Exception as e:  # noqa: BLE001 -- a run killed while writing, a foreign file
            raise InputError(str(path), f"cannot read it to resume ({e}); pass --restart to start over") from None
        if not isinstance(st, dict) or st.get("format") != CKPT_FORMAT or "optimizer" not in st:
            raise InputError(str(path), "not a resumable twoview-regress training checkpoint; pass --restart to start over")
        self.load_state_dict(st)

    # --- optimisation -------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        o = self.cfg.optim
        if step < o.warmup_steps:
            return o.lr * (step + 1) / o.warmup_steps
        p = (step - o.warmup_steps) / max(1, o.steps - o.warmup_steps)
        return o.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))

    def compute_loss(self, batch, with_gcr: bool):
        import torch

        from twoview.regress.gcr import gcr_losses, make_correspondences, pose_loss

        c = self.cfg
        lw = {"w_rot": c.loss.w_rot, "w_tdir": c.loss.w_tdir, "w_scale": c.loss.w_scale}
        metric = self.mcfg.metric_scale
        dev = self.device
        d0 = d1 = None
        if self.mcfg.depth_tokens:  # each view's depth withheld at random: the model also serves image-only pairs
            keep = self.rng.random((2, len(batch.R))) >= c.augment.depth_input_dropout
            d0, d1 = (torch.as_tensor(np.where(k[:, None, None], d, np.nan), dtype=torch.float32, device=dev)
                      for k, d in zip(keep, (batch.depth0, batch.depth1)))
        if batch.feat0 is not None:  # cached frozen-stem features
            out = self.model.forward_features(batch.feat0.to(dev).float(), batch.feat1.to(dev).float(), True, d0, d1)
        else:
            out = self.model(to_tensor_images(batch.img0).to(dev), to_tensor_images(batch.img1).to(dev), True, d0, d1)
        R = torch.as_tensor(batch.R, dtype=torch.float32, device=dev)
        t = torch.as_tensor(batch.t, dtype=torch.float32, device=dev)
        l01, parts = pose_loss(out["R01"], out["t01"], R, t, metric=metric, **lw)
        Ri = R.transpose(1, 2)
        ti = -(Ri @ t[..., None])[..., 0]
        l10, _ = pose_loss(out["R10"], out["t10"], Ri, ti, metric=metric, **lw)
        loss = l01.mean() + c.loss.w_symmetric * l10.mean()
        if out.get("R01_coarse") is not None:  # deep supervision of the first stage
            c01, cparts = pose_loss(out["R01_coarse"], out["t01_coarse"], R, t, metric=metric, **lw)
            c10, _ = pose_loss(out["R10_coarse"], out["t10_coarse"], Ri, ti, metric=metric, **lw)
            loss = loss + c.loss.w_coarse * (c01.mean() + c.loss.w_symmetric * c10.mean())
        logs = {"pose_loss": l01.mean().item(), "rot_deg": torch.rad2deg(parts["rot"]).mean().item(),
                **({"coarse_rot_deg": torch.rad2deg(cparts["rot"]).mean().item()} if out.get("R01_coarse") is not None else {}),
                "tdir_deg": torch.rad2deg(2 * torch.asin((parts["tdir"].detach() / 2).clamp(0, 1))).mean().item()}
        if with_gcr and self.fusion is not None:
            corr = make_correspondences(batch.depth0, batch.depth1, batch.K, batch.R, batch.t, c.gcr, self.gcr_rng)
            g = gcr_losses(out, corr, batch.K, R, t, self.fusion, c.gcr, batch.image_hw, lw, metric)
            loss = (loss + c.gcr.w_consistency * g["consistency"] + c.gcr.w_geometric * g["geometric"]
                    + c.gcr.w_corr * g["correspondence"])
            logs.update({k: (v.item() if hasattr(v, "item") else v) for k, v in g.items()})
        logs["loss"] = loss.item()
        return loss, logs

    def step(self) -> dict:
        import torch

        c = self.cfg
        t0 = time.perf_counter()
        self.model.train()
        idx = self.rng.choice(len(self.train_pairs), size=c.optim.batch_size, p=self.pair_prob)
        batch = self.bank.batch(self.train_pairs[idx], self.rng, c.augment.color_jitter, c.augment.swap_prob,
                                c.augment.synthetic_prob)
        lr = self.lr_at(self.step_num)
        for g in self.opt.param_groups:
            g["lr"] = lr
        loss, logs = self.compute_loss(batch, with_gcr=c.gcr.enabled and self.step_num >= c.gcr.start_step)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for g in self.opt.param_groups for p in g["params"]]
        torch.nn.utils.clip_grad_norm_(params, c.optim.grad_clip)
        self.opt.step()
        self.step_num += 1
        self.elapsed += time.perf_counter() - t0
        return {"step": self.step_num, "lr": lr, **logs}

    def evaluate(self) -> dict:
        """AUC@5/10/20 and medians of the regressed cam1_from_cam0 on the validation pairs."""
        if self.val_pairs is None or len(self.val_pairs) == 0:
            return {}
        from twoview.regress.infer import regress_arrays

        a, b = self.val_pairs[:, 0], self.val_pairs[:, 1]
        R, t = regress_arrays(self.model, self.val_seq.images[a], self.val_seq.images[b],
                              depth0=self.val_seq.depths[a], depth1=self.val_seq.depths[b])
        gts = [self.val_seq.relative(a, b) for a, b in self.val_pairs]
        return summarize(R, t, [g[0] for g in gts], [g[1] for g in gts], self.mcfg.metric_scale, prefix="val_")


def pair_probabilities(names: np.ndarray, power: float) -> np.ndarray:
    """Sampling probability of each pair: a sequence with n pairs gets ``n ** power`` of the mass."""
    uniq, inv, counts = np.unique(names.astype(str), return_inverse=True, return_counts=True)
    w = counts.astype(np.float64) ** power / counts
    p = w[inv]
    return p / p.sum()


def evenly(a: np.ndarray, n: int) -> np.ndarray:
    """At most ``n`` rows of ``a``, evenly spaced."""
    if len(a) <= n:
        return a
    return a[np.unique(np.linspace(0, len(a) - 1, n).round().astype(int))]


def summarize(R, t, R_gt, t_gt, metric: bool, prefix: str = "") -> dict:
    """AUC@5/10/20 (twoview.metrics.pose_auc) and median errors of arrays of poses."""
    from twoview.geometry.pose import Pose
    from twoview.metrics import pose_auc, pose_errors

    errs = [pose_errors(Pose.from_matrix(np.c_[R[i], t[i]]), Pose(R_gt[i], t_gt[i]), metric) for i in range(len(R))]
    mx = [e["max_deg"] for e in errs]
    a5, a10, a20 = pose_auc(mx, (5.0, 10.0, 20.0))
    med = lambda k: float(np.nanmedian([e[k] for e in errs]))  # noqa: E731
    out = {"auc5": a5, "auc10": a10, "auc20": a20, "median_rot_deg": med("rot_deg"), "median_trans_deg": med("trans_deg"),
           "num_pairs": len(errs)}
    if metric:
        out["median_trans_m"] = med("trans_m")
    return {prefix + k: v for k, v in out.items()}


def read_log(log_path: Path, repair: bool = False) -> list[dict]:
    """The records of ``log.jsonl``. A run killed while writing leaves a torn last line: it is
    dropped with a warning (and, with ``repair``, cut from the file, so that a resumed run
    appends after the last whole record); any other line that is not a JSON object is an error."""
    import warnings

    path = Path(log_path)
    if not path.is_file():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")
    rows, offset = [], 0
    for i, raw in enumerate(lines):
        try:
            rec = json.loads(raw.decode("utf-8")) if raw.strip() else None
        except (ValueError, RecursionError):
            rec = ...
        if rec is ... or (rec is not None and not isinstance(rec, dict)):
            if any(ln.strip() for ln in lines[i + 1:]):
                raise InputError(str(path), f"line {i + 1} is not a JSON record; pass --restart to start over")
            warnings.warn(f"{path}: line {i + 1} is torn (the run was stopped while writing it): dropped", category=TwoViewWarning, stacklevel=2)
            if repair:
                from twoview.io.atomic import atomic_write_bytes

                atomic_write_bytes(path, data[:offset])
            break
        if rec is not None:
            rows.append(rec)
        offset += len(raw) + 1
    return rows


def check_out_dir(out: Path) -> None:
    """Create the output folder, or say in one line why it cannot be (a file in the way, no
    permission), before any data or model is loaded."""
    if out.exists() and not out.is_dir():
        raise InputError("out_dir", f"not a folder: {out}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError("out_dir", f"cannot create the folder {out}: {e.strerror or e}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise InputError("out_dir", f"no write permission in {out}")


def plot_curves(log_path: Path, png_path: Path) -> None:
    """Loss and validation curves from ``log.jsonl`` to a PNG (atomic write)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from twoview.io.atomic import atomic_write_bytes

    rows = read_log(log_path)
    tr = [r for r in rows if "loss" in r]
    va = [r for r in rows if "val_auc10" in r]
    fig, ax = plt.subplots(1, 3, figsize=(14, 4))
    for k in ("loss", "pose_loss", "consistency", "geometric", "correspondence"):
        pts = [(r["step"], r[k]) for r in tr if k in r]
        if pts:
            ax[0].plot(*zip(*pts), label=k)
    ax[0].set_yscale("log")
    ax[0].set_title("training losses")
    for k in ("rot_deg", "tdir_deg", "geo_rot_deg", "match_px"):
        pts = [(r["step"], r[k]) for r in tr if k in r]
        if pts:
            ax[1].plot(*zip(*pts), label=k)
    ax[1].set_title("training errors (deg)")
    for k in ("val_auc5", "val_auc10", "val_auc20"):
        pts = [(r["step"], r[k]) for r in va]
        if pts:
            ax[2].plot(*zip(*pts), marker="o", label=k)
    ax[2].set_title("held-out AUC")
    for a in ax:
        a.set_xlabel("step")
        if a.get_legend_handles_labels()[0]:
            a.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(png_path, buf.getvalue())


def train(cfg: TrainConfig, base_dir: str | Path = ".", resume: bool = True, progress: bool = True, seqs=None) -> Path:
    """Run (or resume) training; returns the path of ``model.pt``.

    Stops after ``optim.steps`` steps or ``optim.max_minutes`` of training time, whichever
    comes first (time accumulated across resumes).
    """
    from tqdm import tqdm

    check_out_dir(resolve(cfg.out_dir, Path(base_dir)))  # seconds before the data and model are ready
    wall0 = time.perf_counter()
    tr = Trainer(cfg, base_dir, seqs=seqs)
    out = tr.out_dir
    last, log_path = out / "last.pt", out / "log.jsonl"
    if resume and last.exists():
        tr.resume(last)
        read_log(log_path, repair=True)
    elif log_path.exists():
        log_path.unlink()
    budget = cfg.optim.max_minutes * 60
    bar = tqdm(total=cfg.optim.steps, initial=tr.step_num, disable=not progress, desc="train", dynamic_ncols=True)

    def save(path: Path, **kw) -> Path:
        with writing("out_dir", path):  # a full disk: one line naming the output folder
            return tr.save(path, **kw)

    with writing("out_dir", log_path):
        log = open(log_path, "a")

    def write(rec):
        with writing("out_dir", log_path):
            log.write(json.dumps({k: v for k, v in rec.items() if not (isinstance(v, float) and not math.isfinite(v))}) + "\n")
            log.flush()

    with log:
        while tr.step_num < cfg.optim.steps and tr.elapsed < budget:
            rec = tr.step()
            bar.update(1)
            bar.set_postfix(loss=f"{rec['loss']:.3f}", rot=f"{rec['rot_deg']:.1f}")
            if tr.step_num % cfg.log_every == 0:
                write({**rec, "time_s": round(tr.elapsed, 1)})
            if tr.step_num % cfg.eval_every == 0:
                write({"step": tr.step_num, "time_s": round(tr.elapsed, 1), **tr.evaluate()})
            if tr.step_num % cfg.ckpt_every == 0:
                save(last)
        final = tr.evaluate() if tr.step_num % cfg.eval_every else {}
        # wall_s: this invocation, data loading and the feature cache included
        write({"step": tr.step_num, "time_s": round(tr.elapsed, 1), "wall_s": round(time.perf_counter() - wall0, 1), **final})
    bar.close()
    save(last)
    model_path = save(out / "model.pt", weights_only=True)
    with writing("out_dir", out / "curves.png"):
        plot_curves(log_path, out / "curves.png")
    return model_path
