"""Write a benchmark's results file and regenerate the table in benchmarks/README.md.

Every benchmark calls :func:`write_results` once at its end. The README table is rebuilt
from all ``benchmarks/results/*.json`` files, so it always shows the last run of each.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
README = BENCH_DIR / "README.md"
_TABLE_START = "<!-- results:start -->"
_TABLE_END = "<!-- results:end -->"


@dataclass(frozen=True)
class Measurement:
    """One measured figure, with the target it is checked against (if any)."""

    metric: str
    value: float
    unit: str
    target: str = ""
    met: bool | None = None
    note: str = ""


def machine() -> dict[str, Any]:
    """Describe the machine the numbers were measured on."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


def write_results(
    name: str, measurements: list[Measurement], extra: dict[str, Any] | None = None
) -> Path:
    """Write ``results/<name>.json`` and refresh the README table.

    Parameters: ``name`` the benchmark's name (file stem); ``measurements`` the figures;
    ``extra`` any raw detail worth keeping next to them. Returns the results path.
    """
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "measured_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "measurements": [asdict(m) for m in measurements],
        "extra": extra or {},
    }
    path = RESULTS_DIR / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    update_readme()
    return path


def _fmt(value: float) -> str:
    if isinstance(value, bool):
        return str(value)
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.1f}"


def render_table() -> str:
    """Render every results file as one Markdown table."""
    lines = [
        "| benchmark | metric | value | unit | target | met | measured at |",
        "|---|---|---|---|---|---|---|",
    ]
    for path in sorted(RESULTS_DIR.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        for m in data["measurements"]:
            met = {True: "yes", False: "**no**", None: ""}[m["met"]]
            metric = m["metric"] + (f" ({m['note']})" if m.get("note") else "")
            lines.append(
                f"| {data['benchmark']} | {metric} | {_fmt(m['value'])} | {m['unit']} "
                f"| {m['target']} | {met} | {data['measured_at']} |"
            )
    return "\n".join(lines)


def update_readme() -> None:
    """Replace the results table between the markers in benchmarks/README.md."""
    text = README.read_text(encoding="utf-8")
    start, end = text.index(_TABLE_START), text.index(_TABLE_END)
    new = text[: start + len(_TABLE_START)] + "\n" + render_table() + "\n" + text[end:]
    README.write_text(new, encoding="utf-8")
