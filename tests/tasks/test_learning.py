"""Each task learns: trained on synthetic patients, it detects lesions in patients it never saw.

160 training examples (seed 1) and 96 held-out examples (seed 1000: other patients, other
noise), half of each with a lesion, 36 epochs (tests/tasks/conftest.py, LEARNING_CONFIG; the
trained weights are shared with test_robustness_report). Chance is 0.5; every task must reach 0.75.
Training sees each image turned and mirrored (tasks/augment.py), which keeps the CNN from
memorising its examples but lengthens the plateau before it finds the lesion: the image task
was at 0.57 after 12 epochs (training accuracy 0.62) and at 1.0 after 24; the sinogram task,
trained in one place, was still at 0.5 after 24 epochs for each of 8 initialisations and at
0.99-1.0 after 36 for each of 3. The initialisation is seeded, so that the result does not
depend on which tests ran before (they move torch's global generator).

The learning rate is the studies' default, 1e-3. At 3e-3, which these tests used before, the
sinogram model from the seeded initialisation learned on an AMD EPYC but stayed at chance on an
Intel Xeon (the same arithmetic in another order): held-out 0.52 after 36 epochs, 0.60 after 48,
0.50 after 60, and 0.51 at 5e-3, training loss 0.69 throughout. At 1e-3 the same initialisation
and three others reached 0.99-1.0 after 36 epochs on that Xeon, and so did three of each of the
other two tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch

from tasks import evaluate, get_task, set_weights
from tests.tasks.conftest import IMAGE, KSPACE, LEARNING_EXAMPLES, LEARNING_SEED, SINOGRAM, Weights

THRESHOLD = 0.75
Examples = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Train on one thread: the same arithmetic on any core count, and no thread contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module", params=[SINOGRAM, IMAGE, KSPACE])
def examples(request: pytest.FixtureRequest) -> tuple[str, Examples]:
    """Training and held-out examples of each task."""
    task = get_task(request.param)
    return request.param, (*task.synthetic_examples(LEARNING_EXAMPLES, LEARNING_SEED),
                           *task.synthetic_examples(96, 1000))


def test_task_learns_to_detect_lesions_in_unseen_patients(examples: tuple[str, Examples],
                                                          trained_weights: Callable[[str], Weights]) -> None:
    code, (_, _, test_inputs, test_labels) = examples
    torch.manual_seed(0)
    model = get_task(code).build_model()  # the initialisation the training starts from
    assert evaluate(model, test_inputs, test_labels)["accuracy"] < THRESHOLD
    set_weights(model, trained_weights(code))
    assert evaluate(model, test_inputs, test_labels)["accuracy"] >= THRESHOLD


def test_mean_input_does_not_give_the_label_away(examples: tuple[str, Examples]) -> None:
    # A lesion moves the mean input far less than the 10 % variation of head size does:
    # no threshold on the mean input separates the classes, the model has to find the lesion.
    _, (inputs, labels, _, _) = examples
    means = inputs.mean(dim=tuple(range(1, inputs.ndim))).numpy()
    truth = labels.numpy() == 1
    best = max(max(np.mean((means > t) == truth), np.mean((means <= t) == truth)) for t in means)
    assert best < THRESHOLD


@pytest.mark.slow
@pytest.mark.parametrize(("code", "run"), [(SINOGRAM, 0), (SINOGRAM, 1), (IMAGE, 0), (KSPACE, 0)])
def test_the_demo_study_learns(code: str, run: int) -> None:
    # The demo's study (2 hospitals x 40 patients, 3 rounds, its local training settings, FedAvg)
    # as benchmarks/learning.py runs it; held-out patients no hospital holds. Before the symmetry
    # augmentation it ended at chance on some seeds. The demo's own task, whose margin is the
    # smallest (benchmarks/README.md: 8 of its 10 runs reach 0.85), on two data seeds; the other
    # two on one each (the benchmark runs each task on 10).
    from benchmarks.learning import federated_run

    result = federated_run(code, run, held_out=96)
    assert len(result.rounds) == 3
    assert result.final_accuracy >= 0.8, [r["accuracy"] for r in result.rounds]
