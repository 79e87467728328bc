"""A sweep's job folders as report entries: read, named, ordered, with each one's headline figure."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ..common.errors import one_line
from ..results.contract import ContractError, load_checked, load_json
from ..results.files import FAILURE_FILE, RESULTS_FILE
from ..results.paper import HEADLINE_METRIC, PAPER_KEY, compare_to_paper

DEAD_JOB_ERROR = "no results.json or failure.json (job killed?)"


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


def read_entry(job_dir: Path, bands: Sequence[tuple[float, str]] | None) -> dict[str, Any]:
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
        # A results.json is checked against its schema (a kept or copied job folder may hold anything).
        content = load_checked(source) if source is results_path else load_json(source)
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
    except ContractError as exc:
        entry["error"] = one_line(exc)
        return entry
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        entry["error"] = f"bad {source.name}: {exc}"
        return entry
    entry.update(variant=content.get("variant") or entry["variant"], status="ok", protocol=protocol,
                 paper=content.get("paper"), results=content, comparison=comparison)  # fmt: skip
    return entry


def order_key(entry: dict[str, Any], papers: dict[str, dict[str, Any]] | None = None) -> tuple[Any, ...]:
    """Smallest network first (the paper's GFLOPs: XS, S, M, L), unknown ones after, by name.

    ``papers`` (variant -> paper block) places a failed job that recorded no paper figures.
    """
    paper = entry.get("paper") or ((papers or {}).get(str(entry["variant"])) or {})
    gflops = paper.get("gflops")
    return gflops is None, gflops or 0.0, str(entry["variant"]), entry.get("protocol") or 0, entry["job_dir"]


def labels_for(entries: Sequence[dict[str, Any]]) -> list[str]:
    """Column / legend names: the variant, with protocol and then job folder added only where needed to tell apart."""
    labels = [str(e["variant"]) for e in entries]
    mixed = len({e.get("protocol") for e in entries} - {None}) > 1
    if mixed or len(set(labels)) < len(labels):
        labels = [f"{e['variant']} P{e.get('protocol') or '?'}" for e in entries]
    if len(set(labels)) < len(labels):
        labels = [f"{label} [{e['job_dir']}]" for label, e in zip(labels, entries)]
    return labels


def paper_figure(entry: dict[str, Any]) -> float | None:
    """The paper's headline figure for this entry's protocol, known even for many failed jobs."""
    paper, protocol = entry.get("paper"), entry.get("protocol")
    if not paper or protocol not in PAPER_KEY:
        return None
    return paper.get(PAPER_KEY[protocol])


def headline(entry: dict[str, Any], scope: dict[str, Any] | None = None) -> float | None:
    """A successful entry's headline error (its protocol's metric), overall or (given ``scope``) for one action."""
    source = scope if scope is not None else entry["results"].get("metrics") or {}
    value = source.get(HEADLINE_METRIC[entry["protocol"]])
    return None if value is None else float(value)
