"""``twoview train``: train the pose regressor (optionally with GCR) from a JSON config."""

from __future__ import annotations

from pathlib import Path

from twoview.cli.common import as_flag_error
from twoview.errors import ConfigError, InputError


def load_train_config(path: str | Path):
    """JSON file -> :class:`~twoview.regress.config.TrainConfig` (unknown keys rejected)."""
    from twoview.regress.config import TrainConfig

    from twoview.io.text import read_json

    path = Path(path)
    data = read_json(path, "--config")
    if not isinstance(data, dict):
        raise InputError("--config", f"{path} must hold a JSON object")
    return TrainConfig.from_dict(data)


def run(args) -> int:
    from twoview.regress.train import train

    cfg = load_train_config(args.config)
    overrides = {}
    if args.steps is not None:
        overrides["steps"] = args.steps
    if args.max_minutes is not None:
        overrides["max_minutes"] = args.max_minutes
    if args.seed is not None:
        overrides["seed"] = args.seed
    if overrides:
        try:
            cfg = cfg.replace(optim=cfg.optim.replace(**overrides))
        except ConfigError as e:  # OptimConfig's own checks, under the flag that was typed
            raise as_flag_error(e, {"optim.steps": "--steps", "optim.max_minutes": "--max-minutes",
                                    "optim.seed": "--seed"}) from None
    if args.out_dir:
        cfg = cfg.replace(out_dir=str(Path(args.out_dir).resolve()))
    try:
        path = train(cfg, base_dir=Path(args.config).resolve().parent, resume=not args.restart, progress=not args.no_progress)
    except InputError as e:
        if e.what == "out_dir" and args.out_dir:
            raise InputError("--out-dir", e.problem) from None
        raise
    print(f"wrote {path}")
    print(f"log: {path.parent / 'log.jsonl'}; curves: {path.parent / 'curves.png'}")
    return 0


def register(sub) -> None:
    from twoview.cli import EXIT_STATUS_HELP_NO_POSE

    p = sub.add_parser(
        "train",
        help="train the two-view pose regressor (GeLoc3r-style GCR optional)",
        description="Train the pose regressor from a JSON TrainConfig (relative paths inside it are "
        "resolved against the config file's folder). Resumes from OUT_DIR/last.pt unless --restart. "
        + EXIT_STATUS_HELP_NO_POSE,
    )
    p.add_argument("--config", required=True, metavar="FILE.json", help="training config (see configs/regress_*.json)")
    p.add_argument("--out-dir", metavar="DIR", help="override out_dir")
    p.add_argument("--steps", type=int, help="override optim.steps")
    p.add_argument("--max-minutes", type=float, help="override optim.max_minutes")
    p.add_argument("--seed", type=int, help="override optim.seed")
    p.add_argument("--restart", action="store_true", help="ignore an existing last.pt and start over")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
