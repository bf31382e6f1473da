"""Training-time symmetry augmentation: exact, off at evaluation, stateless, reproducible."""

from __future__ import annotations

import pytest
import torch

from tasks import TaskDataError, TrainConfig, get_task, get_weights, train
from tasks.augment import DIHEDRAL_ORDER, RandomDihedral, dihedral
from tasks.models import LesionCNN
from tests.tasks.conftest import IMAGE, KSPACE, SINOGRAM


def _asymmetric(n: int = 5) -> torch.Tensor:
    # Distinct values everywhere: no symmetry of the square maps it onto itself.
    return torch.arange(n * n, dtype=torch.float32).reshape(1, 1, n, n) ** 1.5


def test_the_eight_elements_are_distinct_reindexings_of_the_same_pixels() -> None:
    image = _asymmetric()
    views = [dihedral(image, e) for e in range(DIHEDRAL_ORDER)]
    assert torch.equal(views[0], image)
    assert len({tuple(v.flatten().tolist()) for v in views}) == DIHEDRAL_ORDER
    for view in views:  # no interpolation: the same multiset of values
        assert torch.equal(view.flatten().sort().values, image.flatten().sort().values)


def test_mirror_is_its_own_inverse_and_four_quarter_turns_are_the_identity() -> None:
    image = _asymmetric()
    assert torch.equal(dihedral(dihedral(image, 4), 4), image)
    turned = image
    for _ in range(4):
        turned = dihedral(turned, 1)
    assert torch.equal(turned, image)


def test_non_square_images_and_unknown_elements_are_refused() -> None:
    with pytest.raises(TaskDataError, match=r"shape \(1, 1, 4, 5\); quarter turns need square"):
        dihedral(torch.zeros(1, 1, 4, 5), 1)
    with pytest.raises(TaskDataError, match="dihedral element is 8, expected 0 to 7"):
        dihedral(torch.zeros(1, 1, 4, 4), 8)


def test_random_dihedral_is_the_identity_in_evaluation_mode() -> None:
    layer = RandomDihedral().eval()
    batch = _asymmetric().repeat(16, 1, 1, 1)
    assert layer(batch) is batch


def test_random_dihedral_gives_each_training_image_one_of_its_views() -> None:
    layer = RandomDihedral().train()
    images = torch.cat([_asymmetric() + i for i in range(64)])
    torch.manual_seed(3)
    out = layer(images)
    used = set()
    for i in range(images.shape[0]):
        matches = [e for e in range(DIHEDRAL_ORDER) if torch.equal(out[i], dihedral(images[i], e))]
        assert len(matches) == 1
        used.add(matches[0])
    assert len(used) == DIHEDRAL_ORDER


def test_augmentation_adds_nothing_to_the_weights() -> None:
    model = LesionCNN(1)
    assert not [name for name in model.state_dict() if "augment" in name]
    assert len(get_weights(model)) == 10  # four convolutions and the head, weight and bias each


@pytest.mark.parametrize("code", [SINOGRAM, IMAGE, KSPACE])
def test_training_is_reproducible_and_leaves_the_callers_random_state_alone(code: str) -> None:
    task = get_task(code)
    inputs, labels = task.synthetic_examples(8, 5)
    config = TrainConfig(epochs=1, batch_size=4, lr=1e-3, seed=2)
    runs = []
    for _ in range(2):
        torch.manual_seed(123)
        model = task.build_model()
        train(model, inputs, labels, config)
        runs.append(get_weights(model))
        after = torch.rand(1)
        torch.manual_seed(123)
        assert torch.equal(after, torch.rand(1))  # train() drew nothing from the caller's generator
    assert all((a == b).all() for a, b in zip(*runs, strict=True))
