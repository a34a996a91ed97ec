"""The simulated-monocular-depth model: seeded, and its statistics within the documented bounds."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twoview.depth.degrade import DepthDegradation, degrade_depth
from twoview.errors import ConfigError


def _depth(h=96, w=128, seed=0):
    rng = np.random.default_rng(seed)
    vv, uu = np.mgrid[0:h, 0:w]
    d = 2.0 + 0.01 * uu + 0.5 * np.sin(vv / 15.0) + 0.01 * rng.random((h, w))
    d[10:20, 30:50] = np.nan  # a hole
    return d


def test_same_seed_same_corruption_other_seed_differs():
    d = _depth()
    a, ia = degrade_depth(d, seed=3)
    b, ib = degrade_depth(d, seed=3)
    c, ic = degrade_depth(d, seed=4)
    np.testing.assert_array_equal(a, b)
    assert ia == ib
    assert not np.allclose(a, c, equal_nan=True)
    assert ic["seed"] == 4 and ia["scale"] != ic["scale"]
    assert np.array_equal(np.isnan(a), np.isnan(d))  # no drops by default: holes stay holes, nothing else


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_default_protocol_bounds(seed):
    """Scale in [0.85, 1.15] and a smooth field within +-5%: the ratio to the true depth is
    scale * (1 + 0.05 f) with |f| <= 1."""
    d = _depth()
    out, info = degrade_depth(d, seed=seed)
    assert 0.85 <= info["scale"] <= 1.15
    ratio = out / d
    ok = np.isfinite(ratio)
    field = ratio[ok] / info["scale"]
    assert field.min() >= 0.95 - 1e-9 and field.max() <= 1.05 + 1e-9
    assert field.max() - field.min() > 0.01  # the field is there
    # smooth: neighbouring pixels differ by a tiny fraction of the amplitude
    f2 = np.where(ok, ratio, np.nan) / info["scale"]
    assert np.nanmax(np.abs(np.diff(f2, axis=1))) < 0.01


def test_scale_distribution_covers_range():
    scales = np.array([degrade_depth(np.ones((8, 8)), seed=s)[1]["scale"] for s in range(400)])
    assert scales.min() >= 0.85 and scales.max() <= 1.15
    assert scales.min() < 0.87 and scales.max() > 1.13
    assert abs(scales.mean() - 1.0) < 0.02


def test_drops_and_edge_blur():
    d = np.full((64, 64), 2.0)
    d[:, 32:] = 4.0  # a depth edge
    p = DepthDegradation(scale_range=0.0, smooth_amplitude=0.0, drop_fraction=0.2, edge_blur_px=2.0)
    out, _ = degrade_depth(d, p, seed=1)
    frac = np.isnan(out).mean()
    assert 0.15 < frac < 0.25
    row = np.nanmean(out, axis=0)
    # far from the edge: unchanged; at the edge: intermediate ("flying pixels")
    assert abs(row[5] - 2.0) < 1e-6 and abs(row[60] - 4.0) < 1e-6
    assert 2.2 < row[31] < 3.8 and 2.2 < row[32] < 3.8


def test_no_degradation_is_identity():
    d = _depth()
    out, info = degrade_depth(d, DepthDegradation(scale_range=0.0, smooth_amplitude=0.0), seed=0)
    np.testing.assert_allclose(out, d, equal_nan=True)
    assert info["scale"] == 1.0


@pytest.mark.parametrize("bad", [{"scale_range": 1.0}, {"smooth_amplitude": -0.1}, {"drop_fraction": 1.0},
                                 {"edge_blur_px": -1.0}, {"smooth_grid": 1}, {"scales": 0.1}])
def test_bad_parameters_are_config_errors(bad):
    with pytest.raises(ConfigError):
        DepthDegradation.from_dict(bad)
