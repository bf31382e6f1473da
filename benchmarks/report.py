"""Write a benchmark's results file and regenerate the table in benchmarks/README.md.

Every benchmark calls :func:`write_results` once at its end. The README table is rebuilt
from all ``benchmarks/results/*.json`` files, so it always shows the last run of each.

Each file records the machine, and above all the CPU: machines of the same kind can differ
in CPU generation, vector extensions and cache sizes, and timings with them (the raw-data
back-projector once ran 2.4x slower on an older EPYC than on a newer one).
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


# Environment variables that make libraries use older instruction sets than the CPU has;
# a result measured under any of them says so.
ISA_VARIABLES = (
    "ATEN_CPU_CAPABILITY",
    "MKL_ENABLE_INSTRUCTIONS",
    "ONEDNN_MAX_CPU_ISA",
    "NPY_DISABLE_CPU_FEATURES",
    "OPENBLAS_CORETYPE",
    "NUMBA_CPU_NAME",
    "NUMBA_CPU_FEATURES",
)
_VECTOR_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c")


def parse_cpuinfo(text: str) -> dict[str, str]:
    """Return the fields of the first processor in ``/proc/cpuinfo`` text (``key: value`` lines)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # end of the first processor's block
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields


def _int(value: str | None) -> int | None:
    try:
        return int(value, 0) if value is not None else None
    except ValueError:
        return None


def describe_cpu(cpuinfo: dict[str, str], caches: dict[str, str], cores: int | None) -> dict[str, Any]:
    """Summarise a CPU from its ``/proc/cpuinfo`` fields and cache sizes.

    Parameters: ``cpuinfo`` from :func:`parse_cpuinfo`; ``caches`` level name -> size
    (``{"L2": "1024K"}``); ``cores`` logical CPUs this process may use.
    Returns model name, vendor, family/model/stepping, vector extensions, caches, cores.
    """
    flags = set(cpuinfo.get("flags", "").split())
    avx512 = sorted(f for f in flags if f.startswith("avx512"))
    return {
        "model_name": cpuinfo.get("model name") or platform.processor() or "unknown",
        "vendor": cpuinfo.get("vendor_id", "unknown"),
        "family": _int(cpuinfo.get("cpu family")),
        "model": _int(cpuinfo.get("model")),
        "stepping": _int(cpuinfo.get("stepping")),
        "avx2": "avx2" in flags,
        "avx512": bool(avx512),
        "vector_flags": [f for f in _VECTOR_FLAGS if f in flags] + avx512,
        "caches": caches,
        "cores": cores,
    }


def _caches(root: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> dict[str, str]:
    """Cache sizes seen by CPU 0, e.g. ``{"L1d": "48K", "L2": "1024K", "L3": "32768K"}``."""
    found: dict[str, str] = {}
    for index in sorted(root.glob("index*")):
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            size = (index / "size").read_text().strip()
        except OSError:
            continue
        if kind == "Instruction":
            continue
        found[f"L{level}" + ("d" if kind == "Data" else "")] = size
    return found


def _torch_capability() -> str | None:
    """The vector code path torch's own kernels run (``AVX512``, ``AVX2``, ``DEFAULT``)."""
    try:
        import torch
    except ImportError:
        return None
    return str(torch.backends.cpu.get_cpu_capability())


def cpu() -> dict[str, Any]:
    """Describe this process's CPU: model, vector extensions, caches, cores, torch's code path."""
    try:
        fields = parse_cpuinfo(Path("/proc/cpuinfo").read_text(encoding="utf-8"))
    except OSError:
        fields = {}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    described = describe_cpu(fields, _caches(), cores)
    described["torch_cpu_capability"] = _torch_capability()
    described["isa_overrides"] = {k: os.environ[k] for k in ISA_VARIABLES if k in os.environ}
    return described


def cpu_label(described: dict[str, Any] | None) -> str:
    """One line for a table: ``AMD EPYC (AuthenticAMD 26/2/1), AVX-512, L2 1024K, L3 32768K, 2 cores``."""
    if not described:
        return "not recorded"
    ids = "/".join(str(described.get(k)) for k in ("family", "model", "stepping"))
    vector = "AVX-512" if described.get("avx512") else "AVX2" if described.get("avx2") else "no AVX2"
    caches = described.get("caches") or {}
    parts = [f"{described.get('model_name')} ({described.get('vendor')} {ids})", vector]
    parts += [f"{level} {caches[level]}" for level in ("L2", "L3") if level in caches]
    parts.append(f"{described.get('cores')} cores")
    if described.get("isa_overrides"):
        parts.append(
            "ISA settings in the environment: " + ", ".join(f"{k}={v}" for k, v in described["isa_overrides"].items())
        )
    return ", ".join(parts)


def machine() -> dict[str, Any]:
    """Describe the machine the numbers were measured on."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cpu": cpu(),
    }


def write_results(name: str, measurements: list[Measurement], extra: dict[str, Any] | None = None) -> Path:
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
    """Render every results file as one Markdown table, after the CPU each was measured on."""
    machines = ["CPU of each benchmark's last run:", ""]
    lines = [
        "| benchmark | metric | value | unit | target | met | measured at |",
        "|---|---|---|---|---|---|---|",
    ]
    for path in sorted(RESULTS_DIR.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        machines.append(f"- {data['benchmark']}: {cpu_label(data.get('machine', {}).get('cpu'))}")
        # results/mutation_solidity.json has its own layout; its rows are in the mutation table.
        for m in data.get("measurements", []):
            met = {True: "yes", False: "**no**", None: ""}[m["met"]]
            metric = m["metric"] + (f" ({m['note']})" if m.get("note") else "")
            lines.append(
                f"| {data['benchmark']} | {metric} | {_fmt(m['value'])} | {m['unit']} "
                f"| {m['target']} | {met} | {data['measured_at']} |"
            )
    return "\n".join([*machines, "", *lines])


def update_readme() -> None:
    """Replace the results table between the markers in benchmarks/README.md."""
    text = README.read_text(encoding="utf-8")
    start, end = text.index(_TABLE_START), text.index(_TABLE_END)
    new = text[: start + len(_TABLE_START)] + "\n" + render_table() + "\n" + text[end:]
    README.write_text(new, encoding="utf-8")
