"""The fixed train / held-out split of the regressor's data (``configs/regress_split.json``).

Each entry names an RGB-D sequence read by the project's dataset readers
(:func:`twoview.datasets.get_dataset`: one data path, no reader per format here) and the
frames it gives to training and to evaluation, as inclusive ranges of
:attr:`twoview.datasets.Frame.index` (the index frame gaps count in), or ``"all"``.
A sequence may give frames to both; its ranges must not overlap.

    {"data_root": "../../shared/data",
     "sequences": [{"name": "tum_fr1_rpy", "dataset": "tum", "root": "tum/fr1_rpy_sub12",
                    "train": [[0, 35]], "heldout": [[40, 57]], "why": "..."}, ...]}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from twoview.config import StrictConfig, _check
from twoview.errors import ConfigError, InputError

#: The split shipped with the repository.
DEFAULT_SPLIT = Path(__file__).resolve().parents[3] / "configs" / "regress_split.json"


@dataclass
class SequenceSplit(StrictConfig):
    """One sequence of the split.

    Attributes:
        name: short name (logs, pair lists, result tables).
        dataset: reader kind (``tum``, ``icl_nuim``, ``redwood``, ``7scenes``, ...).
        root: the sequence folder, relative to the split's ``data_root``.
        options: reader options (e.g. ``{"max_gt_gap": 1.0}``).
        train, heldout: inclusive ``[first, last]`` frame-index ranges, or ``"all"``.
        synthetic: rendered rather than captured (ICL-NUIM): its depth gets the
            Kinect-class corruption in training.
        why: the reason for the sequence's role (kept with the file).
    """

    name: str = ""
    dataset: str = ""
    root: str = ""
    options: dict = field(default_factory=dict)
    train: list | str = field(default_factory=list)
    heldout: list | str = field(default_factory=list)
    synthetic: bool = False
    why: str = ""

    def validate(self):
        _check(bool(self.name) and bool(self.dataset) and bool(self.root), "split sequences need name, dataset and root")
        for role in ("train", "heldout"):
            r = getattr(self, role)
            _check(r == "all" or (isinstance(r, list) and all(isinstance(x, list) and len(x) == 2 and x[0] <= x[1]
                                                              for x in r)),
                   f"split sequence {self.name!r}: {role} must be \"all\" or a list of [first, last] ranges")
        _check(not (self.train == "all" and self.heldout) and not (self.heldout == "all" and self.train),
               f"split sequence {self.name!r}: \"all\" in one role leaves no frame for the other")
        if isinstance(self.train, list) and isinstance(self.heldout, list):
            for a in self.train:
                for b in self.heldout:
                    _check(a[1] < b[0] or b[1] < a[0],
                           f"split sequence {self.name!r}: train range {a} overlaps held-out range {b}")

    def selects(self, role: str, index: int) -> bool:
        """Whether frame ``index`` belongs to ``role`` ("train" or "heldout")."""
        r = getattr(self, role)
        return r == "all" or any(a <= index <= b for a, b in r)


@dataclass
class Split(StrictConfig):
    """The whole split. ``data_root`` is relative to the split file's folder."""

    data_root: str = "../../shared/data"
    sequences: list[SequenceSplit] = field(default_factory=list)
    description: str = ""

    def validate(self):
        names = [s.name for s in self.sequences]
        _check(len(set(names)) == len(names), f"split sequence names must be unique, got {names}")

    def sequence(self, name: str) -> SequenceSplit:
        for s in self.sequences:
            if s.name == name:
                return s
        raise InputError("split", f"no sequence {name!r}; have {[s.name for s in self.sequences]}")


def load_split(path: str | Path | None = None) -> tuple[Split, Path]:
    """The split and its resolved data root (``path`` None = the shipped split).

    Raises:
        InputError: a missing or malformed file (naming it).
    """
    path = Path(path) if path is not None else DEFAULT_SPLIT
    if not path.is_file():
        raise InputError("data.split", f"split file not found: {path}")
    try:
        raw = json.loads(path.read_text())
        split = Split.from_dict(raw)
    except (ValueError, ConfigError) as e:
        raise InputError(str(path), f"not a valid split file: {e}") from None
    root = Path(split.data_root)
    return split, (root if root.is_absolute() else (path.parent / root).resolve())


def open_sequence(spec: SequenceSplit, data_root: Path):
    """The dataset reader of a split sequence (all its frames; no pair selection)."""
    from twoview.datasets import get_dataset

    return get_dataset(spec.dataset, data_root / spec.root, **spec.options)
