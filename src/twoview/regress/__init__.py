"""Two-view pose regression (Reloc3r layout) trained with geometric consistency
regularisation (GeLoc3r). Only the regressor runs at inference.

Public API (torch is imported lazily):
    PoseRegressor.from_checkpoint(path=None).estimate(image0, image1, camera0, camera1,
        depth0=None, depth1=None) -> PoseResult
    estimate(image0, image1, checkpoint=None, ...) -> PoseResult   (loads the model each call)
    estimate_batch(pairs, checkpoint=None, batch_size=16) -> list[PoseResult]
    load_regressor(checkpoint=None), load_reloc3r(path_or_state, config=None)
    RegressorConfig, TrainConfig, preset(name), train(cfg, base_dir)
"""

from __future__ import annotations

from twoview.regress.config import RegressorConfig, TrainConfig, preset

__all__ = ["PoseRegressor", "RegressorConfig", "TrainConfig", "preset", "estimate", "estimate_batch", "load_regressor",
           "load_reloc3r", "train"]


def __getattr__(name):
    if name in ("PoseRegressor", "estimate", "estimate_batch", "load_regressor"):
        from twoview.regress import infer

        return getattr(infer, name)
    if name == "load_reloc3r":
        from twoview.regress.reloc3r import load_reloc3r

        return load_reloc3r
    if name == "train":
        from twoview.regress.train import train

        return train
    raise AttributeError(name)
