"""``twoview estimate --pairs FILE``: many pairs in one call.

The pairs file is CSV with a header, or JSON lines (``.jsonl`` / ``.ndjson``), one pair a
row, with the keys

    image0, image1        the two images (required)
    K0, K1                intrinsics: "fx fy cx cy" (or "f cx cy", or the 9 numbers of K) in
                          CSV, a list or a 3x3 list in JSON; K1 defaults to K0; both default
                          to --K0 / --K1 (else EXIF or a guess, as for one pair)
    dist0, dist1          OpenCV distortion "k1 k2 p1 p2 [k3]"
    depth0, depth1        depth files
    depth_scale           units per metre of the depth PNGs (default --depth-scale)
    id                    the pair's name in the output (default: its line number)

Relative paths are relative to the pairs file's folder. Every row is one pipeline estimate
(the configuration the other flags describe, the same for all rows); the output
(``--json OUT.jsonl``) gets one JSON line per pair as it finishes, ``{"id", "line",
"image0", "image1", ...}`` with the fields of ``twoview estimate --json``, or ``"error"``
for a row that is bad input (named by its line number; the others go on). Run again with
the same output and the pairs already there are skipped (an interrupted run resumes; a
torn last line is dropped). ``--workers N`` runs N local processes, ``--engine ray`` runs
on Ray (``--address`` of a cluster, else a local one); each worker builds its pipeline
once. Exit status: 0 every pair has a pose, 1 some have none, 2 some rows were bad input.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from twoview.errors import InputError, TwoViewError

KEYS = ("image0", "image1", "K0", "K1", "dist0", "dist1", "depth0", "depth1", "depth_scale", "id")


def add_batch_args(p) -> None:
    g = p.add_argument_group("many pairs (--pairs)")
    g.add_argument("--pairs", metavar="FILE", help="CSV (with a header) or JSON lines of image pairs, each with its "
                   "intrinsics and optional depth; writes one JSON line per pair to --json (see the README)")
    g.add_argument("--workers", type=int, default=1, metavar="N", help="with --pairs: worker processes (or Ray CPUs)")
    g.add_argument("--engine", choices=["local", "ray"], default="local", help="with --pairs: where the workers run")
    g.add_argument("--address", metavar="ADDR", help="with --engine ray: the cluster (default: start a local Ray)")
    g.add_argument("--no-progress", action="store_true", help="with --pairs: no progress bar")


def read_pairs(path: str) -> tuple[list[dict], list[dict]]:
    """(rows, bad rows) of a pairs file; each row carries its ``line`` number, paths made
    absolute. A bad row is ``{"line", "id", "error"}``."""
    from twoview.io.text import existing_file, parse_json, read_text

    p = existing_file(path, "--pairs")
    text = read_text(p, "--pairs")
    base = p.parent
    rows, bad = [], []
    if p.suffix.lower() in (".jsonl", ".ndjson"):
        raw = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                obj = parse_json(line, "--pairs", f"{p}:{n}")
            except InputError as e:
                bad.append({"line": n, "id": str(n), "error": e.problem})
                continue
            raw.append((n, obj))
    else:
        lines = text.splitlines()
        reader = csv.DictReader(lines)
        header = reader.fieldnames or []
        unknown = sorted(set(h.strip() for h in header if h) - set(KEYS))
        if unknown or not {"image0", "image1"} <= set(h.strip() for h in header):
            raise InputError("--pairs", f"{p}: the header must name image0 and image1 and only {', '.join(KEYS)}"
                             + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
        raw = [(reader.line_num, {k.strip(): v for k, v in r.items() if k}) for r in reader]
    for n, obj in raw:
        try:
            rows.append(_row(obj, n, base))
        except InputError as e:
            bad.append({"line": n, "id": str(obj.get("id") or n) if isinstance(obj, dict) else str(n), "error": e.problem})
    ids = [r["id"] for r in rows]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise InputError("--pairs", f"{p}: the id {sorted(dup)[0]!r} is given to more than one pair")
    return rows, bad


def _row(obj, n: int, base: Path) -> dict:
    if not isinstance(obj, dict):
        raise InputError(f"line {n}", "expected an object with image0 and image1")
    unknown = sorted(set(obj) - set(KEYS))
    if unknown:
        raise InputError(f"line {n}", f"unknown key(s) {', '.join(unknown)}; valid: {', '.join(KEYS)}")
    row = {"line": n, "id": str(obj.get("id") or n)}
    for k in ("image0", "image1", "depth0", "depth1"):
        v = obj.get(k)
        if v in (None, ""):
            if k.startswith("image"):
                raise InputError(f"line {n}", f"no {k}")
            continue
        if not isinstance(v, str):
            raise InputError(f"line {n}", f"{k} must be a path, got {v!r}")
        row[k] = str((base / v) if not Path(v).is_absolute() else Path(v))
    for k in ("K0", "K1", "dist0", "dist1"):
        v = obj.get(k)
        if v in (None, ""):
            continue
        try:
            import numpy as np

            a = np.asarray([float(x) for x in v.replace(",", " ").split()] if isinstance(v, str) else v, dtype=float)
        except (TypeError, ValueError):
            raise InputError(f"line {n}", f"{k} must be numbers, got {v!r}") from None
        sizes = (4, 5) if k.startswith("dist") else (3, 4, 9)
        if a.size not in sizes or not np.all(np.isfinite(a)):
            raise InputError(f"line {n}", f"{k} must be {' or '.join(map(str, sizes))} finite numbers, got {v!r}")
        row[k] = a.reshape(3, 3).tolist() if a.size == 9 else a.tolist()
    if obj.get("depth_scale") not in (None, ""):
        try:
            s = float(obj["depth_scale"])
        except (TypeError, ValueError):
            raise InputError(f"line {n}", f"depth_scale must be a number, got {obj['depth_scale']!r}") from None
        if not s > 0:
            raise InputError(f"line {n}", f"depth_scale must be positive, got {s}")
        row["depth_scale"] = s
    return row


def done_ids(path: str) -> set[str]:
    """Ids already in an output file (a torn last line, from an interrupted run, is cut off)."""
    p = Path(path)
    if not p.is_file():
        return set()
    data = p.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):  # a line the interrupted run did not finish
        with open(p, "r+b") as f:
            f.truncate(end)
    out = set()
    for line in data[:end].splitlines():
        try:
            out.add(str(json.loads(line)["id"]))
        except (ValueError, KeyError, TypeError):
            continue
    return out


# --- workers --------------------------------------------------------------------------
_PIPELINE = None
_DEFAULTS: dict = {}


def _init_worker(config: dict, defaults: dict) -> None:
    global _PIPELINE, _DEFAULTS
    from twoview._threads import start_pool_worker
    from twoview.pipeline import Pipeline

    start_pool_worker()
    _PIPELINE, _DEFAULTS = Pipeline(config), defaults


def _estimate_row(row: dict) -> dict:
    """The output line of one row (never raises: bad input and bugs become ``error``)."""
    from twoview.view import load_views

    d = _DEFAULTS
    out = {"id": row["id"], "line": row["line"], "image0": row["image0"], "image1": row["image1"]}
    try:
        k0 = row.get("K0", d.get("K0"))
        k1 = row.get("K1", d.get("K1") if "K0" not in row else None) or k0
        cams = []
        for K, dist in ((k0, row.get("dist0")), (k1, row.get("dist1", row.get("dist0")))):
            cams.append({"K": K, "dist": dist} if (K is not None and dist is not None) else K)
        views = load_views(row["image0"], row["image1"], cams[0], cams[1], row.get("depth0"), row.get("depth1"),
                           depth_scale=row.get("depth_scale", d.get("depth_scale")))
        res = _PIPELINE(*views)
        out.update(res.to_dict())
        out["exit"] = 0 if res.success else 1
    except TwoViewError as e:
        out.update(success=False, error=f"line {row['line']}: {e}", exit=2)
    except Exception as e:  # noqa: BLE001 - one broken pair must not stop the others
        out.update(success=False, error=f"line {row['line']}: internal error {type(e).__name__}: {e}", exit=3)
    return out


def run_batch(args) -> int:
    from twoview.cli.estimate import pipeline_config
    from twoview.cli.common import STDOUT, parse_intrinsics, positive_float

    if args.image0 or args.image1:
        raise InputError("--pairs", "give either two images or --pairs FILE, not both")
    if not args.json:
        raise InputError("--json", "--pairs writes one JSON line per pair: give --json OUT.jsonl (or - for standard output)")
    for flag, attr in (("--viz", "viz"), ("--view", "view"), ("--depth0", "depth0"), ("--depth1", "depth1"),
                       ("--intrinsics", "intrinsics"), ("--depth-model", "depth_model")):
        if getattr(args, attr, None):
            raise InputError(flag, "is per pair: put it in the --pairs file (or leave it out)")
    if args.workers < 1:
        raise InputError("--workers", f"must be >= 1, got {args.workers}")
    if args.json != STDOUT:
        from twoview.cli.common import check_output_files

        check_output_files(args, {"json": "--json"})
    cfg = pipeline_config(args).to_dict()
    defaults = {"K0": _k(parse_intrinsics(args.K0, "--K0")), "K1": _k(parse_intrinsics(args.K1, "--K1")),
                "depth_scale": positive_float("--depth-scale")(args.depth_scale) if args.depth_scale else None}
    rows, bad = read_pairs(args.pairs)
    skip = done_ids(args.json) if args.json != STDOUT else set()
    todo = [r for r in rows if r["id"] not in skip]
    bad = [b for b in bad if b["id"] not in skip]
    stream = _open_output(args)
    status = {0: 0, 1: 0, 2: 0, 3: 0}
    for b in bad:
        print(f"twoview estimate: --pairs line {b['line']}: {b['error']}", file=sys.stderr)
        _emit(stream, {**b, "success": False, "exit": 2})
        status[2] += 1
    print(f"twoview estimate --pairs: {len(rows) + len(bad)} rows, {len(skip)} already done, {len(todo)} to estimate "
          f"({args.engine}, {args.workers} worker{'s' if args.workers > 1 else ''})", file=sys.stderr)
    from tqdm import tqdm

    bar = tqdm(total=len(todo), disable=args.no_progress or not todo, file=sys.stderr, unit="pair")
    try:
        for out in _run(todo, cfg, defaults, args):
            _emit(stream, out)
            status[out["exit"]] += 1
            if out.get("error"):
                bar.write(f"twoview estimate: --pairs {out['error']}", file=sys.stderr)
            bar.update(1)
    finally:
        bar.close()
        if stream is not sys.stdout:
            stream.close()
    print(f"twoview estimate --pairs: {status[0]} poses, {status[1]} no pose, {status[2]} bad rows"
          + (f", {status[3]} internal errors" if status[3] else ""), file=sys.stderr)
    return 3 if status[3] else 2 if status[2] else 1 if status[1] else 0


def _k(v):
    import numpy as np

    return None if v is None else np.asarray(v, float).tolist()


def _open_output(args):
    from twoview.cli.common import STDOUT

    if args.json == STDOUT:
        return getattr(args, "json_stream", None) or sys.stdout
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    return open(args.json, "a", encoding="utf-8")


def _emit(stream, obj) -> None:
    """One line, flushed: a run killed now leaves whole lines (and at most a torn last one)."""
    from twoview.io.atomic import _json_default

    stream.write(json.dumps(obj, default=_json_default, allow_nan=False) + "\n")
    stream.flush()


def _run(rows: list[dict], cfg: dict, defaults: dict, args):
    """Output lines as pairs finish (in any order)."""
    if not rows:
        return
    if args.engine == "ray":
        try:
            from ray.util.multiprocessing import Pool
        except ImportError:
            raise InputError("--engine", "ray is not installed (pip install 'twoview[ray]')") from None
        with Pool(processes=args.workers, initializer=_init_worker, initargs=(cfg, defaults),
                  ray_address=args.address) as pool:
            yield from pool.imap_unordered(_estimate_row, rows)
        return
    if args.workers == 1:
        _init_worker(cfg, defaults)
        for r in rows:
            yield _estimate_row(r)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(args.workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                             initargs=(cfg, defaults)) as ex:
        futures = [ex.submit(_estimate_row, r) for r in rows]
        for f in as_completed(futures):
            yield f.result()
