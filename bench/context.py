"""What every benchmark is handed: the run's options, a work directory, the baseline server
(started once per run) and where to record details for the JSON file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.server import Deployment, ServerProcess, start_baseline


@dataclass
class Context:
    backend: str
    quick: bool
    workdir: Path
    baseline: ServerProcess
    details: dict[str, Any] = field(default_factory=dict)
    workers: int = 1
    _one_process_baseline: ServerProcess | None = None

    def one_process_baseline(self) -> ServerProcess:
        """The baseline as one process, for bare endpoints that keep state in a process's
        memory (deliver's channels): with ``--workers N``, a bare push and its listener
        could land on different workers, and the push would reach nobody."""
        if self.baseline.workers == 1:
            return self.baseline
        if self._one_process_baseline is None:
            workdir = self.workdir / "one-process-baseline"
            workdir.mkdir(exist_ok=True)
            self._one_process_baseline = start_baseline(workdir)
        return self._one_process_baseline

    def close(self) -> None:
        if self._one_process_baseline is not None:
            self._one_process_baseline.stop()

    def deployment(self, name: str) -> Deployment:
        """A fresh, migrated database for one benchmark (servers not started yet)."""
        return Deployment.prepare(self.backend, self.workdir / name, workers=self.workers)

    def sized(self, full: int, quick: int) -> int:
        return quick if self.quick else full
