"""The methods registry: the contract other packages plug into.

A method is a callable ``run(sample, depth0, depth1) -> PoseResult`` where ``sample`` is
a :class:`~twoview.datasets.PairSample` and ``depth0`` / ``depth1`` are (H, W) float64
depth maps in metres (NaN invalid), already loaded (and degraded under
``--depth-noise``), or None when the method does not use that view's depth. It is
created by a factory ``make(options: dict) -> callable``.

A module advertises its methods with a module-level dict::

    BENCH_METHODS = {"my-method": "my.module:make_my_method"}

The registry merges the dicts of :data:`PROVIDERS` that are importable (missing
modules are skipped; any other import error surfaces). The factory returns either a
:class:`BenchMethod` or a plain callable with optional attributes ``uses_depth``
(``(bool, bool)``: which views' depth it consumes) and ``metric`` (whether its
translations are in metres; direction-only methods are never scored on metric error).

``"A@B"`` names method ``A`` initialised from method ``B``'s pose: ``A``'s factory
receives ``{"init": "B"}`` and builds ``B`` with :func:`make_method`. Inside the
benchmark runner ``B`` is not recomputed when its prediction for the pair is already
cached in the run folder (``B`` run in the same ``twoview bench``, before ``A@B``, or
earlier into the same folder): the runner opens :func:`reuse_predictions` and every
:class:`BenchMethod` named there returns the cached result for that pair instead of
running. ``A@B``'s reported time still includes ``B``'s (the cached record's time).
Outside the runner ``A@B`` computes ``B`` itself.

A method name may carry factory options: ``NAME:KEY=VALUE[,KEY=VALUE...]`` (values
are JSON, else plain strings), e.g. ``regress:checkpoint=runs/gcr/model.pt``. The whole
string is the method's identity in a run (its cache folder and report rows), so the
same factory can appear twice with different options. With an initialiser the options
bind to the method they follow: ``A:k=1@B:j=2`` gives ``k`` to ``A`` and ``j`` to ``B``.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import importlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from twoview.errors import InputError

#: Modules searched for ``BENCH_METHODS``, in order (later names do not override).
PROVIDERS = (
    "twoview.bench.builtin_methods",
    "twoview.bench.peers",
    "twoview.gmm.bench_methods",
    "twoview.depth.bench_methods",
    "twoview.regress.bench_methods",
)


#: (pair_id, {method name: PoseResult}, names used) while the runner predicts one pair
_REUSE: contextvars.ContextVar[tuple[str, dict, list] | None] = contextvars.ContextVar("twoview_bench_reuse", default=None)


@contextlib.contextmanager
def reuse_predictions(pair_id: str, results: dict) -> Iterator[list[str]]:
    """Within the block, calling a method named in ``results`` on pair ``pair_id``
    returns (a copy of) that :class:`~twoview.result.PoseResult` instead of running it.

    Yields the list of the names actually reused (in call order), so the caller can
    account for their time.
    """
    used: list[str] = []
    token = _REUSE.set((pair_id, results, used))
    try:
        yield used
    finally:
        _REUSE.reset(token)


def init_chain(name: str) -> list[str]:
    """The initialising methods ``name`` depends on, nearest first:
    ``"A@B@C"`` -> ``["B@C", "C"]``, ``"A"`` -> ``[]``."""
    out = []
    _, sep, init = name.partition("@")
    while sep and init:
        out.append(init)
        _, sep, init = init.partition("@")
    return out


@dataclass
class BenchMethod:
    """A constructed method.

    Attributes:
        name: registry name (with ``@init`` if any).
        run: ``run(sample, depth0, depth1) -> PoseResult``.
        uses_depth: (depth of view 0, depth of view 1) consumed.
        metric: translations in metres.
        options: the options the factory got (saved with the run).
    """

    name: str
    run: Callable
    uses_depth: tuple[bool, bool] = (False, False)
    metric: bool = False
    options: dict = field(default_factory=dict)

    def __call__(self, sample, depth0=None, depth1=None):
        ctx = _REUSE.get()
        if ctx is not None and ctx[0] == sample.pair_id and self.name in ctx[1]:
            ctx[2].append(self.name)
            return copy.deepcopy(ctx[1][self.name])
        return self.run(sample, depth0, depth1)

    def describe(self) -> dict:
        return {"name": self.name, "uses_depth": list(self.uses_depth), "metric": self.metric, "options": self.options}


def _is_missing_module(e: ModuleNotFoundError, module: str) -> bool:
    # the provider itself (or its parent package) is absent -> skip silently
    return e.name is not None and (module == e.name or module.startswith(e.name + "."))


def registry() -> dict[str, str]:
    """All advertised methods: name -> "module:factory"."""
    out: dict[str, str] = {}
    for module in PROVIDERS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if _is_missing_module(e, module):
                continue
            raise
        for name, target in getattr(mod, "BENCH_METHODS", {}).items():
            out.setdefault(name, target)
    return out


def available_methods() -> list[str]:
    return sorted(registry())


def parse_method_spec(spec: str) -> tuple[str, dict, str | None]:
    """``"NAME[:KEY=VALUE,...][@INIT]"`` -> (NAME, options, INIT or None).

    Values are parsed as JSON when they are valid JSON (numbers, booleans, lists),
    otherwise kept as strings (paths). Commas separate options only where a ``KEY=``
    follows, so a JSON list value may contain commas.

    Raises:
        InputError: an empty name, an option without ``=`` or with an empty key, or a
        key given twice.
    """
    head, sep, init = spec.partition("@")
    if sep and not init:
        raise InputError("--method", f"{spec!r}: nothing after '@' (expected an initialising method)")
    base, colon, opts_text = head.partition(":")
    if not base:
        raise InputError("--method", f"{spec!r}: empty method name")
    options: dict = {}
    if colon:
        for item in re.split(r",(?=\s*[A-Za-z_][\w.-]*=)", opts_text):
            key, eq, value = item.partition("=")
            key = key.strip()
            if not eq or not key:
                raise InputError("--method", f"{spec!r}: expected NAME:KEY=VALUE[,KEY=VALUE...], got option {item!r}")
            if key in options:
                raise InputError("--method", f"{spec!r}: option {key!r} given twice")
            try:
                options[key] = json.loads(value)
            except ValueError:
                options[key] = value
            except RecursionError:
                raise InputError("--method", f"{spec!r}: option {key!r} is nested too deeply") from None
    return base, options, (init if sep else None)


def make_method(name: str, options: dict | None = None) -> BenchMethod:
    """Construct a method from its spec (see :func:`parse_method_spec`): registry name,
    options after ``:``, ``"A@B"`` passes ``init="B"`` to ``A``. ``options`` adds to
    (and overrides) the options of the spec."""
    base, spec_options, init = parse_method_spec(name)
    options = {**spec_options, **(options or {})}
    sep = init is not None
    reg = registry()
    if base not in reg:
        raise InputError("--method", f"unknown method {name!r}; available: {', '.join(sorted(reg))}")
    if sep:
        options["init"] = init
    mod, _, fn = reg[base].partition(":")
    factory = getattr(importlib.import_module(mod), fn)
    obj = factory(options)
    if isinstance(obj, BenchMethod):
        obj.name = name
        obj.options = options
        return obj
    if not callable(obj):
        raise TypeError(f"factory {reg[base]} returned a {type(obj).__name__}, not a callable")
    return BenchMethod(
        name=name,
        run=obj,
        uses_depth=tuple(bool(v) for v in getattr(obj, "uses_depth", (False, False))),  # type: ignore[arg-type]
        metric=bool(getattr(obj, "metric", False)),
        options=options,
    )


def pipeline_method(name: str, config, uses_depth: tuple[bool, bool], metric: bool, init: str | None = None,
                    depth_kind: str = "sensor", options: dict | None = None, pipeline=None) -> BenchMethod:
    """A bench method that is a named pipeline configuration.

    Args:
        name: the method's name.
        config: its :class:`~twoview.pipeline.PipelineConfig` (or a dict of its fields).
        uses_depth: which views' depth it reads (the harness loads only those).
        metric: whether its translations are metres.
        init: a method whose result the pipeline refines (``A@B``'s B), built here with
            :func:`make_method`; None runs the pipeline's own front end.
        depth_kind: what the harness's depth maps are to this method ("sensor", or
            "monocular" for the simulated monocular depth of ``--depth-noise``).
        options: the factory options (recorded with the run).
        pipeline: the :class:`~twoview.pipeline.Pipeline` of ``config`` when the factory
            built it already (e.g. to load its models eagerly).
    """
    from twoview.pipeline import Pipeline

    pipe = pipeline if pipeline is not None else Pipeline(config)
    init_method = make_method(init) if init else None
    if init_method is not None and not init_method.metric:
        from twoview.errors import ConfigError

        raise ConfigError(f"{name}: initial pose method {init!r} is direction-only; a metric method is needed")

    def run(sample, depth0=None, depth1=None):
        from twoview.result import PoseResult
        from twoview.view import load_views

        missing = [k for k, (used, d) in enumerate(zip(uses_depth, (depth0, depth1))) if used and d is None]
        if missing:
            return PoseResult.failure(f"{name} needs the depth of view {missing[0]}")
        views = load_views(sample.image0, sample.image1, sample.camera0, sample.camera1,
                           depth0 if uses_depth[0] else None, depth1 if uses_depth[1] else None, depth_kind=depth_kind)
        if init_method is None:
            return pipe(*views)
        front = init_method(sample, depth0, depth1)
        if not front.success:
            return front
        if not front.metric:  # e.g. too few inliers with depth: the front end fell back to a direction
            front.info["not_refined"] = f"{name}: the initial pose is direction only; nothing metric to refine"
            return front
        res = pipe(*views, init=front)
        res.timings_ms = {**front.timings_ms, **res.timings_ms}
        return res

    return BenchMethod(name=name, run=run, uses_depth=uses_depth, metric=metric, options=dict(options or {}))
