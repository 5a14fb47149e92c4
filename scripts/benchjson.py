"""The machine-readable side of the benchmark scripts: `--json FILE` writes their figures.

Each figure is what the README's table shows: what was measured, its value and unit, the
baseline measured in the same run (and what it is), the ratio, and the target if there is
one. `scripts/bench_all.py` runs every script with `--json` and renders the table.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True, kw_only=True)
class Figure:
    """One measured figure beside its baseline."""

    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    ratio: float | None = None
    target: str = ""


def add_json_option(parser: argparse.ArgumentParser) -> None:
    """The `--json FILE` option every benchmark takes."""
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")


def ratio(value: float, baseline: float) -> float | None:
    """value / baseline, None when the baseline is zero."""
    return value / baseline if baseline else None


def write(path: Path | None, script: str, figures: list[Figure], **context: object) -> None:
    """Write `figures` (and what the run was: backend, sizes) to `path`, if given."""
    if path is None:
        return
    data = {"script": script, "context": context, "figures": [asdict(f) for f in figures]}
    path.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
