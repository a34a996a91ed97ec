"""Execution engines: in-process, local worker processes, or Ray.

Every engine runs :func:`twoview.bench.runner.predict_one` per task; results travel via
the cache files, so any engine can be interrupted and resumed. Tasks come in waves
(lists of tasks): a wave starts when the previous one is complete, so a method
initialised from another (``A@B``) finds ``B``'s predictions in the cache.
"""

from __future__ import annotations

from twoview.errors import BackendUnavailable, InputError


def _bar(total: int, show: bool):
    from tqdm import tqdm

    return tqdm(total=total, disable=not show, unit="pred", dynamic_ncols=True)


def run_tasks(waves: list[list], engine: str, workers: int, address: str | None, progress: bool) -> None:
    """Run every task of every wave, one wave after the other.

    A task is the argument tuple of :func:`~twoview.bench.runner.predict_one`.
    """
    if engine == "ray":
        return _run_ray(waves, workers, address, progress)
    if engine != "local":
        raise InputError("--engine", f"unknown engine {engine!r} (local or ray)")
    from twoview.bench.runner import predict_one

    bar = _bar(sum(len(w) for w in waves), progress)
    try:
        if workers == 1:
            for tasks in waves:
                for t in tasks:
                    bar.set_postfix_str(t[0], refresh=False)
                    predict_one(*t)
                    bar.update(1)
            return
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # spawn: torch/OpenMP state does not survive fork reliably
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_init_worker) as ex:
            for tasks in waves:
                futs = [ex.submit(predict_one, *t) for t in tasks]
                try:
                    for f in as_completed(futs):
                        f.result()
                        bar.update(1)
                except BaseException:
                    for f in futs:
                        f.cancel()
                    raise
    finally:
        bar.close()


def _init_worker() -> None:
    # each worker uses one core: the pool provides the parallelism. The networks' sums then
    # round differently from a one-process run on every core, so a pair at the edge of the
    # matchers' evidence can differ between --workers 1 and --workers N (real_rgbd.md)
    from twoview._threads import start_pool_worker

    start_pool_worker()
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass


def _run_ray(waves: list[list], workers: int, address: str | None, progress: bool) -> None:
    try:
        import ray
    except ImportError:
        raise BackendUnavailable("--engine ray needs Ray: pip install 'twoview[ray]'") from None
    from twoview.bench.runner import predict_one

    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        started = True
    try:
        from twoview.bench.runner import _read_record
        from twoview.io.atomic import atomic_write_json, writing

        # workers return records and the driver writes the cache: no shared disk needed
        # (the driver also reads the initialising predictions a task may reuse)
        remote = ray.remote(num_cpus=1)(predict_one)
        bar = _bar(sum(len(w) for w in waves), progress)
        try:
            for tasks in waves:
                refs = {}
                for t in tasks:
                    init = {n: r for n, p in (t[5] or {}).items() if (r := _read_record(p)) is not None}
                    refs[remote.remote(t[0], t[1], None, t[3], t[4], init)] = t[2]
                pending = list(refs)
                while pending:
                    done, pending = ray.wait(pending, num_returns=1)
                    for ref in done:
                        with writing("--out", refs[ref]):
                            atomic_write_json(refs[ref], ray.get(ref))
                    bar.update(len(done))
        finally:
            bar.close()
    finally:
        if started:
            ray.shutdown()
