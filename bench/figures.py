"""Benchmark results: figures with their target and baseline, the table and the JSON file."""

from __future__ import annotations

import json
import os
import platform
import sqlite3
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


@dataclass(frozen=True)
class Target:
    """``value <op> limit``, with op ``>=`` (at least) or ``<`` (below)."""

    op: str
    limit: float

    def met(self, value: float) -> bool:
        return value >= self.limit if self.op == ">=" else value < self.limit

    def __str__(self) -> str:
        return f"{'≥' if self.op == '>=' else '<'} {self.limit:g}"


@dataclass
class Figure:
    """One measured figure; ``baseline`` is the same figure measured on the bare stack in
    the same run (None where no baseline applies)."""

    benchmark: str
    name: str
    value: float
    unit: str
    baseline: float | None = None
    target: Target | None = None

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline

    @property
    def passed(self) -> bool | None:
        return None if self.target is None else self.target.met(self.value)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["target"] = None if self.target is None else str(self.target)
        out["ratio"] = None if self.ratio is None else round(self.ratio, 4)
        out["passed"] = self.passed
        return out


@dataclass
class Run:
    """Everything one ``python -m bench`` run measured."""

    backend: str
    quick: bool
    started: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"started": self.started, "backend": self.backend, "quick": self.quick,
                "machine": machine(), "figures": [f.to_json() for f in self.figures],
                "details": self.details}

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return path

    def table(self) -> Table:
        mode = "quick" if self.quick else "full"
        processes = self.details.get("workers", 1)
        table = Table(title=f"Directo benchmarks: {self.backend}, {processes} worker(s), {mode}, "
                      f"{self.started}")
        for column in ("benchmark", "figure", "value", "target", "pass", "baseline",
                       "ratio to baseline"):
            table.add_column(column, justify="right" if column in ("value", "baseline",
                                                                   "ratio to baseline")
                             else "left")
        for f in self.figures:
            verdict = {None: "", True: "[green]pass[/green]", False: "[red]FAIL[/red]"}
            table.add_row(f.benchmark, f.name, f"{f.value:,.2f} {f.unit}",
                          str(f.target or ""), verdict[f.passed],
                          "" if f.baseline is None else f"{f.baseline:,.2f} {f.unit}",
                          "" if f.ratio is None else f"{f.ratio:.3f}")
        return table

    def print(self, console: Console) -> None:
        console.print(self.table())


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version, "platform": platform.platform()}
