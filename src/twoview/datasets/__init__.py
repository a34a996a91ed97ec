"""Dataset readers in their native formats, yielding :class:`PairSample`."""

from twoview.datasets.base import PairSample

__all__ = ["PairSample"]
