"""Results files as Markdown tables, for docs/performance.md:
``python -m bench.report bench/results/<file>.json [...]``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def number(value: float | None, unit: str = "") -> str:
    if value is None:
        return ""
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"
    return f"{text} {unit}".strip()


def markdown(run: dict[str, Any]) -> str:
    processes = run["details"].get("workers", 1)
    lines = [f"{run['backend']}, {processes} worker(s), {'quick' if run['quick'] else 'full'}, "
             f"{run['started']}:", "",
             "| benchmark | figure | value | target | pass | baseline | ratio |",
             "|---|---|---:|---|---|---:|---:|"]
    verdict = {None: "", True: "pass", False: "**FAIL**"}
    for f in run["figures"]:
        lines.append(f"| {f['benchmark']} | {f['name']} | {number(f['value'], f['unit'])} | "
                     f"{f['target'] or ''} | {verdict[f['passed']]} | "
                     f"{number(f['baseline'], f['unit'])} | {number(f['ratio'])} |")
    return "\n".join(lines)


def main(paths: list[str]) -> None:
    for path in paths:
        print(markdown(json.loads(Path(path).read_text())) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
