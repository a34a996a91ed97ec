"""`twoview estimate --pairs`: many pairs in one call, resumable, bad rows by line number."""

from __future__ import annotations

import json

import pytest

from twoview.cli import main

ICL = "icl_nuim_livingroom1"
K = "481.2 480.0 319.5 239.5"
FAST = ["--refine", "none", "--no-register"]  # the batch machinery is tested, not the refinement


def _rows(root, frames):
    return [(root / "color" / f"{a:05d}.jpg", root / "color" / f"{b:05d}.jpg", root / "depth_clean" / f"{a:05d}.png",
             root / "depth_clean" / f"{b:05d}.png") for a, b in frames]


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_csv_pairs_with_a_bad_row_and_resume(shared_data, tmp_path, capsys):
    root = shared_data / ICL
    rows = _rows(root, [(0, 10), (20, 30)])
    lst = tmp_path / "pairs.csv"
    lines = ["image0,image1,K0,depth0,depth1,depth_scale,id"]
    lines += [f"{a},{b},{K},{da},{db},1000,p{k}" for k, (a, b, da, db) in enumerate(rows)]
    lines += [f"{rows[0][0]},missing.jpg,{K},,,,bad"]  # line 4: a missing image
    lines += ["only-one-column"]  # line 5: no image1
    lst.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    assert main(["estimate", "--pairs", str(lst), "--json", str(out), "--no-progress", *FAST]) == 2
    got = {r["id"]: r for r in _lines(out)}
    assert got["p0"]["success"] and got["p1"]["success"] and got["p0"]["metric"]
    assert "error" in got["bad"] and "line 4" in got["bad"]["error"] and "image1" in got["bad"]["error"]
    assert got["5"]["line"] == 5 and "no image1" in got["5"]["error"]
    err = capsys.readouterr().err
    assert "line 4" in err and "line 5" in err
    # resume: nothing left to do; a torn last line (an interrupted run) is dropped and redone
    text = out.read_text()
    out.write_text(text[: text.rindex("{")] + '{"id": "p')
    assert main(["estimate", "--pairs", str(lst), "--json", str(out), "--no-progress", *FAST]) == 2
    again = _lines(out)
    assert sorted(r["id"] for r in again) == sorted(got)


def test_jsonl_pairs_on_two_workers(shared_data, tmp_path, capfd):
    root = shared_data / ICL
    lst = tmp_path / "pairs.jsonl"
    with open(lst, "w") as f:
        for k, (a, b, da, db) in enumerate(_rows(root, [(0, 10), (10, 20), (40, 50)])):
            f.write(json.dumps({"image0": str(a), "image1": str(b), "K0": [481.2, 480.0, 319.5, 239.5],
                                "depth0": str(da), "depth1": str(db), "depth_scale": 1000}) + "\n")
        f.write(json.dumps({"image0": str(a), "image1": str(b), "id": "no K"}) + "\n")  # a field of view assumed
    out = tmp_path / "out.jsonl"
    assert main(["estimate", "--pairs", str(lst), "--json", str(out), "--workers", "2", "--no-progress", *FAST]) in (0, 1)
    got = _lines(out)
    assert len(got) == 4 and all(r["success"] and r["metric"] for r in got if r["id"] != "no K")
    assert sorted(r["line"] for r in got) == [1, 2, 3, 4]
    # the workers (spawned processes) print the command's warnings as the command does
    said = [ln for ln in capfd.readouterr().err.splitlines() if "no intrinsics given" in ln]
    assert said and all(ln.startswith("twoview: warning: ") for ln in said), said


@pytest.mark.parametrize("extra, flag", [
    (["a.jpg", "b.jpg"], "--pairs"),           # two images and a list
    ([], "--json"),                            # nowhere to write
    (["--viz", "x.png"], "--viz"),             # a per-pair output
    (["--workers", "0"], "--workers"),
])
def test_bad_batch_arguments(tmp_path, capsys, extra, flag):
    lst = tmp_path / "pairs.csv"
    lst.write_text("image0,image1\na.jpg,b.jpg\n")
    args = ["estimate", "--pairs", str(lst), *extra]
    if flag != "--json":
        args += ["--json", str(tmp_path / "o.jsonl")]
    assert main(args) == 2
    assert flag in capsys.readouterr().err


def test_a_header_without_the_images_is_refused(tmp_path, capsys):
    lst = tmp_path / "pairs.csv"
    lst.write_text("left,right\na.jpg,b.jpg\n")
    assert main(["estimate", "--pairs", str(lst), "--json", str(tmp_path / "o.jsonl")]) == 2
    assert "image0 and image1" in capsys.readouterr().err
