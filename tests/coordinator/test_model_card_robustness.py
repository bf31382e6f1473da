"""The card's robustness section: absent module -> said in words; a broken module -> an error."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from coordinator import card_markdown, card_robustness
from coordinator.card_robustness import NOT_AVAILABLE, robustness_section
from coordinator.model_card import robustness_json


def test_a_build_without_the_evaluation_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "tasks.robustness", None)  # as if the module were not installed
    section = robustness_section("ct-sinogram-lesion-v1", [np.zeros(3, np.float32)], tmp_path, seed=1)
    assert (section.available, section.note, section.heatmap) == (False, NOT_AVAILABLE, None)
    assert section.short_table == [("robustness", NOT_AVAILABLE)]
    assert list(tmp_path.iterdir()) == []
    text = "\n".join(card_markdown._robustness({"robustness": robustness_json(section, 1)}))
    assert f"{NOT_AVAILABLE}." in text


def test_an_evaluation_whose_own_import_fails_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "metai_probe_robustness.py").write_text("import metai_no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(card_robustness, "_MODULE", "metai_probe_robustness")
    with pytest.raises(ModuleNotFoundError, match="metai_no_such_dependency"):
        robustness_section("ct-sinogram-lesion-v1", [np.zeros(3, np.float32)], tmp_path, seed=1)


def test_an_evaluation_that_fails_is_not_hidden(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "metai_probe_failing.py").write_text(
        "def evaluate_robustness(task_name, weights, *, seed, patients_per_cell=4):\n"
        "    raise ValueError(f'weights of {len(weights)} arrays do not fit {task_name}')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(card_robustness, "_MODULE", "metai_probe_failing")
    with pytest.raises(ValueError, match="weights of 1 arrays do not fit ct-sinogram-lesion-v1"):
        robustness_section("ct-sinogram-lesion-v1", [np.zeros(3, np.float32)], tmp_path, seed=1)
