"""The card's loader and hash command: the task registry's model, the on-chain hash, refusals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from coordinator.card_plots import plot_training_curves
from coordinator.errors import ModelCardError
from coordinator.model_loader import file_sha256, load_model, main, model_hash

TASK = "ct-sinogram-lesion-v1"


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, list[np.ndarray]]:
    from tasks import get_task, get_weights, save_weights

    weights = get_weights(get_task(TASK).build_model())
    rng = np.random.default_rng(7)
    weights = [(w + rng.normal(0, 0.01, w.shape)).astype(w.dtype) if w.dtype.kind == "f" else w for w in weights]
    path = tmp_path / "final.npz"
    save_weights(path, weights)
    return path, weights


def test_the_loaded_model_holds_the_files_weights(saved: tuple[Path, list[np.ndarray]]) -> None:
    from tasks import get_task, get_weights

    path, weights = saved
    model = load_model(path, TASK, expected_hash=model_hash(path))
    assert not model.training
    for loaded, written in zip(get_weights(model), weights, strict=True):
        np.testing.assert_array_equal(loaded, written)
    batch = torch.zeros((2, *get_task(TASK).input_shape))
    assert model(batch).shape == (2,)


def test_a_file_of_other_weights_is_refused(saved: tuple[Path, list[np.ndarray]]) -> None:
    path, _ = saved
    with pytest.raises(ModelCardError, match=r"final\.npz: weights hash to 0x[0-9a-f]{64}, expected 0x" + "00" * 32):
        load_model(path, TASK, expected_hash="0x" + "00" * 32)


def test_the_on_chain_hash_is_not_the_files_sha256(saved: tuple[Path, list[np.ndarray]], tmp_path: Path) -> None:
    from tasks import weights_hash

    path, weights = saved
    assert model_hash(path) == "0x" + weights_hash(weights).hex()
    compressed = tmp_path / "compressed.npz"
    np.savez_compressed(compressed, **{f"w{i:04d}": w for i, w in enumerate(weights)})
    assert model_hash(compressed) == model_hash(path)  # same arrays, same on-chain hash
    assert file_sha256(compressed) != file_sha256(path)  # other bytes, other sha256


def test_the_hash_command_prints_both_and_names_a_bad_file(saved: tuple[Path, list[np.ndarray]], tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = saved
    bad = tmp_path / "truncated.npz"
    bad.write_bytes(path.read_bytes()[:100])
    assert main([str(path), str(bad)]) == 1
    out, err = capsys.readouterr()
    assert f"{path}: weights_hash {model_hash(path)} (on chain); file sha256 {file_sha256(path)}" in out
    assert f"{bad}: " in err
    assert "cannot be read as a weights .npz" in err


def test_the_hash_command_runs_as_a_module(saved: tuple[Path, list[np.ndarray]], repo_root: Path) -> None:
    path, _ = saved
    proc = subprocess.run([sys.executable, "-m", "coordinator.model_loader", str(path)], cwd=repo_root,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert model_hash(path) in proc.stdout


def test_curves_need_one_loss_and_accuracy_per_round(tmp_path: Path) -> None:
    with pytest.raises(ModelCardError, match="got 3 rounds, 2 losses and 3 accuracies"):
        plot_training_curves(tmp_path / "c.png", [1, 2, 3], [0.7, 0.6], [0.5, 0.6, 0.7], title="t")
    assert not (tmp_path / "c.png").exists()
