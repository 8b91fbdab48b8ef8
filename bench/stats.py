"""Summaries a benchmark prints: percentiles of one run, and the spread over repeated runs.

A single figure hides the machine's noise; every row shows the median over the runs and
their min and max, so a reader can tell a real change from a noisy neighbour.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100) by nearest rank: a value that was really observed."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Figure:
    """One measured quantity over repeated runs, with its target."""

    name: str
    unit: str
    target: str = ""
    better: Literal["higher", "lower"] = "higher"
    values: list[float] = field(default_factory=list)
    note: str = ""

    def add(self, value: float) -> None:
        self.values.append(value)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def spread(self) -> str:
        if not self.values:
            return "no runs"
        if len(self.values) == 1:
            return "1 run"
        return f"{_num(min(self.values))} – {_num(max(self.values))} ({len(self.values)} runs)"


def _num(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


@dataclass
class Report:
    """Figures in the order they were measured; printed as a table on stdout."""

    title: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def figure(
        self,
        name: str,
        unit: str,
        target: str = "",
        better: Literal["higher", "lower"] = "higher",
    ) -> Figure:
        for existing in self.figures:
            if existing.name == name:
                return existing
        made = Figure(name, unit, target, better)
        self.figures.append(made)
        return made

    def note(self, text: str) -> None:
        self.notes.append(text)

    def render(self) -> str:
        rows = [("figure", "median", "unit", "min – max", "target")]
        for fig in self.figures:
            if not fig.values:
                continue
            rows.append((fig.name, _num(fig.median), fig.unit, fig.spread(), fig.target))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = [f"== {self.title} =="]
        for i, row in enumerate(rows):
            lines.append("  ".join(cell.ljust(widths[j]) for j, cell in enumerate(row)).rstrip())
            if i == 0:
                lines.append("  ".join("-" * w for w in widths))
        lines.extend(f"* {note}" for note in self.notes)
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "figures": [
                {
                    "name": f.name,
                    "unit": f.unit,
                    "target": f.target,
                    "values": f.values,
                    "median": f.median if f.values else None,
                }
                for f in self.figures
            ],
            "notes": self.notes,
        }


def emit(report: Report, json_path: Path | None = None) -> None:
    """Print the table on stdout (a benchmark's output) and optionally keep it as JSON."""
    sys.stdout.write(report.render() + "\n\n")
    sys.stdout.flush()
    if json_path is not None:
        json_path.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")


def progress(text: str) -> None:
    """Progress goes to stderr, so stdout holds only the figures."""
    sys.stderr.write(f"bench: {text}\n")
    sys.stderr.flush()
