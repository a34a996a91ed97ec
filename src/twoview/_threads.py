"""Thread limits for the numerical core, and the worker threads beside the caller's.

The pose code multiplies and decomposes tiny matrices (3x3 batches, 6x6 systems, 64x64
Gram matrices). A multi-threaded BLAS gains nothing there and its idle threads spin on
the cores our own worker threads need: on a 2-core machine a GMM refinement took 1.5x
the CPU time with OpenBLAS at 2 threads, and OpenBLAS threads woken by one large product
(the SIFT matcher's descriptor distances) keep spinning into whatever runs next (the
refinement after the front end: +40 % CPU). :func:`single_threaded_blas` pins BLAS to one
thread for the duration of a call and restores the caller's setting afterwards.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

_LOCK = threading.Lock()
_CONTROLLER = None
_MODULES_SEEN = 0
_DEPTH = 0


def _controller():
    """The threadpoolctl controller of the BLAS libraries loaded now (False without
    threadpoolctl). Libraries arrive with Python modules (scipy's OpenBLAS, loaded late by
    numba, is one): the libraries are inspected again (~6 ms) when modules were imported
    since the last look."""
    global _CONTROLLER, _MODULES_SEEN
    import sys

    if _CONTROLLER is False:
        return False
    if _CONTROLLER is None or len(sys.modules) != _MODULES_SEEN:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # optional: without it BLAS keeps its own setting
            _CONTROLLER = False
            return False
        _MODULES_SEEN = len(sys.modules)
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER


@contextmanager
def single_threaded_blas():
    """Run the block with BLAS (OpenBLAS, MKL, BLIS) at one thread. Re-entrant; the
    outermost block restores the previous limits."""
    global _DEPTH
    ctrl = _controller()
    if not ctrl:
        yield
        return
    with _LOCK:
        _DEPTH += 1
        limiter = ctrl.limit(limits=1, user_api="blas") if _DEPTH == 1 else None
    try:
        yield
    finally:
        with _LOCK:
            _DEPTH -= 1
            if limiter is not None:
                limiter.restore_original_limits()


def blas_single_thread(fn):
    """Decorator form of :func:`single_threaded_blas`."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with single_threaded_blas():
            return fn(*args, **kwargs)

    return wrapper


_WORKERS: dict = {}
_WORKERS_LOCK = threading.Lock()


def worker(name: str):
    """The process's one worker thread for ``name`` (a ``ThreadPoolExecutor`` with one
    thread, made on first use): a second view or term computed beside the caller's thread,
    so a pair's work fills both cores of a two-core machine without oversubscribing it."""
    with _WORKERS_LOCK:
        pool = _WORKERS.get(name)
        if pool is None:
            from concurrent.futures import ThreadPoolExecutor

            pool = _WORKERS[name] = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"twoview-{name}")
    return pool


def start_pool_worker() -> None:
    """Start-up of a spawned pool process (the bench's, ``estimate --pairs``'): one core
    for its numerics (the pool provides the parallelism), and the command's warning format
    (:func:`twoview.errors.format_warning`; a spawned process starts with Python's)."""
    import os
    import warnings

    from twoview.errors import format_warning

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    warnings.formatwarning = format_warning
