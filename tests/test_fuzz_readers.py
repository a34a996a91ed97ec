"""Fuzzed readers: over 10,000 mutated files fed to every file reader of the library.

Each reader gets a seeded stream of mutations of valid files (byte flips, truncation,
insertion, header fields set to huge or broken values, NaN/inf and other odd tokens, JSON
trees rearranged or nested thousands deep, ...). Only the library's own errors
(:class:`twoview.errors.TwoViewError`: InputError, ConfigError) may come out; no input may
hang (a watchdog per input: an alarm that fails the input, and ``faulthandler`` that ends a
process stuck in C code); nothing may allocate wildly (the address space is capped while the
readers run, so a header claiming 10^9 Gaussians or 30000x30000 pixels has to be refused
before allocating). The same inputs on every run (seeded). The number of inputs per reader is
printed at the end of the module (``COUNTS``).
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import gzip
import io
import json
import random
import signal
import struct
import sys
import traceback
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from twoview.errors import TwoViewError

SEED = 20240519
#: an input taking longer than this is a hang (they take milliseconds)
PER_INPUT_SECONDS = 5.0
#: address space the readers may add while fuzzing (a 30000x30000 RGB decode needs 2.7 GB)
MEMORY_HEADROOM = 1_500_000_000
#: inputs per reader, filled as the tests run (printed at the end of the module)
COUNTS: dict[str, int] = {}
#: of those, the inputs refused with one of the library's errors (the rest were read)
REFUSED: dict[str, int] = {}

# --- the mutator -----------------------------------------------------------------------------
#: tokens a number in a text file is replaced with
ODD_TOKENS = ["nan", "NaN", "inf", "-inf", "1e309", "-1e309", "0", "-0", "1e3", "-1", "4294967296",
              "99999999999999999999999", "1e-320", "3.4e38", "0x10", "", "abc", "1,5", "\x00", "é",
              "1000000000", "-2147483649", "0.0000001", "+", ".", "1e", "١٢"]
#: values a JSON node is replaced with
ODD_VALUES = [None, True, False, 0, -1, 1e308, float("nan"), float("inf"), "", "x", "1", [], {}, [[]], [1, 2],
              {"a": 1}, 10**30, -0.0, [None] * 3, "é\x00", [[1, 2, 3], [4, 5]]]


class Mutator:
    """Seeded mutations of bytes, text and JSON (Python's ``random``: stable across versions)."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    # bytes ---------------------------------------------------------------------------------
    def bytes(self, data: bytes, rounds: int | None = None) -> tuple[bytes, str]:
        ops = []
        for _ in range(rounds or self.rng.randint(1, 3)):
            data, op = self._byte_op(bytearray(data))
            ops.append(op)
        return bytes(data), "+".join(ops)

    def _byte_op(self, b: bytearray) -> tuple[bytearray, str]:
        r, n = self.rng, len(b)
        op = r.choice(["flip", "flip", "set", "truncate", "insert", "delete", "dup", "zero", "append", "empty"])
        if n == 0:
            op = "insert"
        if op == "flip":
            for _ in range(r.randint(1, 8)):
                i = r.randrange(n)
                b[i] ^= 1 << r.randrange(8)
        elif op == "set":
            for _ in range(r.randint(1, 4)):
                b[r.randrange(n)] = r.choice([0, 0xFF, 0x7F, 0x80, r.randrange(256)])
        elif op == "truncate":
            b = b[: r.randrange(n)]
        elif op == "insert":
            i = r.randrange(n + 1)
            b[i:i] = bytes(r.randrange(256) for _ in range(r.randint(1, 16)))
        elif op == "delete":
            i = r.randrange(n)
            del b[i : i + r.randint(1, 64)]
        elif op == "dup":
            i = r.randrange(n)
            j = min(n, i + r.randint(1, 256))
            b[i:i] = b[i:j]
        elif op == "zero":
            i = r.randrange(n)
            j = min(n, i + r.randint(1, 64))
            b[i:j] = bytes(j - i)
        elif op == "append":
            b += bytes(r.randrange(256) for _ in range(r.randint(1, 64)))
        else:
            b = bytearray()
        return b, op

    # text ----------------------------------------------------------------------------------
    def text(self, data: bytes) -> tuple[bytes, str]:
        """Line and token edits (numbers become NaN, huge, empty, ...), sometimes byte edits."""
        if self.rng.random() < 0.2:
            return self.bytes(data)
        lines = data.decode("utf-8", errors="surrogateescape").split("\n")
        ops = []
        for _ in range(self.rng.randint(1, 3)):
            lines, op = self._line_op(lines)
            ops.append(op)
        out = "\n".join(lines).encode("utf-8", errors="surrogateescape")
        if self.rng.random() < 0.05:
            i = self.rng.randrange(len(out) + 1)
            out, ops = out[:i] + bytes([self.rng.choice([0x80, 0xFF, 0xC3, 0xE9])]) + out[i:], ops + ["non-utf8"]
        return out, "+".join(ops)

    def _line_op(self, lines: list[str]) -> tuple[list[str], str]:
        r = self.rng
        if not lines:
            return [r.choice(ODD_TOKENS)], "line-new"
        i = r.randrange(len(lines))
        op = r.choice(["token", "token", "token", "drop-token", "add-token", "drop-line", "dup-line", "swap",
                       "cut-line", "blank", "comment", "many-lines"])
        toks = lines[i].split(" ")
        if op == "token":
            toks[r.randrange(len(toks))] = r.choice(ODD_TOKENS)
            lines[i] = " ".join(toks)
        elif op == "drop-token":
            del toks[r.randrange(len(toks))]
            lines[i] = " ".join(toks)
        elif op == "add-token":
            toks.insert(r.randrange(len(toks) + 1), r.choice(ODD_TOKENS + toks))
            lines[i] = " ".join(toks)
        elif op == "drop-line":
            del lines[i]
        elif op == "dup-line":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = r.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "cut-line":
            lines[i] = lines[i][: r.randrange(len(lines[i]) + 1)]
        elif op == "blank":
            lines.insert(i, r.choice(["", " ", "\t", "\r"]))
        elif op == "comment":
            lines.insert(i, "# " + r.choice(ODD_TOKENS))
        else:  # a long file of copies
            lines = lines[:i] + [lines[i]] * r.randint(20, 100) + lines[i:]
        return lines, op

    # JSON ----------------------------------------------------------------------------------
    def json(self, obj) -> tuple[bytes, str]:
        """A structural edit of the tree (a node replaced, deleted, wrapped, nested deep),
        serialised; sometimes a text or byte edit of the serialised text."""
        r = self.rng
        if r.random() < 0.15:
            return self.text(json.dumps(obj, indent=r.choice([None, 1])).encode())
        obj = json.loads(json.dumps(obj))
        op = r.choice(["replace", "replace", "replace", "delete", "add-key", "wrap", "deep", "deep-root"])
        if op == "deep-root":
            d = r.choice([50, 1000, 100_000])
            return ("[" * d + "1" + "]" * d).encode(), f"deep-root({d})"
        parent, key = self._pick(obj)
        if parent is None:
            return json.dumps(r.choice(ODD_VALUES)).encode(), "root"
        if op == "replace":
            parent[key] = r.choice(ODD_VALUES)
        elif op == "delete":
            del parent[key]
        elif op == "add-key":
            if isinstance(parent, dict):
                parent[r.choice(["extra", "K", "cam1_from_cam0", "", "build", "version"])] = r.choice(ODD_VALUES)
            else:
                parent.insert(key, r.choice(ODD_VALUES))
        elif op == "wrap":
            parent[key] = [parent[key]]
        text = json.dumps(obj)
        if op == "deep":
            d = r.choice([50, 1000, 100_000])
            marker = json.dumps(parent[key]) if key in (parent if isinstance(parent, dict) else range(len(parent))) else "1"
            text = text.replace(marker, "[" * d + marker + "]" * d, 1)
            op = f"deep({d})"
        return text.encode(), op

    def _pick(self, obj):
        """A random (container, key) inside ``obj`` (None, None for a scalar root)."""
        nodes = []

        def walk(o):
            if isinstance(o, dict):
                for k, v in o.items():
                    nodes.append((o, k))
                    walk(v)
            elif isinstance(o, list):
                for i, v in enumerate(o):
                    nodes.append((o, i))
                    walk(v)

        walk(obj)
        return self.rng.choice(nodes) if nodes else (None, None)

    def pick(self, items):
        return self.rng.choice(items)


# --- format-aware edits ----------------------------------------------------------------------
def png_with_size(data: bytes, width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height`` (its CRC fixed, so decoders trust it)."""
    ihdr = data[12:29]  # "IHDR" + 13 bytes
    body = b"IHDR" + struct.pack(">II", width, height) + ihdr[12:17]
    return data[:8] + struct.pack(">I", 13) + body + struct.pack(">I", zlib.crc32(body)) + data[33:]


def jpeg_with_size(data: bytes, width: int, height: int) -> bytes:
    """A JPEG whose SOF segment claims ``width`` x ``height``."""
    for marker in (b"\xff\xc0", b"\xff\xc2", b"\xff\xc1"):
        i = data.find(marker)
        if i >= 0:
            return data[: i + 5] + struct.pack(">HH", height & 0xFFFF, width & 0xFFFF) + data[i + 9 :]
    return data


HUGE_SIDES = [0, 1, 2, 15, 100_000, 30_000, 65_535, 2**31 - 1, 2**32 - 1]


def mutate_image(m: Mutator, data: bytes, kind: str) -> tuple[bytes, str]:
    r = m.rng
    if r.random() < 0.25:
        w, h = r.choice(HUGE_SIDES + [64]), r.choice(HUGE_SIDES + [48])
        data = png_with_size(data, w, h) if kind == "png" else jpeg_with_size(data, w, h)
        op = f"size({w}x{h})"
        if r.random() < 0.5:
            return data, op
        data, more = m.bytes(data)
        return data, op + "+" + more
    return m.bytes(data)


def npy_with_header(arr: np.ndarray, r: random.Random) -> tuple[bytes, str]:
    """An .npy whose header dict is edited: a shape, dtype or order that the data does not back."""
    buf = io.BytesIO()
    np.save(buf, arr)
    data = buf.getvalue()
    hlen = struct.unpack("<H", data[8:10])[0]
    header = data[10 : 10 + hlen].decode("latin1")
    edit = r.choice(["shape", "shape", "dtype", "order"])
    if edit == "shape":
        shape = r.choice(["(0, 64)", "(48, 0)", "(0,)", "()", "(48,)", "(48, 64, 3)", "(1000000, 1000000)",
                          "(100000, 100000)", "(-1, 64)", "(48, 64, 1)", "(3072,)", "(1, 3072)", "(3072, 1)",
                          "(2**40, 2)", "(48, 'a')"])
        header = header.replace(str(tuple(arr.shape)), shape)
    elif edit == "dtype":
        header = header.replace(arr.dtype.str, r.choice(["|O", "<c16", "<U3", ">f8", "|V8", "|b1", "<M8[s]", "<f2", "xx"]))
    else:
        header = header.replace("False", "True")
    header = header.ljust(hlen)[: max(hlen, len(header))]
    return data[:8] + struct.pack("<H", len(header)) + header.encode("latin1") + data[10 + hlen :], f"npy-{edit}"


def ply_header_edit(data: bytes, r: random.Random) -> tuple[bytes, str]:
    """Edits of a PLY header: counts, properties, format, end_header."""
    end = data.find(b"end_header\n")
    head, body = data[: end + len(b"end_header\n")].decode("ascii"), data[end + len(b"end_header\n") :]
    lines = head.split("\n")
    edit = r.choice(["count", "count", "count", "noname", "dropprop", "rename", "type", "list", "format", "noeol",
                     "element", "dupprop", "tail"])
    if edit == "count":
        n = r.choice(["1e3", "-1", "", "10", "1000000000", "4294967296", "0", "99999999999999999999", "0x10", "3.5"])
        lines = [f"element vertex {n}" if ln.startswith("element vertex") else ln for ln in lines]
        edit = f"count({n})"
    elif edit == "noname":
        props = [k for k, ln in enumerate(lines) if ln.startswith("property")]
        k = r.choice(props)
        lines[k] = " ".join(lines[k].split()[:2])
    elif edit == "dropprop":
        props = [k for k, ln in enumerate(lines) if ln.startswith("property")]
        del lines[r.choice(props)]
    elif edit == "rename":
        props = [k for k, ln in enumerate(lines) if ln.startswith("property")]
        k = r.choice(props)
        lines[k] = lines[k].rsplit(" ", 1)[0] + " " + r.choice(["feat_x", "feat_", "x", "f_dc_9", "é", "rot_4"])
    elif edit == "type":
        props = [k for k, ln in enumerate(lines) if ln.startswith("property")]
        k = r.choice(props)
        parts = lines[k].split()
        parts[1] = r.choice(["double", "uchar", "int", "half", "string", "float16"])
        lines[k] = " ".join(parts)
    elif edit == "list":
        lines.insert(3, "property list uchar int vertex_indices")
    elif edit == "format":
        lines[1] = r.choice(["format binary_big_endian 1.0", "format ascii 1.0", "format binary_little_endian 1.0",
                             "format", "format foo 1.0", "format binary_little_endian"])
    elif edit == "noeol":
        return data[:end] + b"end_header" + body[:0], "noeol"
    elif edit == "element":
        lines.insert(2, r.choice(["element face 3", "element vertex 5", "element", "element face x"]))
    elif edit == "dupprop":
        props = [k for k, ln in enumerate(lines) if ln.startswith("property")]
        k = r.choice(props)
        lines.insert(k, lines[k])
    else:
        body = body[: r.randrange(len(body) + 1)]
    return "\n".join(lines).encode("ascii", errors="replace") + body, f"ply-{edit}"


# --- running inputs ---------------------------------------------------------------------------
class Hang(BaseException):
    """Raised by the per-input alarm (a BaseException: no reader's ``except Exception`` swallows it)."""


@contextlib.contextmanager
def memory_cap(extra: int):
    """Cap this process's address space at its current size plus ``extra`` (Linux)."""
    try:
        import resource

        pages = int(Path("/proc/self/statm").read_text().split()[0])
        vm = pages * resource.getpagesize()
        old = resource.getrlimit(resource.RLIMIT_AS)
        limit = vm + extra
        if old[1] != resource.RLIM_INFINITY:
            limit = min(limit, old[1])
        resource.setrlimit(resource.RLIMIT_AS, (limit, old[1]))
    except (ImportError, OSError, ValueError):
        yield
        return
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, old)


class Fuzz:
    """Feeds inputs to one reader: counts them, and collects every exception that is not the
    library's own, with the code site it came from and the mutation that caused it."""

    def __init__(self, name: str, tmp: Path):
        self.name, self.tmp = name, tmp
        self.count = self.refused = 0
        self.failures: dict[tuple[str, str], list] = {}

    def run(self, call, what: str, data: bytes | None = None) -> None:
        self.count += 1
        old = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, PER_INPUT_SECONDS)
        faulthandler.dump_traceback_later(PER_INPUT_SECONDS * 6, exit=True)  # stuck in C code: end loudly
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                call()
        except TwoViewError:
            self.refused += 1
        except Hang:
            self._fail("Hang", f"over {PER_INPUT_SECONDS} s", what, data, None)
        except BaseException as e:  # noqa: BLE001 -- exactly what the test looks for
            if isinstance(e, KeyboardInterrupt):
                raise
            self._fail(type(e).__name__, str(e)[:200], what, data, e.__traceback__)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
            faulthandler.cancel_dump_traceback_later()

    def _fail(self, kind, msg, what, data, tb):
        frames = traceback.extract_tb(tb) if tb is not None else []
        ours = [f for f in frames if "twoview" in f.filename and "test_" not in f.filename]
        site = f"{Path(ours[-1].filename).name}:{ours[-1].lineno}" if ours else (
            f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?")
        entry = self.failures.setdefault((kind, site), [])
        if not entry and data is not None:
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.name)
            saved = self.tmp / f"failing-{safe}-{len(self.failures)}.bin"
            saved.write_bytes(data)
            what += f" (input saved as {saved})"
        entry.append(f"{what}: {msg}")

    def check(self, expected: int) -> None:
        COUNTS[self.name] = self.count
        REFUSED[self.name] = self.refused
        assert self.count >= expected
        if self.failures:
            lines = [f"{kind} at {site} x{len(v)}: {v[0]}" for (kind, site), v in sorted(self.failures.items())]
            pytest.fail(f"{self.name}: {sum(map(len, self.failures.values()))} of {self.count} inputs raised errors that "
                        "are not twoview's own:\n" + "\n".join(lines[:30]), pytrace=False)


def _alarm(signum, frame):
    raise Hang()


@pytest.fixture(scope="module", autouse=True)
def report_counts(request):
    yield
    if COUNTS:
        tr = request.config.pluginmanager.get_plugin("terminalreporter")
        total = sum(COUNTS.values())
        text = (f"fuzzed readers: {total} inputs (refused with twoview's own error / read): "
                + ", ".join(f"{k} {v} ({REFUSED.get(k, 0)}/{v - REFUSED.get(k, 0)})" for k, v in COUNTS.items()))
        capture = request.config.pluginmanager.get_plugin("capturemanager")
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            if tr is not None:
                tr.write_line("")
                tr.write_line(text)
            else:
                print(text)


def fuzz_files(name, tmp, base_files: list[tuple[str, bytes]], mutate, read, n: int, seed: int):
    """``n`` mutations of the base files through ``read(path)``; the file keeps its base's name."""
    m = Mutator(seed)
    fz = Fuzz(name, tmp)
    with memory_cap(MEMORY_HEADROOM):
        for i in range(n):
            fname, base = m.pick(base_files)
            data, op = mutate(m, base, fname)
            path = tmp / f"in{i % 7}-{fname}"
            path.write_bytes(data)
            fz.run(lambda: read(path), f"#{i} {fname} {op}", data)
    fz.check(n)


# --- valid inputs ---------------------------------------------------------------------------
def _pattern(h=48, w=64, channels=3, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.integers(0, 256, (h // 8, w // 8, channels), dtype=np.uint8), (w, h), interpolation=cv2.INTER_LINEAR)
    return img.reshape(h, w, channels) if channels > 1 else img.reshape(h, w)


def _encode(ext: str, img: np.ndarray, params=()) -> bytes:
    ok, buf = cv2.imencode(ext, img, list(params))
    assert ok
    return buf.tobytes()


def _pil_bytes(img: np.ndarray, fmt: str, **kw) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=fmt, **kw)
    return buf.getvalue()


def image_bases(kind: str) -> list[tuple[str, bytes]]:
    rgb = _pattern()
    if kind == "png":
        return [("a.png", _encode(".png", rgb)), ("g16.png", _encode(".png", (_pattern(channels=1).astype(np.uint16) * 257))),
                ("p.png", _pil_bytes(rgb, "PNG", optimize=True)), ("rgba.png", _pil_bytes(np.dstack([rgb, rgb[..., :1]]), "PNG"))]
    exif = None
    from PIL import Image

    ex = Image.Exif()
    ex[0x0112] = 6
    exif = ex.tobytes()
    return [("a.jpg", _encode(".jpg", rgb)), ("prog.jpg", _encode(".jpg", rgb, (cv2.IMWRITE_JPEG_PROGRESSIVE, 1))),
            ("exif.jpg", _pil_bytes(rgb, "JPEG", exif=exif)), ("g.jpg", _encode(".jpg", _pattern(channels=1)))]


# --- tests: images, depth, PLY ----------------------------------------------------------------
@pytest.mark.parametrize("kind, n", [("png", 1100), ("jpeg", 900)])
def test_fuzz_images(tmp_path, kind, n):
    from twoview.io.images import image_size, load_image

    def read(path):
        load_image(path, "image0")
        image_size(path, "image0")

    fuzz_files(f"image {kind}", tmp_path, image_bases("png" if kind == "png" else "jpg"),
               lambda m, data, fname: mutate_image(m, data, kind), read, n, SEED + len(kind))


def _depth_bases() -> dict[str, list[tuple[str, bytes]]]:
    from twoview.io.depth import write_exr, write_pfm

    d = (_pattern(channels=1).astype(np.float64) * 10 + 500)
    out = {"png": [("d.png", _encode(".png", d.astype(np.uint16))), ("d8.png", _encode(".png", _pattern(channels=1)))]}
    npys = []
    for name, arr in (("f4.npy", (d / 1000).astype(np.float32)), ("f8.npy", d / 1000), ("u2.npy", d.astype(np.uint16))):
        buf = io.BytesIO()
        np.save(buf, arr)
        npys.append((name, buf.getvalue()))
    out["npy"] = npys
    tmp = Path(__import__("tempfile").mkdtemp())
    write_pfm(tmp / "d.pfm", d / 1000)
    out["pfm"] = [("d.pfm", (tmp / "d.pfm").read_bytes()),
                  ("rgb.pfm", b"PF\n4 4\n1.0\n" + np.ones((4, 4, 3), ">f4").tobytes())]
    try:
        write_exr(tmp / "d.exr", d / 1000)
        out["exr"] = [("d.exr", (tmp / "d.exr").read_bytes())]
    except ImportError:
        out["exr"] = []
    return out


DEPTH_COUNTS = {"png": 700, "npy": 700, "pfm": 700, "exr": 300}


@pytest.mark.parametrize("kind", list(DEPTH_COUNTS))
def test_fuzz_depth(tmp_path, kind):
    from twoview.io.depth import load_depth, prepare_depth

    if kind == "exr":
        pytest.importorskip("OpenEXR", reason="the exr extra is not installed")
    bases = _depth_bases()[kind]

    def mutate(m, data, fname):
        if kind == "npy" and m.rng.random() < 0.4:
            arr = np.load(io.BytesIO(data))
            return npy_with_header(arr, m.rng)
        if kind == "pfm" and m.rng.random() < 0.5:
            head, _, rest = data.partition(b"\n-1.0\n") if b"-1.0" in data else (data, b"", b"")
            out, op = m.text(head + b"\n-1.0\n")
            return out + rest, "pfm-header-" + op
        if kind == "png" and m.rng.random() < 0.25:
            w, h = m.rng.choice(HUGE_SIDES), m.rng.choice(HUGE_SIDES)
            return png_with_size(data, w, h), f"size({w}x{h})"
        return m.bytes(data)

    def read(path):
        d = load_depth(path, 1000.0, "--depth0")
        prepare_depth(d, (64, 48), "--depth0")

    fuzz_files(f"depth {kind}", tmp_path, bases, mutate, read, DEPTH_COUNTS[kind], SEED + 10 + len(kind))


def _ply_bases() -> list[tuple[str, bytes]]:
    from twoview.gmm.mixture import GaussianMixture
    from twoview.gmm.ply import write_ply

    rng = np.random.default_rng(1)
    A = rng.normal(size=(6, 3, 3)) * 0.05
    mix = GaussianMixture(rng.normal(size=(6, 3)) + [0, 0, 3], A @ A.transpose(0, 2, 1) + 1e-4 * np.eye(3),
                          rng.random(6) + 0.1, rng.random((6, 3)), rng.random((6, 4)).astype(np.float32))
    tmp = Path(__import__("tempfile").mkdtemp())
    binary = write_ply(tmp / "m.ply", mix).read_bytes()
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1",
             "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    rows = rng.normal(size=(5, len(names)))
    ascii_ply = ("ply\nformat ascii 1.0\ncomment made by the fuzz test\nelement vertex 5\n"
                 + "".join(f"property float {n}\n" for n in names) + "element face 0\nproperty list uchar int vertex_indices\n"
                 + "end_header\n" + "\n".join(" ".join(f"{v:.5f}" for v in r) for r in rows) + "\n").encode()
    rgb_names = ["x", "y", "z", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    rgb_rows = rng.normal(size=(4, len(rgb_names)))
    rgb_ply = ("ply\nformat ascii 1.0\nelement vertex 4\n" + "".join(f"property float {n}\n" for n in rgb_names)
               + "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
               + "\n".join(" ".join(f"{v:.4f}" for v in r) + " 10 200 30" for r in rgb_rows) + "\n").encode()
    return [("bin.ply", binary), ("ascii.ply", ascii_ply), ("rgb.ply", rgb_ply)]


def test_fuzz_ply(tmp_path):
    from twoview.gmm.ply import read_ply

    bases = _ply_bases()

    def mutate(m, data, fname):
        u = m.rng.random()
        if u < 0.45:
            return ply_header_edit(data, m.rng)
        if u < 0.7 and fname != "bin.ply":
            end = data.find(b"end_header\n") + len(b"end_header\n")
            body, op = m.text(data[end:])
            return data[:end] + body, "body-" + op
        return m.bytes(data)

    fuzz_files("3dgs ply", tmp_path, bases, mutate, read_ply, 1600, SEED + 20)


def test_ply_claiming_a_billion_gaussians_is_refused_before_allocating(tmp_path):
    """The header's count must fit in the body: checked before any array is made (the
    address space is capped far below the 62 GB the claim would take)."""
    from twoview.errors import InputError
    from twoview.gmm.ply import read_ply

    data = _ply_bases()[0][1].replace(b"element vertex 6", b"element vertex 1000000000")
    (tmp_path / "bomb.ply").write_bytes(data)
    with memory_cap(MEMORY_HEADROOM), pytest.raises(InputError, match="claims 1000000000 Gaussians"):
        read_ply(tmp_path / "bomb.ply")
    ascii_data = _ply_bases()[1][1].replace(b"element vertex 5", b"element vertex 1000000000")
    (tmp_path / "bomb_ascii.ply").write_bytes(ascii_data)
    with memory_cap(MEMORY_HEADROOM), pytest.raises(InputError, match="claims 1000000000 Gaussians"):
        read_ply(tmp_path / "bomb_ascii.ply")


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_image_claiming_30000_squared_pixels_is_refused_before_decoding(tmp_path, fmt):
    from twoview.errors import InputError
    from twoview.io.depth import load_depth
    from twoview.io.images import image_size, load_image

    base = image_bases(fmt)[0][1]
    data = png_with_size(base, 30000, 30000) if fmt == "png" else jpeg_with_size(base, 30000, 30000)
    path = tmp_path / f"bomb.{fmt}"
    path.write_bytes(data)
    with memory_cap(MEMORY_HEADROOM):
        for read in (load_image, image_size):
            with pytest.raises(InputError, match="(30000x30000 pixels|900000000 pixels).* (larger than|exceeds) the limit|larger than the limit.*900000000 pixels"):
                read(path, "image0")
        if fmt == "png":
            with pytest.raises(InputError, match="(30000x30000 pixels|900000000 pixels).* (larger than|exceeds) the limit|larger than the limit.*900000000 pixels"):
                load_depth(path, 1000.0, "--depth0")


# --- tests: pose, intrinsics and config JSON / text -------------------------------------------
def _pose_dict() -> dict:
    from twoview.geometry.pose import Pose
    from twoview.result import PoseResult

    T = Pose.exp(np.array([0.1, -0.2, 0.05, 0.3, 0.0, -0.1]))
    return PoseResult(True, T, True, "pnp", 100, 80, 0.9, timings_ms={"match": 1.0}).to_dict()


def _json_fuzz(name, tmp, bases: list[tuple[str, object]], read, n, seed, text_bases=()):
    m = Mutator(seed)
    fz = Fuzz(name, tmp)
    with memory_cap(MEMORY_HEADROOM):
        for i in range(n):
            if text_bases and m.rng.random() < 0.5:
                fname, base = m.pick(list(text_bases))
                data, op = m.text(base)
            else:
                fname, obj = m.pick(bases)
                data, op = m.json(obj)
            path = tmp / f"in{i % 5}-{fname}"
            path.write_bytes(data)
            fz.run(lambda: read(path), f"#{i} {fname} {op}", data)
    fz.check(n)


def test_fuzz_init_pose_json(tmp_path):
    from twoview.gmm.api import read_pose_json

    T = _pose_dict()["cam1_from_cam0"]
    _json_fuzz("--init pose json", tmp_path, [("res.json", _pose_dict()), ("bare.json", T), ("3x4.json", T[:3])],
               read_pose_json, 600, SEED + 30)


def test_fuzz_intrinsics_files(tmp_path):
    from twoview.cli.common import load_intrinsics_file
    from twoview.cli.estimate import load_cli_views

    K = [[525.0, 0.0, 319.5], [0.0, 525.0, 239.5], [0.0, 0.0, 1.0]]
    texts = [("K.txt", b"525 525 319.5 239.5\n"), ("K2.txt", b"# K0\n525,525,319.5,239.5\n520 520 320 240\n"),
             ("K33.txt", b"585 0 320\n0 585 240\n0 0 1\n"), ("f.txt", b"525 319.5 239.5\n"),
             ("K9.txt", b"525 0 319.5 0 525 239.5 0 0 1\n")]
    images = tmp_path / "images"
    images.mkdir()
    for k in (0, 1):
        cv2.imwrite(str(images / f"{k}.png"), _pattern(480, 640, seed=k))

    def read(path):
        load_intrinsics_file(str(path))
        args = argparse.Namespace(K0=None, K1=None, intrinsics=str(path), dist0=None, dist1=None, depth_scale=None,
                                  depth0=None, depth1=None, image0=str(images / "0.png"), image1=str(images / "1.png"),
                                  depth_kind=None, depth_model=None, depth_resolution=None, depth_cache=None)
        load_cli_views(args)  # the two views built: every camera checked against its image

    _json_fuzz("--intrinsics", tmp_path, [("K.json", {"K0": K, "K1": [525.0, 525.0, 319.5, 239.5]}), ("Kone.json", {"K": K})],
               read, 1000, SEED + 31, text_bases=texts)


def test_fuzz_gmm_config_json(tmp_path):
    from twoview.cli.common import gmm_config

    def read(path):
        gmm_config(argparse.Namespace(gmm_config=str(path), gmm_preset=None, num_gaussians=None, features=None,
                                      dinov2_model=None, optimizer=None, estimate_scale=None, keep_worse=False))

    _json_fuzz("--gmm-config", tmp_path, [("g.json", {"build": {"num_gaussians": 500, "features": "none"},
                                                      "align": {"optimizer": "gn", "max_iterations": 20}})],
               read, 300, SEED + 32)


def test_fuzz_train_config_and_log(tmp_path):
    from twoview.cli.train import load_train_config
    from twoview.regress.train import read_log

    cfg = json.loads((Path(__file__).parents[1] / "configs" / "regress_tiny_gcr.json").read_text())
    _json_fuzz("train --config", tmp_path, [("c.json", cfg)], load_train_config, 300, SEED + 33)
    log = b"".join(json.dumps({"step": s, "loss": 1.0 / s, "rot_deg": 3.0}).encode() + b"\n" for s in range(1, 6))
    fuzz_files("train log.jsonl", tmp_path, [("log.jsonl", log)], lambda m, d, f: m.text(d), read_log, 200, SEED + 34)


def test_fuzz_bench_cache_records(tmp_path):
    """A cache record is recomputed when unreadable: reading one never raises, and a record
    it returns can be turned into a result and scored."""
    from twoview.bench.runner import CACHE_VERSION, _read_record, _record_result

    rec = {**_pose_dict(), "version": CACHE_VERSION, "method": "sift", "pair_id": "p0", "ms": 12.5, "cpu_ms": 11.0,
           "error": None, "init_reused": {"a": {"ms": 1.0, "cpu_ms": 1.0}}}
    rec.pop("quaternion_wxyz")

    def read(path):
        r = _read_record(path)
        if r is not None:
            _record_result(r)

    m = Mutator(SEED + 35)
    fz = Fuzz("bench cache record", tmp_path)
    for i in range(400):
        data, op = m.json(rec)
        path = tmp_path / "r.json"
        path.write_bytes(data)
        fz.run(lambda: read(path), f"#{i} {op}", data)
    fz.check(400)


# --- tests: dataset readers -------------------------------------------------------------------
def _png(path: Path, h=24, w=32, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), _pattern(h, w, seed=seed))


def _depth_png(path: Path, h=24, w=32):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((h, w), 2000, np.uint16))


def _pose_rows(k: int) -> np.ndarray:
    from twoview.geometry.pose import Pose

    return Pose.exp(np.array([0.02 * k, 0.01, 0.0, 0.1 * k, 0.0, 0.05])).matrix


def make_tum(root: Path) -> dict:
    for k, ts in enumerate(("1.000000", "1.033000", "1.066000")):
        _png(root / "rgb" / f"{ts}.png", seed=k)
        _depth_png(root / "depth" / f"{ts}.png")
    gt = ["# timestamp tx ty tz qx qy qz qw"]
    from twoview.geometry.pose import Pose

    for k in range(6):
        P = Pose(_pose_rows(k)[:3, :3], _pose_rows(k)[:3, 3])
        q = P.quaternion("xyzw")
        gt.append(f"{0.98 + 0.03 * k:.4f} " + " ".join(f"{v:.6f}" for v in [*P.t, *q]))
    (root / "groundtruth.txt").write_text("\n".join(gt) + "\n")
    (root / "rgb.txt").write_text("# color\n" + "".join(f"{ts} rgb/{ts}.png\n" for ts in ("1.000000", "1.033000", "1.066000")))
    (root / "depth.txt").write_text("".join(f"{ts} depth/{ts}.png\n" for ts in ("1.000000", "1.033000", "1.066000")))
    (root / "intrinsics.txt").write_text("525 525 15.5 11.5\n0.1 -0.2 0 0 0.01\n")
    return {"kind": "tum", "files": ["groundtruth.txt", "rgb.txt", "depth.txt", "intrinsics.txt"], "options": {}}


def make_7scenes(root: Path) -> dict:
    seq = root / "seq-01"
    for k in range(3):
        _png(seq / f"frame-{k:06d}.color.png", seed=k)
        _depth_png(seq / f"frame-{k:06d}.depth.png")
        np.savetxt(seq / f"frame-{k:06d}.pose.txt", np.linalg.inv(_pose_rows(k)), fmt="%.7e")
    (root / "pairs.txt").write_text("seq-01/frame-000000 seq-01/frame-000002\nframe-000001.color.png seq-01/frame-000002\n")
    return {"kind": "7scenes", "files": [f"seq-01/frame-{k:06d}.pose.txt" for k in range(3)] + ["pairs.txt"],
            "options": {"pairs_file": str(root / "pairs.txt")}, "option_file": "pairs.txt"}


def make_redwood(root: Path) -> dict:
    log = []
    for k in range(3):
        _png(root / "color" / f"{k:05d}.png", seed=k)
        _depth_png(root / "depth" / f"{k:05d}.png")
        log.append(f"{k} {k} {k + 1}")
        log.extend(" ".join(f"{v:.8f}" for v in row) for row in _pose_rows(k))
    (root / "trajectory.log").write_text("\n".join(log) + "\n")
    (root / "camera_intrinsic.json").write_text(json.dumps(
        {"width": 32, "height": 24, "intrinsic_matrix": [30.0, 0, 0, 0, 30.0, 0, 15.5, 11.5, 1.0]}))
    return {"kind": "icl_nuim", "files": ["trajectory.log", "camera_intrinsic.json"], "options": {"gaps": [1, 2]}}


def make_kitti(root: Path) -> dict:
    for k in range(3):
        _png(root / "image_0" / f"{k:06d}.png", seed=k)
    (root / "poses.txt").write_text("".join(" ".join(f"{v:.6e}" for v in _pose_rows(k)[:3].ravel()) + "\n" for k in range(3)))
    (root / "calib.txt").write_text("P0: 30 0 15.5 0 0 30 11.5 0 0 0 1 0\nP1: 30 0 15.5 -10 0 30 11.5 0 0 0 1 0\n")
    return {"kind": "kitti", "files": ["poses.txt", "calib.txt"], "options": {}}


def make_superglue(root: Path) -> dict:
    for folder in ("a", "b"):
        for k in range(2):
            _png(root / folder / f"{k:04d}.png", seed=k)
    K = "30 0 15.5 0 30 11.5 0 0 1"
    lines = []
    for a, b, k in (("a/0000.png", "a/0001.png", 1), ("b/0000.png", "b/0001.png", 2), ("a/0000.png", "b/0001.png", 3)):
        T = " ".join(f"{v:.8f}" for v in _pose_rows(k).ravel())
        lines.append(f"{a} {b} 0 0 {K} {K} {T}")
    (root / "pairs_with_gt.txt").write_text("\n".join(lines) + "\n")
    return {"kind": "superglue_pairs", "files": ["pairs_with_gt.txt"], "options": {}}


def make_realestate(root: Path) -> dict:
    rows = ["https://www.youtube.com/watch?v=xyz"]
    for k in range(3):
        ts = 1000000 + 33333 * k
        _png(root / "frames" / "seq" / f"{ts}.png", seed=k)
        P = np.linalg.inv(_pose_rows(k))[:3]
        rows.append(f"{ts} 0.9 1.2 0.5 0.5 0 0 " + " ".join(f"{v:.7f}" for v in P.ravel()))
    (root / "seq.txt").write_text("\n".join(rows) + "\n")
    return {"kind": "realestate10k", "files": ["seq.txt"], "options": {}}


def _co3d_annotations() -> list:
    out = []
    for k in range(3):
        P = _pose_rows(k)
        out.append({"sequence_name": "s1", "frame_number": k, "frame_timestamp": 0.1 * k,
                    "image": {"path": f"cat/s1/images/frame{k:06d}.png", "size": [24, 32]},
                    "viewpoint": {"R": P[:3, :3].tolist(), "T": P[:3, 3].tolist(), "focal_length": [2.0, 2.0],
                                  "principal_point": [0.0, 0.0], "intrinsics_format": "ndc_isotropic"}})
    return out


def make_co3d(root: Path) -> dict:
    cat = root / "cat"
    for k in range(3):
        _png(cat / "s1" / "images" / f"frame{k:06d}.png", seed=k)
    (cat / "frame_annotations.jgz").write_bytes(gzip.compress(json.dumps(_co3d_annotations()).encode(), mtime=0))
    return {"kind": "co3d", "files": ["cat/frame_annotations.jgz"], "options": {}, "root": cat}


def _megadepth_arrays() -> dict:
    names = np.array(["img/0.png", "img/1.png", None], dtype=object)
    Ks = np.stack([np.array([[30.0, 0, 15.5], [0, 30.0, 11.5], [0, 0, 1]])] * 3)
    poses = np.stack([_pose_rows(k) for k in range(3)])
    infos = np.empty(2, dtype=object)
    infos[0] = (np.array([0, 1]), 0.5, np.array([10]))
    infos[1] = (np.array([1, 0]), 0.3, np.array([5]))
    return {"image_paths": names, "intrinsics": Ks, "poses": poses, "pair_infos": infos}


def _npz(arrays: dict) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def make_megadepth(root: Path) -> dict:
    for k in range(2):
        _png(root / "img" / f"{k}.png", seed=k)
    (root / "scene_info").mkdir()
    (root / "scene_info" / "0015.npz").write_bytes(_npz(_megadepth_arrays()))
    return {"kind": "megadepth1500", "files": ["scene_info/0015.npz"], "options": {}}


def mutate_npz(m: Mutator) -> tuple[bytes, str]:
    """A scene-info npz with one array replaced by another shape, type or value (or its bytes edited)."""
    arrays = _megadepth_arrays()
    r = m.rng
    if r.random() < 0.25:
        return m.bytes(_npz(arrays))
    key = r.choice(list(arrays))
    op = r.choice(["shape", "dtype", "value", "drop", "scalar", "nan"])
    a = arrays[key]
    if op == "shape":
        arrays[key] = a.reshape(-1)[: r.randint(0, a.size)] if a.dtype != object else a[: r.randint(0, len(a))]
    elif op == "dtype":
        arrays[key] = np.array([str(v) for v in a.reshape(-1)]) if r.random() < 0.5 else np.zeros(a.shape[:1], np.int8)
    elif op == "value":
        b = a.copy()
        flat = b.reshape(-1)
        flat[r.randrange(flat.size)] = r.choice([None, "x", -5, 10**6, 1e300, (1, 2), ((1, 2),)]) if b.dtype == object \
            else r.choice([np.nan, np.inf, -1.0, 0.0, 1e308, 7.0])
        arrays[key] = b
    elif op == "drop":
        del arrays[key]
    elif op == "scalar":
        arrays[key] = np.array(r.choice([0, 1.5, "s"]))
    else:
        arrays[key] = np.full(a.shape, np.nan) if a.dtype != object else a
    return _npz(arrays), f"npz-{key}-{op}"


DATASETS = {"tum": (make_tum, 700), "7scenes": (make_7scenes, 600), "icl_nuim": (make_redwood, 600),
            "kitti": (make_kitti, 600), "superglue_pairs": (make_superglue, 500), "realestate10k": (make_realestate, 400),
            "co3d": (make_co3d, 400), "megadepth1500": (make_megadepth, 400)}


@pytest.mark.parametrize("kind", list(DATASETS))
def test_fuzz_dataset_readers(tmp_path, kind):
    """One of the dataset's files (or one of its images) mutated per input; the reader
    builds the frames and the pairs."""
    from twoview.datasets import get_dataset

    make, n = DATASETS[kind]
    root = tmp_path / "root"
    spec = make(root)
    ds_root = spec.get("root", root)
    originals = {f: (root / f).read_bytes() for f in spec["files"]}
    images = sorted(p for p in root.rglob("*.png"))
    m = Mutator(SEED + 100 + len(kind))
    fz = Fuzz(f"dataset {kind}", tmp_path)

    def read():
        get_dataset(spec["kind"], ds_root, **spec["options"]).pairs()

    with memory_cap(MEMORY_HEADROOM):
        for i in range(n):
            u = m.rng.random()
            if u < 0.08:  # an image of the folder
                target = m.pick(images)
                base = target.read_bytes()
                data, op = mutate_image(m, base, "png")
            else:
                fname = m.pick(spec["files"])
                target, base = root / fname, originals[fname]
                if kind == "megadepth1500":
                    data, op = mutate_npz(m)
                elif fname.endswith(".jgz"):
                    if m.rng.random() < 0.8:
                        text, op = m.json(_co3d_annotations())
                        data = gzip.compress(text, mtime=0)
                    else:
                        data, op = m.bytes(base)
                elif fname.endswith(".json"):
                    data, op = m.json(json.loads(base))
                else:
                    data, op = m.text(base)
            target.write_bytes(data)
            try:
                fz.run(read, f"#{i} {target.relative_to(root)} {op}", data)
            finally:
                target.write_bytes(base)
    fz.check(n)


def test_fuzz_training_data_readers(tmp_path):
    """The regressor's own readers of a .log trajectory and a TUM pair list."""
    from twoview.regress.data import read_redwood_log, tum_pairs

    root = tmp_path / "root"
    make_redwood(root)
    T = " ".join(f"{v:.6f}" for v in _pose_rows(1).ravel())
    (root / "pairs_gt.txt").write_text(f"# pairs\nrgb/a.png rgb/b.png depth/a.png depth/b.png {T}\n")
    bases = {"trajectory.log": (root / "trajectory.log").read_bytes(), "pairs_gt.txt": (root / "pairs_gt.txt").read_bytes()}
    m = Mutator(SEED + 200)
    fz = Fuzz("regress .log / pairs_gt", tmp_path)
    for i in range(400):
        fname = m.pick(list(bases))
        data, op = m.text(bases[fname])
        (root / fname).write_bytes(data)
        read = (lambda: read_redwood_log(root / "trajectory.log")) if fname == "trajectory.log" else (lambda: tum_pairs(root))
        fz.run(read, f"#{i} {fname} {op}", data)
        (root / fname).write_bytes(bases[fname])
    fz.check(400)


def test_the_fuzz_budget_covers_ten_thousand_inputs():
    """The budgets of the tests above (EXR only with the extra installed) add up to 10,000 or more."""
    budget = 1100 + 900 + sum(DEPTH_COUNTS.values()) - DEPTH_COUNTS["exr"] + 1600 + 600 + 1000 + 300 + 300 + 200 + 400 \
        + sum(n for _, n in DATASETS.values()) + 400
    assert budget >= 10_000, budget


if sys.platform != "linux":  # SIGALRM and /proc: the watchdog and the memory cap need Linux
    pytestmark = pytest.mark.skip(reason="the fuzz harness needs Linux (SIGALRM, /proc, RLIMIT_AS)")
