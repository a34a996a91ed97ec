"""Dataset readers in their native formats, yielding :class:`PairSample`.

    ds = get_dataset("tum", "/data/rgbd_dataset_freiburg1_xyz", gaps=[5, 10])
    for sample in ds.pairs(): ...

Sequence readers take the pair-selection options of :class:`PairSelection`
(``pairs_file``, ``gaps``, ``stride``, rotation / translation / overlap ranges,
``max_pairs``) besides their own options.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect

from twoview.datasets.base import PairSample
from twoview.datasets.common import Dataset, Frame, PairSelection, SequenceDataset
from twoview.errors import InputError

#: kind -> "module:Class"
DATASETS = {
    "tum": "twoview.datasets.tum:TUMDataset",
    "7scenes": "twoview.datasets.sevenscenes:SevenScenesDataset",
    "icl_nuim": "twoview.datasets.redwood:RedwoodLogDataset",
    "redwood": "twoview.datasets.redwood:RedwoodLogDataset",
    "kitti": "twoview.datasets.kitti:KITTIOdometryDataset",
    "superglue_pairs": "twoview.datasets.pairlist:SuperGluePairsDataset",
    "scannet1500": "twoview.datasets.pairlist:SuperGluePairsDataset",
    "megadepth1500": "twoview.datasets.megadepth:MegaDepthSceneInfoDataset",
    "realestate10k": "twoview.datasets.realestate10k:RealEstate10KDataset",
    "co3d": "twoview.datasets.co3d:CO3DDataset",
}

_SELECTION_KEYS = {f.name for f in dataclasses.fields(PairSelection)}


def available_datasets() -> list[str]:
    return sorted(DATASETS)


def get_dataset(kind: str, root, **options) -> Dataset:
    """Build a reader. Unknown kinds or options raise :class:`InputError`.

    Pair-selection keys (see :class:`PairSelection`) go to sequence readers' selection;
    the rest are the reader's own keyword options.
    """
    if kind not in DATASETS:
        raise InputError("--dataset", f"unknown dataset kind {kind!r}; available: {', '.join(available_datasets())}")
    mod, _, name = DATASETS[kind].partition(":")
    cls = getattr(importlib.import_module(mod), name)
    params = inspect.signature(cls.__init__).parameters
    if issubclass(cls, SequenceDataset):
        sel = {k: options.pop(k) for k in list(options) if k in _SELECTION_KEYS}
        options["selection"] = sel
    elif "pairs_file" in options and "pairs_file" not in params:
        raise InputError("--pairs", f"dataset kind {kind!r} takes its pairs from its own files")
    unknown = sorted(set(options) - set(params) - {"self"})
    if unknown:
        valid = sorted((set(params) - {"self", "root", "selection"}) | (_SELECTION_KEYS if issubclass(cls, SequenceDataset) else set()))
        raise InputError("dataset option", f"unknown option(s) {', '.join(unknown)} for {kind!r}; valid: {', '.join(valid)}")
    ds = cls(root, **options)
    ds.kind = kind
    return ds


__all__ = ["DATASETS", "Dataset", "Frame", "PairSample", "PairSelection", "SequenceDataset", "available_datasets", "get_dataset"]
