"""Compare evaluation results with the paper and turn one run or a whole sweep into reports.

One run: :func:`compare_to_paper` (stored in its results.json) and :func:`format_summary` (terminal).
A sweep: :func:`write_sweep_report` gathers every job folder's results.json / failure.json into
``benchmark_results.json``, ``BENCHMARK_REPORT.md`` and ``benchmark_comparison.png``.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from omegaconf import OmegaConf

from .atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from .data.skeleton import ACTION_NAMES
from .errors import EvalError
from .filenames import (
    BENCHMARK_JSON,
    BENCHMARK_MD,
    BENCHMARK_PNG,
    FAILURE_FILE,
    RESULTS_FILE,
)
from .variants import released_variants

# The metric each protocol's paper figure is about, and the key of that figure in the variant's `paper` block.
HEADLINE_METRIC: dict[int, str] = {1: "pa_mpjpe", 2: "mpjpe"}
PAPER_KEY: dict[int, str] = {1: "pa_mpjpe_p1", 2: "mpjpe_p2"}
METRIC_LABELS: dict[str, str] = {
    "mpjpe": "MPJPE",
    "pa_mpjpe": "PA-MPJPE",
    "pa_mpjpe_scaled": "PA-MPJPE (scaled)",
}
# The band for a difference no configured band covers.
FALLBACK_BAND = "review"
DEAD_JOB_ERROR = "no results.json or failure.json (job killed?)"

SYNTHETIC_WARNING = "SYNTHETIC SAMPLE, NOT Human3.6M: these numbers say nothing about the model's accuracy"
ORACLE_WARNING = "ORACLE: predictions were taken from the ground truth (install check), not from the model"


# --------------------------------------------------------------------------- comparison with the paper


def tolerance_band(diff: float, bands: Sequence[tuple[float, str]]) -> str:
    """The label of the tightest band with ``|diff| < threshold``; a NaN difference lands in the fallback."""
    for threshold, label in sorted((float(t), str(name)) for t, name in bands):
        if abs(diff) < threshold:
            return label
    return FALLBACK_BAND


def compare_to_paper(
    metrics: dict[str, Any], paper: dict[str, Any] | None, protocol: int, bands: Sequence[tuple[float, str]]
) -> dict[str, Any] | None:
    """Our headline error next to the paper's, or None when the paper gives no figure for this protocol.

    The difference is rounded to 1e-6 mm so that a float artefact (52.8 - 51.8 = 0.99999...) cannot move
    a result across a band edge.
    """
    if protocol not in HEADLINE_METRIC:
        raise ValueError(f"protocol must be 1 or 2, not {protocol!r}")
    metric = HEADLINE_METRIC[protocol]
    figure = None if paper is None else paper.get(PAPER_KEY[protocol])
    ours = metrics.get(metric)
    if figure is None or ours is None:
        return None
    diff = round(float(ours) - float(figure), 6)
    return {"metric": metric, "ours": float(ours), "paper": float(figure), "diff": diff,
            "band": tolerance_band(diff, bands)}  # fmt: skip


# --------------------------------------------------------------------------- one run, for the terminal


def _num(value: Any, digits: int = 2, empty: str = "-") -> str:
    return empty if value is None else f"{float(value):.{digits}f}"


def _flags(results: dict[str, Any]) -> list[str]:
    """The loud warnings a set of results must carry wherever it is shown."""
    return [text for key, text in (("synthetic", SYNTHETIC_WARNING), ("oracle", ORACLE_WARNING)) if results.get(key)]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Plain-text columns: first left-aligned, the others right-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]

    def line(cells: Sequence[str]) -> str:
        first, *rest = cells
        return "  ".join([str(first).ljust(widths[0])] + [str(c).rjust(w) for c, w in zip(rest, widths[1:])])

    return [line(header), "  ".join("-" * w for w in widths)] + [line(row) for row in rows]


def format_summary(results: dict[str, Any]) -> str:
    """A terminal table of one run: what ran, the three metrics against the paper, then the 15 actions."""
    checkpoint = results.get("checkpoint") or {}
    protocol = results.get("protocol")
    flip = {True: "on", False: "off"}.get(results.get("flip_test"), "?")
    banners = [f"!!!!!!!! {text} !!!!!!!!" for text in _flags(results)]
    lines = list(banners)
    lines.append(
        f"ConvNeXtPose-{results.get('variant', '?')} | protocol {protocol} | "
        f"{results.get('num_samples', '?')} samples | flip test {flip} | "
        f"checkpoint epoch {checkpoint.get('epoch', '?')}"
    )
    lines.append("")
    comparison = results.get("comparison")
    overall = []
    for metric, label in METRIC_LABELS.items():
        compared = comparison is not None and comparison.get("metric") == metric
        overall.append([
            label,
            _num(results.get("metrics", {}).get(metric)),
            _num(comparison["paper"]) if compared else "-",
            f"{comparison['diff']:+.2f}" if compared else "-",
            comparison["band"] if compared else "-",
        ])  # fmt: skip
    lines += _table(["metric (mm)", "ours", "paper", "diff", "band"], overall)
    lines.append("")
    per_action = results.get("per_action") or {}
    rows = []
    for action in ACTION_NAMES:
        values = per_action.get(action) or {}
        rows.append([action, *(_num(values.get(m)) for m in METRIC_LABELS), str(values.get("num_samples", "-"))])
    lines += _table(["action", *METRIC_LABELS.values(), "samples"], rows)
    model, speed = results.get("model") or {}, results.get("throughput") or {}
    extras = []
    if model.get("params") is not None:
        extras.append(f"{model['params'] / 1e6:.2f} M params")
    if model.get("gflops") is not None:
        extras.append(f"{model['gflops']:.2f} GFLOPs")
    if speed.get("images_per_s") is not None:
        extras.append(f"{speed['images_per_s']:.1f} images/s on {speed.get('device', '?')} x{speed.get('devices', 1)}")
    if extras:
        lines += ["", "; ".join(extras)]
    # Repeated at the bottom: the end of the output is what stays on screen.
    lines += banners
    return "\n".join(lines)


# --------------------------------------------------------------------------- a sweep


def _hydra_context(job_dir: Path) -> dict[str, Any]:
    """Variant, protocol and paper figures from the job's saved Hydra config, for jobs that left no results.

    Hydra writes ``.hydra/config.yaml`` before the job starts, so even a killed job can be named and its
    paper figure shown. Best effort: a missing or foreign config just gives nothing.
    """
    path = job_dir / ".hydra" / "config.yaml"
    try:
        config = OmegaConf.load(path)
        paper = OmegaConf.select(config, "variant.paper", default=None)
        return {
            "variant": OmegaConf.select(config, "variant.name", default=None),
            "protocol": OmegaConf.select(config, "data.protocol", default=None),
            "paper": OmegaConf.to_container(paper, resolve=True) if paper is not None else None,
        }
    except Exception:  # noqa: BLE001 - any unreadable config only costs the extra context
        return {}


def _read_entry(job_dir: Path, bands: Sequence[tuple[float, str]] | None) -> dict[str, Any]:
    """One job folder as a report entry; every way a job can go wrong becomes a failed entry with a reason."""
    context = _hydra_context(job_dir)
    entry: dict[str, Any] = {
        "variant": context.get("variant") or job_dir.name,
        "status": "failed",
        "job_dir": job_dir.name,
        "protocol": context.get("protocol"),
        "paper": context.get("paper"),
    }
    results_path, failure_path = job_dir / RESULTS_FILE, job_dir / FAILURE_FILE
    source = results_path if results_path.is_file() else failure_path if failure_path.is_file() else None
    if source is None:
        entry["error"] = DEAD_JOB_ERROR
        return entry
    try:
        content = json.loads(source.read_text(encoding="utf-8"))
        if source is failure_path:
            entry.update(variant=content.get("variant") or entry["variant"],
                         error=content.get("error") or "failure.json gives no reason")  # fmt: skip
            return entry
        protocol = content.get("protocol")
        if protocol not in HEADLINE_METRIC:
            raise ValueError(f"protocol {protocol!r} is not 1 or 2")
        comparison = (
            compare_to_paper(content.get("metrics") or {}, content.get("paper"), protocol, bands)
            if bands is not None
            else content.get("comparison")
        )
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        entry["error"] = f"bad {source.name}: {exc}"
        return entry
    entry.update(variant=content.get("variant") or entry["variant"], status="ok", protocol=protocol,
                 paper=content.get("paper"), results=content, comparison=comparison)  # fmt: skip
    return entry


def _released_papers() -> dict[str, dict[str, Any]]:
    """Paper blocks of the released variants, to place a failed job that recorded none; empty if unreadable."""
    try:
        return {name: node.get("paper") or {} for name, node in released_variants().items()}
    except EvalError:
        return {}


def _order_key(entry: dict[str, Any]) -> tuple[Any, ...]:
    """Smallest network first (the paper's GFLOPs: XS, S, M, L), unknown ones after, by name."""
    paper = entry.get("paper") or (_released_papers().get(str(entry["variant"])) or {})
    gflops = paper.get("gflops")
    return gflops is None, gflops or 0.0, str(entry["variant"]), entry.get("protocol") or 0, entry["job_dir"]


def _labels(entries: Sequence[dict[str, Any]]) -> list[str]:
    """Column / legend names: the variant, with protocol and then job folder added only where needed to tell apart."""
    labels = [str(e["variant"]) for e in entries]
    mixed = len({e.get("protocol") for e in entries} - {None}) > 1
    if mixed or len(set(labels)) < len(labels):
        labels = [f"{e['variant']} P{e.get('protocol') or '?'}" for e in entries]
    if len(set(labels)) < len(labels):
        labels = [f"{label} [{e['job_dir']}]" for label, e in zip(labels, entries)]
    return labels


def _paper_figure(entry: dict[str, Any]) -> float | None:
    """The paper's headline figure for this entry's protocol, known even for many failed jobs."""
    paper, protocol = entry.get("paper"), entry.get("protocol")
    if not paper or protocol not in PAPER_KEY:
        return None
    return paper.get(PAPER_KEY[protocol])


def _headline(entry: dict[str, Any], scope: dict[str, Any] | None = None) -> float | None:
    """A successful entry's headline error (its protocol's metric), overall or (given ``scope``) for one action."""
    source = scope if scope is not None else entry["results"].get("metrics") or {}
    value = source.get(HEADLINE_METRIC[entry["protocol"]])
    return None if value is None else float(value)


def write_sweep_report(sweep_dir: Path, bands: Sequence[tuple[float, str]] | None = None) -> dict[str, Any]:
    """Gather every job folder of a sweep and write the JSON, Markdown and PNG reports into the sweep folder.

    With ``bands`` the comparisons are recomputed with them; without, each job's stored comparison is used.
    """
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"{sweep_dir}: sweep folder does not exist")
    job_dirs = [p for p in sorted(sweep_dir.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    entries = sorted((_read_entry(p, bands) for p in job_dirs), key=_order_key)
    ok = [e for e in entries if e["status"] == "ok"]
    protocols = {e["protocol"] for e in entries if e.get("protocol") is not None}
    aggregate = {
        "synthetic": any(e["results"].get("synthetic") for e in ok),
        "oracle": any(e["results"].get("oracle") for e in ok),
        # One protocol for the whole sweep, or None when the jobs mixed them (each entry carries its own).
        "protocol": protocols.pop() if len(protocols) == 1 else None,
        "entries": entries,
    }
    atomic_write_json(sweep_dir / BENCHMARK_JSON, aggregate)
    atomic_write_text(sweep_dir / BENCHMARK_MD, _markdown(aggregate, sweep_dir, bands))
    atomic_write_bytes(sweep_dir / BENCHMARK_PNG, _plot(aggregate))
    return aggregate


# --------------------------------------------------------------------------- sweep Markdown


def _cell(text: Any) -> str:
    """Markdown-safe single-line table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _markdown(aggregate: dict[str, Any], sweep_dir: Path, bands: Sequence[tuple[float, str]] | None) -> str:
    entries = aggregate["entries"]
    ok = [e for e in entries if e["status"] == "ok"]
    labels = _labels(entries)
    lines = ["# ConvNeXtPose on Human3.6M: benchmark against the paper", ""]
    for key, text in (("synthetic", SYNTHETIC_WARNING), ("oracle", ORACLE_WARNING)):
        flagged = [label for label, e in zip(labels, entries) if e["status"] == "ok" and e["results"].get(key)]
        if flagged:
            lines += [f"> **WARNING: {text}.** Affected: {', '.join(flagged)}.", ""]
    protocol = aggregate["protocol"]
    protocol_text = f"protocol {protocol}" if protocol is not None else "protocols as listed per row"
    lines += [
        f"Sweep folder: `{sweep_dir}`  ",
        f"Jobs: {len(entries)} ({len(ok)} ok, {len(entries) - len(ok)} failed); {protocol_text}. "
        "The paper's figure is MPJPE for protocol 2 and PA-MPJPE for protocol 1; errors in mm.",
    ]
    if bands is not None:
        legend = ", ".join(f"< {t:g} mm {label}" for t, label in sorted((float(t), str(n)) for t, n in bands))
        lines.append(f"Bands on |ours - paper|: {legend}, otherwise {FALLBACK_BAND}.")
    lines += ["", "## Results per variant", ""]
    header = ["Variant", "Status", "Protocol", "Samples", "MPJPE", "PA-MPJPE (rigid, paper's)", "PA-MPJPE (scaled)",
              "Paper", "Diff", "Band", "Params (M)", "GFLOPs", "Throughput (img/s)"]  # fmt: skip
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, entry in zip(labels, entries):
        figure = _paper_figure(entry)
        paper_text = (
            f"{figure:.2f} ({METRIC_LABELS[HEADLINE_METRIC[entry['protocol']]]})" if figure is not None else "-"
        )
        if entry["status"] != "ok":
            row = [label, f"**FAILED**: {entry['error']}", entry.get("protocol") or "-", "-", "-", "-", "-",
                   paper_text, "-", "-", "-", "-", "-"]  # fmt: skip
        else:
            results = entry["results"]
            metrics, model, speed = results.get("metrics") or {}, results.get("model") or {}, results.get("throughput") or {}
            status = " ".join(["ok", *(f"**{k.upper()}**" for k in ("synthetic", "oracle") if results.get(k))])
            comparison = entry.get("comparison")
            ips = speed.get("images_per_s")
            row = [
                label, status, entry["protocol"], results.get("num_samples", "-"),
                *(_num(metrics.get(m)) for m in METRIC_LABELS), paper_text,
                f"{comparison['diff']:+.2f}" if comparison else "-",
                comparison["band"] if comparison else "-",
                _num(model["params"] / 1e6) if model.get("params") is not None else "-",
                _num(model.get("gflops")),
                f"{ips:.1f} ({speed.get('device', '?')} x{speed.get('devices', 1)})" if ips is not None else "-",
            ]  # fmt: skip
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    lines += ["", "## Per action (each column: its protocol's paper metric, mm)", ""]
    ok_labels = [label for label, e in zip(labels, entries) if e["status"] == "ok"]
    if not ok:
        lines.append("No job succeeded: no per-action figures.")
    else:
        columns = [f"{label} {METRIC_LABELS[HEADLINE_METRIC[e['protocol']]]}" for label, e in zip(ok_labels, ok)]
        lines += ["| Action | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
        for action in ACTION_NAMES:
            values = [_num(_headline(e, (e["results"].get("per_action") or {}).get(action) or {})) for e in ok]
            lines.append(f"| {action} | " + " | ".join(values) + " |")
        lines.append("| **Overall** | " + " | ".join(f"**{_num(_headline(e))}**" for e in ok) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- sweep figure

_OURS_COLOUR, _PAPER_COLOUR, _FAILED_COLOUR = "#1f77b4", "#b0b0b0", "#d62728"


def _plot(aggregate: dict[str, Any]) -> bytes:
    """Two panels as PNG bytes: ours vs paper per variant, and the per-action headline error per variant."""
    entries = aggregate["entries"]
    labels = _labels(entries)
    figure = Figure(figsize=(17, 7), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2, width_ratios=[1, 1.7])
    title = "ConvNeXtPose on Human3.6M: ours vs paper"
    warnings = [text for key, text in (("synthetic", SYNTHETIC_WARNING), ("oracle", ORACLE_WARNING)) if aggregate[key]]
    figure.suptitle("\n".join([title, *warnings]), fontsize=14, color=_FAILED_COLOUR if warnings else "black")

    # Left: ours vs paper, headline metric of each entry's protocol.
    width = 0.38
    ours = [_headline(e) if e["status"] == "ok" else None for e in entries]
    paper = [_paper_figure(e) for e in entries]
    known = [v for v in ours + paper if v is not None and math.isfinite(v)]
    # Headroom above the tallest bar for the diff/band annotation and the legend.
    top = max(known) * 1.35 if known else 1.0
    left.set_ylim(0, top)
    if not known:
        left.set_yticks([])
    xs = range(len(entries))
    for x, entry, mine, theirs in zip(xs, entries, ours, paper):
        if theirs is not None:
            left.bar(x + width / 2, theirs, width, color=_PAPER_COLOUR)
            left.text(x + width / 2, theirs, f"{theirs:.2f}", ha="center", va="bottom", fontsize=8)
        elif entry["status"] == "ok":
            left.text(x + width / 2, top * 0.02, "no paper figure", rotation=90, ha="center", va="bottom",
                      color="dimgray", fontsize=8)  # fmt: skip
        if entry["status"] != "ok":
            left.bar(x - width / 2, top * 0.7, width, fill=False, hatch="//", edgecolor=_FAILED_COLOUR)
            left.text(x - width / 2, top * 0.35, "FAILED", rotation=90, ha="center", va="center",
                      color=_FAILED_COLOUR, fontweight="bold", backgroundcolor="white")  # fmt: skip
            continue
        if mine is not None:
            left.bar(x - width / 2, mine, width, color=_OURS_COLOUR)
            left.text(x - width / 2, mine, f"{mine:.2f}", ha="center", va="bottom", fontsize=8)
        comparison = entry.get("comparison")
        if comparison is not None:
            left.text(x, max(mine or 0, theirs or 0) + top * 0.06, f"{comparison['diff']:+.2f}\n{comparison['band']}",
                      ha="center", va="bottom", fontsize=9, fontweight="bold")  # fmt: skip
    left.set_xticks(list(xs))
    left.set_xticklabels(
        [f"{label}\n{METRIC_LABELS.get(HEADLINE_METRIC.get(e.get('protocol')), '')}" for label, e in zip(labels, entries)]
    )
    left.set_xlim(-0.7, max(len(entries) - 0.3, 0.7))
    left.set_ylabel("error (mm)")
    protocol = aggregate["protocol"]
    left.set_title("Headline error per variant" + (f" (protocol {protocol})" if protocol is not None else ""))
    left.legend(
        handles=[
            Patch(color=_OURS_COLOUR, label="ours"),
            Patch(color=_PAPER_COLOUR, label="paper"),
            Patch(fill=False, hatch="//", edgecolor=_FAILED_COLOUR, label="failed job"),
        ],
        loc="upper left", ncols=3, fontsize=9,
    )  # fmt: skip

    # Right: per-action headline error, one line per successful entry.
    ok = [(label, e) for label, e in zip(labels, entries) if e["status"] == "ok"]
    positions = list(range(len(ACTION_NAMES)))
    for label, entry in ok:
        per_action = entry["results"].get("per_action") or {}
        values = [_headline(entry, per_action.get(action) or {}) for action in ACTION_NAMES]
        metric = METRIC_LABELS[HEADLINE_METRIC[entry["protocol"]]]
        right.plot(positions, [math.nan if v is None else v for v in values], marker="o", label=f"{label} ({metric})")
    failed = [label for label, e in zip(labels, entries) if e["status"] != "ok"]
    if ok:
        legend = right.legend(loc="best", fontsize=9, title=f"failed, not shown: {', '.join(failed)}" if failed else None,
                              title_fontsize=9)  # fmt: skip
        legend.get_title().set_color(_FAILED_COLOUR)
    else:
        right.text(0.5, 0.5, "no successful job", transform=right.transAxes, ha="center", va="center",
                   color=_FAILED_COLOUR, fontsize=14)  # fmt: skip
        right.set_yticks([])
    right.set_xticks(positions)
    right.set_xticklabels(ACTION_NAMES, rotation=40, ha="right")
    right.set_xlim(-0.5, len(ACTION_NAMES) - 0.5)
    right.set_ylabel("error (mm)")
    right.set_title("Per action (each variant's headline metric)")
    right.grid(axis="y", alpha=0.3)

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
