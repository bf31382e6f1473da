"""Training-time augmentation by the symmetries of the lesion question.

Whether a head holds a lesion does not change when the head is turned by a quarter turn or
mirrored, so each training example can stand for the eight images of its dihedral group
(four rotations by 90 degrees, each mirrored or not). On the square model grid these are exact
re-indexings of the pixels: no interpolation, no new intensities, so the noise texture a
scanner gives stays what the held-out images have.

With 40 records a hospital, a CNN trained without them memorises its records (training
accuracy 1.0 within a round) before it has found the lesion, and whether the federation finds it
in three rounds becomes a matter of luck (see ``benchmarks/learning.py``). Seeing every
record turned and mirrored it cannot memorise orientation-specific details and has to learn
the one thing that all eight views share: the lesion.
"""

from __future__ import annotations

import torch
from torch import nn

from tasks.errors import TaskDataError

__all__ = ["DIHEDRAL_ORDER", "RandomDihedral", "dihedral"]

DIHEDRAL_ORDER = 8
"""Number of elements of the symmetry group of the square (4 rotations x mirror)."""


def dihedral(images: torch.Tensor, element: int) -> torch.Tensor:
    """Return ``images`` under element ``element`` of the square's symmetry group.

    Element ``e`` rotates by ``e % 4`` quarter turns (counter-clockwise in (row, column)
    display) and then, for ``e >= 4``, mirrors left-right. Element 0 is the identity.

    Parameters:
        images: ``(..., rows, cols)`` with ``rows == cols``.
        element: 0 to 7.

    Raises:
        TaskDataError: non-square images or an element outside 0-7.
    """
    if images.ndim < 2 or images.shape[-1] != images.shape[-2]:
        raise TaskDataError(
            f"images have shape {tuple(images.shape)}; quarter turns need square (..., n, n) images"
        )
    if not 0 <= element < DIHEDRAL_ORDER:
        raise TaskDataError(f"dihedral element is {element}, expected 0 to {DIHEDRAL_ORDER - 1}")
    out = torch.rot90(images, element % 4, dims=(-2, -1))
    return torch.flip(out, dims=(-1,)) if element >= 4 else out


class RandomDihedral(nn.Module):
    """In training mode, give each image of the batch a random one of its 8 symmetric views.

    In evaluation mode (``model.eval()``) it is the identity, so inference, the held-out
    evaluation and the weights are untouched. It has neither parameters nor buffers: the
    state dict, the weights nodes send and their hash are the same as without it.

    The draws come from torch's global generator; :func:`tasks.train` seeds it from
    ``TrainConfig.seed`` for the length of the training, so a round is reproducible.
    """

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Return ``images`` ``(n, channels, rows, cols)``, each transformed when training."""
        if not self.training:
            return images
        elements = torch.randint(0, DIHEDRAL_ORDER, (images.shape[0],))
        out = torch.empty_like(images)
        for element in sorted(set(elements.tolist())):
            chosen = elements == element
            out[chosen] = dihedral(images[chosen], element)
        return out
