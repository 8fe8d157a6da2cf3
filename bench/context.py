"""What every benchmark is handed: the run's options, a work directory, the baseline server
(started once per run) and where to record details for the JSON file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.server import Deployment, ServerProcess


@dataclass
class Context:
    backend: str
    quick: bool
    workdir: Path
    baseline: ServerProcess
    details: dict[str, Any] = field(default_factory=dict)
    workers: int = 1

    def deployment(self, name: str) -> Deployment:
        """A fresh, migrated database for one benchmark (servers not started yet)."""
        return Deployment.prepare(self.backend, self.workdir / name, workers=self.workers)

    def sized(self, full: int, quick: int) -> int:
        return quick if self.quick else full
