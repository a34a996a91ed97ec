"""Reports of a scored run: summary.json, results.md, per_pair.csv, PNG plots, report.html.

Every file is written atomically; plots use matplotlib's Agg backend.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
from pathlib import Path

import numpy as np

from twoview.io.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text

#: (summary key, column title, formatter)
TABLE_COLUMNS = (
    ("auc5", "AUC@5°", "pct"),
    ("auc10", "AUC@10°", "pct"),
    ("auc20", "AUC@20°", "pct"),
    ("auc30_hist", "AUC@30 (hist.)", "pct"),
    ("median_rot_deg", "med. rot (°)", "f2"),
    ("median_trans_deg", "med. t angle (°)", "f2"),
    ("median_trans_m", "med. t (m)", "f3"),
    ("precision_25cm_5deg", "prec. 25cm,5°", "pct"),
    ("success_rate", "success", "pct"),
    ("median_ms", "med. ms", "f0"),
    ("median_cpu_ms", "med. CPU ms", "f0"),
)


def _fmt(v, kind: str) -> str:
    if v is None:
        return "–"
    if isinstance(v, float) and math.isnan(v):
        return "n/a"
    if isinstance(v, float) and math.isinf(v):
        return "∞"
    if kind == "pct":
        return f"{100 * v:.1f}"
    return f"{v:.{int(kind[1:])}f}"


def markdown_table(summary: dict, methods: list[str]) -> str:
    """The per-method table (AUCs, precision and success in %)."""
    cols = list(TABLE_COLUMNS)
    extra = sorted({k for m in methods for k in summary["methods"][m] if k.startswith("precision_") and k != "precision_25cm_5deg"})
    cols[8:8] = [(k, k.replace("precision_", "prec. ").replace("_", ","), "pct") for k in extra]
    head = "| method | depth | pairs | " + " | ".join(c[1] for c in cols) + " |"
    sep = "|---|---|---:|" + "---:|" * len(cols)
    lines = [head, sep]
    for m in methods:
        s = summary["methods"][m]
        depth = {(False, False): "none", (True, False): "view 0", (False, True): "view 1", (True, True): "both"}[tuple(s["uses_depth"])]
        lines.append(f"| {m} | {depth} | {s['num_pairs']} | " + " | ".join(_fmt(s.get(k), f) for k, _, f in cols) + " |")
    return "\n".join(lines) + "\n"


def gap_table(rows: list[dict], methods: list[str]) -> str:
    """AUC@10 (%) / success (%) per method and frame gap; empty if the pairs have no gaps."""
    from twoview.metrics import pose_auc

    gaps = sorted({r["frame_gap"] for r in rows if isinstance(r["frame_gap"], int)})
    if len(gaps) < 2:
        return ""
    lines = ["| method | " + " | ".join(f"gap {g}" for g in gaps) + " |", "|---|" + "---:|" * len(gaps)]
    for m in methods:
        cells = []
        for g in gaps:
            rs = [r for r in rows if r["method"] == m and r["frame_gap"] == g]
            auc = pose_auc([r["max_deg"] for r in rs], (10.0,))[0]
            cells.append(f"{100 * auc:.1f} / {100 * np.mean([r['success'] for r in rs]):.0f}" if rs else "–")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "AUC@10° / success (%) by frame gap:\n\n" + "\n".join(lines) + "\n"


def csv_text(rows: list[dict]) -> str:
    from twoview.bench.scoring import PER_PAIR_COLUMNS

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(PER_PAIR_COLUMNS), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items() if k in PER_PAIR_COLUMNS})
    return buf.getvalue()


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _colour(methods: list[str], m: str):
    """One colour per method across every panel."""
    import matplotlib

    i = methods.index(m)
    return f"C{i}" if len(methods) <= 10 else matplotlib.colormaps["tab20"](i % 20)


def plot_cumulative(rows: list[dict], methods: list[str], summary: dict) -> bytes:
    """Cumulative curves: fraction of pairs under a max(rot, t-angle) error, and under a
    metric translation error (metric methods only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    # the range of the AUCs (30 deg) at most, less when every error is smaller (5 deg at least)
    xs = np.linspace(0, min(30.0, max(5.0, _upper_limit([r["max_deg"] for r in rows], default=30.0))), 301)
    metric_errors = [r["trans_m"] for r in rows if summary["methods"][r["method"]]["metric"]]
    xm = np.linspace(0, _upper_limit(metric_errors, default=0.5), 301)
    for m in methods:
        e = np.array([r["max_deg"] for r in rows if r["method"] == m], dtype=float)
        e = np.where(np.isfinite(e), e, np.inf)
        axes[0].plot(xs, [(e <= x).mean() for x in xs], label=m, color=_colour(methods, m))
        if summary["methods"][m]["metric"]:
            t = np.array([r["trans_m"] for r in rows if r["method"] == m], dtype=float)
            t = np.where(np.isfinite(t), t, np.inf)
            axes[1].plot(xm, [(t <= x).mean() for x in xm], label=m, color=_colour(methods, m))
    if not any(summary["methods"][m]["metric"] for m in methods):
        axes[1].text(0.5, 0.5, "no metric method in this run", ha="center", va="center", transform=axes[1].transAxes)
    axes[0].set(xlabel="max(rotation, translation angle) error (°)", ylabel="fraction of pairs", ylim=(0, 1.02),
                xlim=(0, xs[-1]), title="pose error")
    axes[1].set(xlabel="translation error (m)", ylabel="fraction of pairs", ylim=(0, 1.02), xlim=(0, xm[-1]),
                title="metric translation error (metric methods)")
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="lower right")
    return _png(fig)


def _upper_limit(values, default: float) -> float:
    """An axis end that shows the bulk of ``values`` (1.2 x their 95th percentile, finite ones
    only), ``default`` when none is finite and positive."""
    v = np.asarray([x for x in values if isinstance(x, (int, float)) and math.isfinite(x)], dtype=float)
    v = v[v > 0]
    if not v.size:
        return default
    return float(1.2 * np.quantile(v, 0.95))


def _error_axis(ax, values, cap: float) -> None:
    """Linear when ``values`` span less than a factor 30, else symmetric-log with its linear part
    below the smallest error and ticks at 1, 2 and 5 of every decade (never a one-tick axis)."""
    import matplotlib.ticker as mticker

    v = np.asarray([min(x, cap) for x in values if math.isfinite(x)], dtype=float)
    v = v[v > 0]
    if v.size < 2 or v.max() / v.min() < 30:
        ax.set_ylim(0, (v.max() if v.size else cap) * 1.1)
        return
    lin = float(10 ** np.floor(np.log10(v.min())))
    ax.set_yscale("symlog", linthresh=lin)
    ax.set_ylim(0, v.max() * 1.5)
    ax.yaxis.set_major_locator(mticker.SymmetricalLogLocator(base=10, linthresh=lin, subs=[1.0, 2.0, 5.0]))
    ax.yaxis.set_major_formatter(mticker.FormatStrFormatter("%g"))


def plot_vs_baseline(rows: list[dict], methods: list[str]) -> bytes:
    """Median pose error per frame gap (when the pairs have two gaps or more) and the error of
    every pair against its ground-truth baseline; failures drawn at the cap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gaps = sorted({r["frame_gap"] for r in rows if isinstance(r["frame_gap"], int)})
    with_gaps = len(gaps) >= 2  # one gap is one point per method: no curve to read
    fig, axes = plt.subplots(1, 2 if with_gaps else 1, figsize=(11 if with_gaps else 6, 4), squeeze=False)
    axes = axes[0]
    cap = 90.0
    errors = [r["max_deg"] if math.isfinite(r["max_deg"]) else cap for r in rows]
    medians = []
    for m in methods:
        mr = [r for r in rows if r["method"] == m]
        if with_gaps:
            med = []
            for g in gaps:
                e = np.array([r["max_deg"] for r in mr if r["frame_gap"] == g], dtype=float)
                med.append(np.median(np.where(np.isfinite(e), e, np.inf)) if e.size else np.nan)
            med = np.minimum(med, cap)
            medians.extend(med)
            axes[0].plot(gaps, med, marker="o", label=m, color=_colour(methods, m))
        b = np.array([r["gt_baseline_m"] for r in mr], dtype=float)
        e = np.array([r["max_deg"] for r in mr], dtype=float)
        axes[-1].scatter(b, np.minimum(np.where(np.isfinite(e), e, cap), cap), s=10, alpha=0.6, label=m, color=_colour(methods, m))
    if with_gaps:
        axes[0].set(xlabel="frame gap", ylabel=f"median max error (°, failures = {cap:.0f})", title="error vs frame gap")
        axes[0].set_xticks(gaps if len(gaps) <= 12 else gaps[:: int(np.ceil(len(gaps) / 12))])
        _error_axis(axes[0], medians, cap)
    axes[-1].set(xlabel="ground-truth baseline (m)", ylabel=f"max error (°, failures at {cap:.0f})", title="error vs baseline")
    _error_axis(axes[-1], errors, cap)
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return _png(fig)


def per_pair_table(rows: list[dict], methods: list[str], summary: dict) -> str:
    """HTML table, one row per pair: its ground truth, then per method the max angular error,
    the metric translation error (metric methods) and the outcome (the failure reason).
    Clicking a column header sorts by it."""
    by_pair: dict[str, dict] = {}
    for r in rows:
        by_pair.setdefault(r["pair_id"], {"row": r})[r["method"]] = r
    head = ["pair", "frame 0", "frame 1", "gap", "GT baseline (m)", "GT rotation (°)"]
    for m in methods:
        head += [f"{m}: max err (°)"] + ([f"{m}: t err (m)"] if summary["methods"][m]["metric"] else []) + [f"{m}: outcome"]

    def num(v, digits):
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            return "<td></td>"
        if not math.isfinite(v):
            return f'<td data-v="{1e300 if v > 0 else -1e300}">{"∞" if v > 0 else "–"}</td>'
        return f'<td data-v="{v:.9g}">{v:.{digits}g}</td>'

    body = []
    for pid, cells in by_pair.items():
        r0 = cells["row"]
        tds = [f"<td>{html.escape(str(pid))}</td>", f"<td>{html.escape(str(r0['frame0']))}</td>",
               f"<td>{html.escape(str(r0['frame1']))}</td>", num(r0["frame_gap"] if r0["frame_gap"] != "" else None, 6),
               num(r0["gt_baseline_m"], 3), num(r0["gt_rotation_deg"], 3)]
        for m in methods:
            r = cells.get(m)
            if r is None:
                tds += ["<td></td>"] * (3 if summary["methods"][m]["metric"] else 2)
                continue
            tds.append(num(r["max_deg"], 3))
            if summary["methods"][m]["metric"]:
                tds.append(num(r["trans_m"], 3))
            outcome = "ok" if r["success"] else f"failed: {r['reason']}"
            tds.append(f'<td class="{"ok" if r["success"] else "fail"}">{html.escape(outcome)}</td>')
        body.append("<tr>" + "".join(tds) + "</tr>")
    ths = "".join(f'<th onclick="sortBy(this)">{html.escape(h)}</th>' for h in head)
    return (f'<table id="pairs" class="pairs"><thead><tr>{ths}</tr></thead><tbody>{"".join(body)}</tbody></table>'
            + _SORT_SCRIPT)


_SORT_SCRIPT = """<script>
function sortBy(th){const t=th.closest('table'),i=[...th.parentNode.children].indexOf(th),b=t.tBodies[0];
const asc=th.dataset.asc!=='1';th.dataset.asc=asc?'1':'0';
const key=r=>{const c=r.children[i];return c.dataset.v!==undefined?parseFloat(c.dataset.v):c.textContent;};
[...b.rows].sort((x,y)=>{const a=key(x),c=key(y);const d=(typeof a==='number'&&typeof c==='number')?a-c:
String(a).localeCompare(String(c));return asc?d:-d;}).forEach(r=>b.appendChild(r));}
</script>"""


def environment_versions() -> dict:
    """Versions of twoview, Python and the libraries behind the numbers (None when absent), and
    the git commit of twoview's source when it runs from a checkout."""
    import importlib.metadata
    import platform
    import subprocess

    import cv2

    from twoview import __version__

    def dist(name: str):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    out = {"twoview": __version__, "python": platform.python_version(), "numpy": np.__version__,
           "opencv": cv2.__version__, "torch": dist("torch"), "poselib": dist("poselib"), "platform": platform.platform(),
           "git_commit": None}
    src = Path(__file__).resolve().parents[1]
    try:
        r = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if r.returncode == 0:
            out["git_commit"] = r.stdout.strip()
            dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no", "."],
                                   capture_output=True, text=True, timeout=5)
            if dirty.returncode == 0 and dirty.stdout.strip():
                out["git_commit"] += " (modified)"
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def html_report(resolved: dict, summary: dict, methods: list[str], images: dict[str, bytes], md_table: str,
                pairs_html: str = "") -> str:
    tables_html, rows_html, header = [], [], True
    for line in md_table.strip().splitlines() + [""]:
        if not line.startswith("|"):
            if rows_html:
                tables_html.append("<table>" + "".join(rows_html) + "</table>")
                rows_html, header = [], True
            if line.strip():
                tables_html.append(f"<p>{html.escape(line)}</p>")
            continue
        if set(line) <= set("|-: "):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        tag = "th" if header else "td"
        header = False
        rows_html.append("<tr>" + "".join(f"<{tag}>{html.escape(c)}</{tag}>" for c in cells) + "</tr>")
    imgs = "".join(
        f'<h2>{html.escape(title)}</h2><img alt="{html.escape(title)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'
        for title, data in images.items()
    )
    ds = resolved.get("dataset_resolved", {})
    import json

    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>twoview bench: {html.escape(str(ds.get('kind', '')))}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child,th:first-child{{text-align:left}}
table.pairs th{{cursor:pointer;position:sticky;top:0;background:#eee}}td.fail{{color:#a00;text-align:left}}td.ok{{color:#070}}
img{{max-width:100%}}pre{{background:#f6f6f6;padding:1em;overflow:auto}}</style></head><body>
<h1>twoview bench — {html.escape(str(ds.get('kind', '')))} ({summary['num_pairs']} pairs)</h1>
<p>AUC@5/10/20: SuperGlue/LoFTR trapezoid AUC of max(rotation, translation angle) error, failures as infinite error.
AUC@30 (hist.): the Reloc3r/VGGT mean accuracy over integer thresholds 1..30° (a different number).
Direction-only methods have no metric translation error ("–").</p>
{''.join(tables_html)}
{imgs}
<h2>Per pair</h2><p>Click a column to sort by it. Errors in degrees are max(rotation, translation angle); ∞ a failure.</p>
{pairs_html}
<h2>Versions</h2><pre>{html.escape(json.dumps(summary.get("versions", {}), indent=2))}</pre>
<h2>Configuration</h2><pre>{html.escape(json.dumps(resolved, indent=2))}</pre>
</body></html>
"""


def write_reports(out: Path, resolved: dict, rows: list[dict], summary: dict, methods: list[str]) -> None:
    from twoview.bench.runner import _json_safe

    legend = {
        "auc5/auc10/auc20": "SuperGlue/LoFTR trapezoid AUC of max(rotation, translation angle) error, failures infinite",
        "auc30_hist": "Reloc3r/VGGT mean accuracy over integer thresholds 1..30 deg (a different number); the translation "
                      "angle is folded for direction-only methods only",
        "null": "infinite (a median over more than half failures) or not applicable: metric-error keys of methods "
                "with metric=false are always null",
        "median_ms": "median wall time of the method per pair, milliseconds (dataset I/O excluded); for A@B it "
                     "includes B's time, also when B's cached prediction was reused",
        "median_cpu_ms": "median process CPU time of the method per pair, milliseconds (same accounting as median_ms)",
        "comparisons": "B - A per metric (AUCs and precisions as fractions) with a paired percentile bootstrap "
                       "interval over pairs; diff null where either value is infinite",
        "run.loadavg_1min_start/end": "1-minute load average when prediction started / ended (timings are unreliable "
                                      "on a loaded machine)",
    }
    summary.setdefault("versions", environment_versions())
    legend["versions"] = "twoview, Python and library versions of the run that wrote this file; git_commit of twoview's source"
    atomic_write_json(out / "summary.json", {**_json_safe(summary), "legend": legend})
    table = markdown_table(summary, methods)
    ds = resolved.get("dataset_resolved", {})
    md = (
        f"# twoview bench: {ds.get('kind', '')} ({summary['num_pairs']} pairs)\n\n"
        "AUC and precision in %. AUC@5/10/20 = SuperGlue/LoFTR trapezoid; AUC@30 (hist.) = Reloc3r/VGGT variant.\n\n"
        + table
    )
    by_gap = gap_table(rows, methods)
    if by_gap:
        md += "\n" + by_gap
        table = table + "\n" + by_gap
    if summary.get("comparisons"):
        from twoview.bench.compare import comparison_table

        paired = comparison_table(summary["comparisons"])
        md += "\n" + paired
        table = table + "\n" + paired
    atomic_write_text(out / "results.md", md)
    atomic_write_text(out / "per_pair.csv", csv_text(rows))
    images = {
        "Cumulative error curves": plot_cumulative(rows, methods, summary),
        "Error vs frame gap and baseline": plot_vs_baseline(rows, methods),
    }
    atomic_write_bytes(out / "plots" / "cumulative_error.png", images["Cumulative error curves"])
    atomic_write_bytes(out / "plots" / "error_vs_baseline.png", images["Error vs frame gap and baseline"])
    atomic_write_text(out / "report.html", html_report(resolved, summary, methods, images, table,
                                                       per_pair_table(rows, methods, summary)))
