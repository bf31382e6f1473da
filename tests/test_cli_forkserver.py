"""The fork server tests/test_cli_errors.py runs command lines through behaves as `python -m` would."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_forkserver import ForkServer

PROBE = '''
import os, sys, time
AT_IMPORT = os.environ.get("PROBE_SETTING")  # read when the module loads, as settings modules do
if __name__ == "__main__":
    what = sys.argv[1]
    if what == "show":
        print(AT_IMPORT, os.getcwd(), sys.argv[0].endswith("probe_cli.py"), sys.argv[2:], sep="|")
        print(sys.stdin.read() == "", file=sys.stderr)
    elif what == "raise":
        raise ValueError("a bug")
    elif what == "exit":
        sys.exit(int(sys.argv[2]) if sys.argv[2].isdigit() else sys.argv[2])
    elif what == "atexit":
        import atexit
        atexit.register(lambda: print("atexit ran", flush=True))
    elif what == "hang":
        import subprocess
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        print(child.pid, flush=True)
        time.sleep(600)
'''


@pytest.fixture(scope="module")
def server() -> Iterator[ForkServer]:
    made = ForkServer({**os.environ})
    yield made
    made.close()


def _run(server: ForkServer, tmp_path: Path, *argv: str, env: dict[str, str] | None = None,
         timeout: float = 60) -> tuple[int | None, str, str]:
    (tmp_path / "probe_cli.py").write_text(PROBE)
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    status = server.run("probe_cli", argv, env=env or {"PATH": os.environ["PATH"]}, cwd=tmp_path, stdout=out,
                        stderr=err, timeout=timeout)
    return status, out.read_text(), err.read_text()


def test_the_command_gets_its_environment_directory_arguments_and_empty_stdin(server: ForkServer,
                                                                               tmp_path: Path) -> None:
    status, out, err = _run(server, tmp_path, "show", "a b", "--c",
                            env={"PATH": os.environ["PATH"], "PROBE_SETTING": "from the case"})
    assert status == 0, err
    assert out.strip() == f"from the case|{tmp_path}|True|['a b', '--c']"
    assert err.strip() == "True"
    status, out, _ = _run(server, tmp_path, "show")  # the next command does not inherit the last one's
    assert out.startswith("None|")


def test_exits_as_python_does(server: ForkServer, tmp_path: Path) -> None:
    status, _, err = _run(server, tmp_path, "raise")
    assert status == 1
    assert "Traceback (most recent call last)" in err
    assert "ValueError: a bug" in err
    assert _run(server, tmp_path, "exit", "3")[0] == 3
    status, _, err = _run(server, tmp_path, "exit", "refused")
    assert (status, err.strip()) == (1, "refused")
    assert _run(server, tmp_path, "atexit")[1] == "atexit ran\n"


def test_the_same_in_a_fresh_interpreter(tmp_path: Path) -> None:
    # What the cases above compare with: python -m itself.
    (tmp_path / "probe_cli.py").write_text(PROBE)
    done = subprocess.run([sys.executable, "-m", "probe_cli", "raise"], cwd=tmp_path, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, env={"PATH": os.environ["PATH"]}, check=False)
    assert done.returncode == 1
    assert "ValueError: a bug" in done.stderr


def test_a_command_past_its_time_is_killed_with_its_session(server: ForkServer, tmp_path: Path) -> None:
    started = time.monotonic()
    status, out, _ = _run(server, tmp_path, "hang", timeout=3)
    assert status is None
    assert time.monotonic() - started < 60
    grandchild = int(out.split()[0])
    deadline = time.monotonic() + 10
    while Path(f"/proc/{grandchild}").exists() and time.monotonic() < deadline:
        state = Path(f"/proc/{grandchild}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "Z":
            break
        time.sleep(0.05)
    else:
        assert not Path(f"/proc/{grandchild}").exists(), "the command's child outlived the kill"
