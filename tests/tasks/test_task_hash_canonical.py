"""The task code hash covers what a task computes, not how its code is documented."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tasks import task_code_hash
from tasks.errors import TaskError
from tasks.registry import canonical_source
from tests.tasks.conftest import SINOGRAM

SOURCE = b'''"""Module docstring."""

import math  # a comment


class Scaler:
    """Class docstring."""

    factor = "# not a comment"

    def apply(self, x):
        """Method docstring,
        on two lines."""
        # a comment line

        return x * math.pi  # trailing comment
        "a string statement after the first is code, not a docstring"
'''


def test_comments_docstrings_and_blank_lines_are_left_out() -> None:
    assert canonical_source(SOURCE).decode().splitlines() == [
        "import math",
        "class Scaler:",
        '    factor = "# not a comment"',
        "    def apply(self, x):",
        "        return x * math.pi",
        '        "a string statement after the first is code, not a docstring"',
    ]


def test_a_docstring_sharing_its_line_with_code_is_kept() -> None:
    source = b'def f(): """doc"""; return 1\n'
    assert canonical_source(source) == source


def test_source_that_is_not_python_is_refused() -> None:
    with pytest.raises(TaskError, match="cannot read the source to hash"):
        canonical_source(b"def (:\n")


def _with_source(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, module_name: str, edit) -> bytes:  # type: ignore[no-untyped-def]
    module = sys.modules[module_name]
    assert module.__file__ is not None
    original = Path(module.__file__).read_text(encoding="utf-8")
    assert edit(original) != original, "the edit must find its text"
    edited = tmp_path / Path(module.__file__).name
    edited.write_text(edit(original), encoding="utf-8")
    monkeypatch.setattr(module, "__file__", str(edited))
    return task_code_hash(SINOGRAM)


@pytest.mark.parametrize(("module_name", "edit"), [
    ("tasks.train", lambda s: s + "\n# a note added by a maintainer\n\n\n"),
    ("tasks.models", lambda s: s.replace('"""Return the number of trainable', '"""Return how many trainable', 1)),
    ("raw_data.noise", lambda s: s.replace("\n\n", "\n\n\n", 3)),
])
def test_documenting_the_code_leaves_the_hash(module_name: str, edit, tmp_path: Path,  # type: ignore[no-untyped-def]
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    before = task_code_hash(SINOGRAM)
    assert _with_source(monkeypatch, tmp_path, module_name, edit) == before


def test_a_module_the_task_does_not_reach_is_not_covered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tasks.mr_kspace

    before = task_code_hash(SINOGRAM)
    assert _with_source(monkeypatch, tmp_path, tasks.mr_kspace.__name__, lambda s: s + "\nX = 1\n") == before


@pytest.mark.parametrize(("module_name", "edit"), [
    # the model: another channel count
    ("tasks.models", lambda s: s.replace("_conv(16, 32)", "_conv(16, 24)", 1)),
    # the loss: smoothed labels
    ("tasks.train", lambda s: s.replace("logits(logits, targets[batch])", "logits(logits, 0.9 * targets[batch])", 1)),
])
def test_a_change_to_the_model_or_the_loss_changes_the_hash(module_name: str, edit, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    before = task_code_hash(SINOGRAM)
    assert _with_source(monkeypatch, tmp_path, module_name, edit) != before
