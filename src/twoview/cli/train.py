"""``twoview train``: train the pose regressor (optionally with GCR) from a JSON config."""

from __future__ import annotations

import json
from pathlib import Path

from twoview.errors import InputError


def load_train_config(path: str | Path):
    """JSON file -> :class:`~twoview.regress.config.TrainConfig` (unknown keys rejected)."""
    from twoview.regress.config import TrainConfig

    path = Path(path)
    if not path.is_file():
        raise InputError("--config", f"file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise InputError("--config", f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise InputError("--config", f"{path} must hold a JSON object")
    return TrainConfig.from_dict(data)


def run(args) -> int:
    from twoview.regress.train import train

    # the overrides are checked here so that a bad value names the flag, not the config key
    if args.steps is not None and args.steps < 1:
        raise InputError("--steps", f"must be >= 1, got {args.steps}")
    if args.max_minutes is not None and not args.max_minutes > 0:
        raise InputError("--max-minutes", f"must be > 0, got {args.max_minutes}")
    if args.seed is not None and args.seed < 0:
        raise InputError("--seed", f"must be >= 0, got {args.seed}")
    cfg = load_train_config(args.config)
    overrides = {}
    if args.steps is not None:
        overrides["steps"] = args.steps
    if args.max_minutes is not None:
        overrides["max_minutes"] = args.max_minutes
    if args.seed is not None:
        overrides["seed"] = args.seed
    if overrides:
        cfg = cfg.replace(optim=cfg.optim.replace(**overrides))
    if args.out_dir:
        cfg = cfg.replace(out_dir=str(Path(args.out_dir).resolve()))
    path = train(cfg, base_dir=Path(args.config).resolve().parent, resume=not args.restart, progress=not args.no_progress)
    print(f"wrote {path}")
    print(f"log: {path.parent / 'log.jsonl'}; curves: {path.parent / 'curves.png'}")
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train the two-view pose regressor (GeLoc3r-style GCR optional)",
        description="Train the pose regressor from a JSON TrainConfig (relative paths inside it are "
        "resolved against the config file's folder). Resumes from OUT_DIR/last.pt unless --restart.",
    )
    p.add_argument("--config", required=True, metavar="FILE.json", help="training config (see configs/regress_*.json)")
    p.add_argument("--out-dir", metavar="DIR", help="override out_dir")
    p.add_argument("--steps", type=int, help="override optim.steps")
    p.add_argument("--max-minutes", type=float, help="override optim.max_minutes")
    p.add_argument("--seed", type=int, help="override optim.seed")
    p.add_argument("--restart", action="store_true", help="ignore an existing last.pt and start over")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
