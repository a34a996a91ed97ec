"""Networks exported to ONNX once and run by onnxruntime: the cache folder, whole-folder
writes and sessions. Used by XFeat + LighterGlue (:mod:`twoview.matching.xfeat_onnx`) and
the pose regressor (:mod:`twoview.regress.onnx`); neither needs torch once exported."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from twoview.errors import BackendUnavailable


def onnxruntime_available() -> bool:
    try:
        return importlib.util.find_spec("onnxruntime") is not None
    except (ImportError, ValueError):
        return False


def cache_root() -> Path:
    """``$TWOVIEW_CACHE/onnx`` or ``~/.cache/twoview/onnx``."""
    from twoview._cache import cache_dir

    return cache_dir("onnx")


def export_once(final: Path, write: Callable[[Path], dict], what: str, hint: str) -> Path:
    """The folder ``final``, made by ``write(folder)`` (which writes its files and returns
    the manifest) when it has no ``manifest.json`` yet.

    The folder is written beside ``final`` and renamed into place, so a reader never sees
    half of it and two processes writing at once both end with a whole folder; a torn
    folder (no manifest) is replaced. An unwritable cache is a BackendUnavailable naming
    the folder, ``what`` was to be written, and ``hint`` (the way around it).
    """
    if (final / "manifest.json").is_file():
        return final
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    except OSError as e:
        raise BackendUnavailable(f"cannot write the exported {what} to {final.parent} ({e.strerror or e}); "
                                 f"set TWOVIEW_CACHE to a writable folder, or {hint}") from None
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache may be shared
    try:
        manifest = write(tmp)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished first (or a torn folder is in the way)
            if not (final / "manifest.json").is_file():
                shutil.rmtree(final, ignore_errors=True)
                os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def optimise(src: Path, dst: Path) -> None:
    """Store the graph as onnxruntime optimises it at the portable ("extended") level, so a
    process need not redo that at every start (100 ms for LighterGlue's six unrolled layers)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(dst)
    so.log_severity_level = 3
    ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])


def session(path: Path, layout_optimisations: bool):
    """A session on a stored (already optimised) graph; ``layout_optimisations`` adds the
    machine-specific ones (blocked convolution layouts: XFeat 57 -> 44 ms a pair)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if layout_optimisations
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    # as many threads as torch would take (OMP_NUM_THREADS, else every core), and no
    # spinning: the idle workers would otherwise burn the cores the next stage needs
    threads = os.environ.get("OMP_NUM_THREADS", "")
    so.intra_op_num_threads = int(threads) if threads.isdigit() else 0
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
