"""Benchmark results record the CPU they were measured on, and the README table shows it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import report
from benchmarks.raw_data import AVX2_ONLY, avx2_environment

REPO = Path(__file__).resolve().parents[2]

# Two processors of an EPYC Milan (AVX2, no AVX-512), abridged.
MILAN = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC 7763 64-Core Processor
stepping\t: 1
flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 bmi2

processor\t: 1
vendor_id\t: GenuineIntel
model name\t: MARK-0007-ZQX other block
"""


def test_cpuinfo_is_read_from_the_first_processor_only() -> None:
    fields = report.parse_cpuinfo(MILAN)
    assert fields["model name"] == "AMD EPYC 7763 64-Core Processor"
    assert fields["vendor_id"] == "AuthenticAMD"
    assert fields["cpu family"] == "25"


def test_an_avx2_cpu_is_described_without_avx512() -> None:
    described = report.describe_cpu(report.parse_cpuinfo(MILAN), {"L2": "512K", "L3": "32768K"}, 2)
    assert described == {
        "model_name": "AMD EPYC 7763 64-Core Processor",
        "vendor": "AuthenticAMD",
        "family": 25,
        "model": 1,
        "stepping": 1,
        "avx2": True,
        "avx512": False,
        "vector_flags": ["sse4_2", "avx", "avx2", "fma", "f16c"],
        "caches": {"L2": "512K", "L3": "32768K"},
        "cores": 2,
    }
    assert report.cpu_label(described) == (
        "AMD EPYC 7763 64-Core Processor (AuthenticAMD 25/1/1), AVX2, L2 512K, L3 32768K, 2 cores"
    )


def test_avx512_flags_are_listed() -> None:
    text = MILAN.replace("avx2 bmi2", "avx2 avx512f avx512bw avx512_vnni")
    described = report.describe_cpu(report.parse_cpuinfo(text), {}, 2)
    assert described["avx512"] is True
    assert described["vector_flags"][-3:] == ["avx512_vnni", "avx512bw", "avx512f"]


def test_a_cpu_without_cpuinfo_fields_is_still_described() -> None:
    described = report.describe_cpu({}, {}, None)
    assert described["vendor"] == "unknown"
    assert described["family"] is None
    assert described["avx2"] is False


def test_the_readme_table_names_each_benchmarks_cpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cpu = report.describe_cpu(report.parse_cpuinfo(MILAN), {"L3": "32768K"}, 2) | {
        "isa_overrides": {"ATEN_CPU_CAPABILITY": "avx2"}
    }
    row = {"metric": "m", "value": 1.0, "unit": "s", "target": "", "met": None, "note": ""}
    common = {"measured_at": "2026-01-01T00:00:00+00:00", "measurements": [row], "extra": {}}
    (tmp_path / "a.json").write_text(json.dumps({"benchmark": "a", "machine": {"cpu": cpu}, **common}))
    (tmp_path / "b.json").write_text(json.dumps({"benchmark": "b", "machine": {"cpus": 2}, **common}))
    monkeypatch.setattr(report, "RESULTS_DIR", tmp_path)
    table = report.render_table()
    assert (
        "- a: AMD EPYC 7763 64-Core Processor (AuthenticAMD 25/1/1), AVX2, L3 32768K, 2 cores, "
        "ISA settings in the environment: ATEN_CPU_CAPABILITY=avx2" in table
    )
    assert "- b: not recorded" in table


def _machine_in_child(env: dict[str, str]) -> dict[str, object]:
    code = "import json; from benchmarks.report import machine; print(json.dumps(machine()))"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, check=True, timeout=300
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_results_record_the_cpu_and_the_code_path_torch_chose() -> None:
    env = {k: v for k, v in os.environ.items() if k not in report.ISA_VARIABLES}
    cpu = _machine_in_child(env | {"ATEN_CPU_CAPABILITY": "default"})["cpu"]
    assert isinstance(cpu, dict)
    assert cpu["torch_cpu_capability"] == "DEFAULT"
    assert cpu["isa_overrides"] == {"ATEN_CPU_CAPABILITY": "default"}
    fields = report.parse_cpuinfo(Path("/proc/cpuinfo").read_text(encoding="utf-8"))
    assert (cpu["model_name"], cpu["vendor"]) == (fields["model name"], fields["vendor_id"])
    assert cpu["cores"] == len(os.sched_getaffinity(0))
    assert "L2" in cpu["caches"]


def test_the_avx2_environment_holds_every_library_to_avx2() -> None:
    env = avx2_environment()
    assert {k: env[k] for k in AVX2_ONLY} == AVX2_ONLY
    code = """
import json, re
import numba, numpy as np, torch
from numpy.lib.introspect import opt_func_info
@numba.njit(fastmath={"contract"})
def axpy(r, a, w):
    for j in range(r.shape[0]):
        r[j] += w * a[j]
z = np.zeros(64, np.float32)
axpy(z, z, np.float32(2))
asm = list(axpy.inspect_asm().values())[0]
numpy_paths = {d["current"] for sigs in opt_func_info().values() for d in sigs.values()}
print(json.dumps({"torch": str(torch.backends.cpu.get_cpu_capability()), "zmm": len(re.findall("zmm", asm)),
                  "ymm": len(re.findall("ymm", asm)), "numpy": sorted(numpy_paths)}))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, check=True, timeout=300
    )
    paths = json.loads(done.stdout.strip().splitlines()[-1])
    assert paths["torch"] == "AVX2"
    assert paths["zmm"] == 0  # numba's loops use no 512-bit registers
    assert paths["ymm"] > 0  # but do use the 256-bit ones
    assert not [p for p in paths["numpy"] if "AVX512" in p or "V4" in p]


def test_a_results_file_without_measurements_does_not_stop_the_table(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    # results/mutation_solidity.json keeps its own layout (its figures go to the mutation table);
    # every benchmark run rewrites the README table, so reading it must not fail on that file.
    row = {"metric": "speed", "value": 2.0, "unit": "s", "target": "", "met": None, "note": ""}
    (tmp_path / "a.json").write_text(json.dumps({"benchmark": "a", "measured_at": "2026-01-01T00:00:00+00:00",
                                                 "measurements": [row], "machine": {}}))
    (tmp_path / "mutation_solidity.json").write_text(json.dumps({"benchmark": "mutation_solidity", "mutants": []}))
    monkeypatch.setattr(report, "RESULTS_DIR", tmp_path)
    table = report.render_table()
    assert "| a | speed |" in table
    assert "- mutation_solidity: not recorded" in table
