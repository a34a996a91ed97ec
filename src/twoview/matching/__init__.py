"""Feature matching front ends behind one interface.

    matcher = get_matcher(MatcherConfig(name="sift"))
    matches = matcher.match(image0, image1)   # RGB uint8 (H, W, 3) or grey (H, W)

Learned matchers import torch lazily, so the SIFT path works without it.
"""

from twoview.matching.base import Matcher, available_matchers, get_matcher

__all__ = ["Matcher", "available_matchers", "get_matcher"]
