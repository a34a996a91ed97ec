"""benchmarks/refine_reference_trajectory.py: a reference trajectory refined by multiway
registration of ICL-NUIM's noise-free depth, checked on pairs it did not use and on the
true poses of frames 0-4."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from twoview.datasets.redwood import read_log_trajectory

pytest.importorskip("open3d")
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "refine_reference_trajectory.py"


def _script():
    spec = importlib.util.spec_from_file_location("refine_reference_trajectory", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_refined_reference_fits_the_depth_and_the_true_poses(shared_data, tmp_path):
    root = shared_data / "icl_nuim_livingroom1"
    out = tmp_path / "refined.log"
    assert _script().main([str(root), "--frames", "12", "--edge-gaps", "1", "2", "3", "--holdout-gaps", "5", "9",
                           "--holdout-stride", "1", "--out", str(out)]) == 0
    refined = read_log_trajectory(out)
    assert sorted(refined) == list(range(12))
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["edges_kept"] == report["edges_tried"] == 11 + 10 + 9
    # pairs 5 and 9 frames apart were not edges: the noise-free depth agrees with the refined
    # reference there, and the true poses of frames 0-4 agree with it better than with the given one
    held = report["holdout_pairs"]
    assert len(held) == 7 + 3 and max(r["refined"]["rot_deg_to_icp"] for r in held) < 0.05
    truth = report["true_pose_pairs"]
    assert len(truth) == 10
    worst = {name: max(t[name]["rot_deg"] for t in truth) for name in ("given", "refined")}
    assert worst["refined"] < 0.03 and worst["refined"] <= worst["given"], worst
    assert max(t["refined"]["t_m"] for t in truth) < 0.002


def test_edge_and_holdout_gaps_must_differ(shared_data, tmp_path):
    with pytest.raises(SystemExit):
        _script().main([str(shared_data / "icl_nuim_livingroom1"), "--edge-gaps", "1", "10", "--holdout-gaps", "10",
                        "--out", str(tmp_path / "x.log")])
    assert not (tmp_path / "x.log").exists()
