"""The task models: a small lesion-detection CNN, and its sinogram-domain front end.

Both return one logit per example (positive: lesion present). Every weight is a parameter:
the state dict holds no buffers, so the weights a node sends are exactly what it trains, and
federated averaging has no counters or running statistics to mix up.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from raw_data import MU_WATER_PER_MM, FanBeamGeometry
from raw_data.filters import fan_response, padded_length
from tasks.augment import RandomDihedral
from tasks.backprojection import FanBackProjector
from tasks.errors import TaskDataError
from tasks.preprocess import MODEL_GRID, WINDOW_CENTRE_HU, WINDOW_SCALE_HU

__all__ = ["LesionCNN", "SinogramLesionNet", "count_parameters", "seeded_init"]

# FBP filters that seed the sinogram model's learnable filters, one per channel.
_FILTERS = ("ramp", "hann")


def count_parameters(model: nn.Module) -> int:
    """Return the number of trainable scalars of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _conv(channels_in: int, channels_out: int) -> nn.Sequential:
    conv = nn.Conv2d(channels_in, channels_out, 3, padding=1)
    # He initialisation: PyTorch's default starts ReLU stacks too flat, and training then
    # idles for many epochs before finding the lesion.
    nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return nn.Sequential(conv, nn.ReLU())


class LesionCNN(nn.Module):
    """Four 3 x 3 convolution layers, two 2 x 2 max-pools, a global max-pool and a logit.

    The global max-pool makes the answer "is there a lesion anywhere", whatever its position.
    While training, each image is first turned or mirrored at random (:class:`RandomDihedral`),
    so that 40 records a hospital are enough to find the lesion rather than memorise them.

    Parameters:
        in_channels: channels of the input image.
    """

    def __init__(self, in_channels: int = 1) -> None:
        super().__init__()
        self.augment = RandomDihedral()
        self.features = nn.Sequential(
            _conv(in_channels, 16),
            _conv(16, 16),
            nn.MaxPool2d(2),
            _conv(16, 32),
            nn.MaxPool2d(2),
            _conv(32, 32),
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(32, 1)
        # The convolution weights are stored channels last (their values and the state dict's
        # shapes are unchanged); forward() lays the images out the same way.
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                layer.weight.data = layer.weight.data.contiguous(memory_format=torch.channels_last)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Return the logits ``(n,)`` of images ``(n, in_channels, rows, cols)``."""
        # Channels last, as the convolution weights are (see __init__): on CPU, with 16 and 32
        # channels, training steps take about a third less time than in the default layout.
        features = self.augment(images).contiguous(memory_format=torch.channels_last)
        logits: torch.Tensor = self.head(self.features(features)).squeeze(1)
        return logits


class SinogramLesionNet(nn.Module):
    """Lesion detection learned end to end from fan-beam sinograms.

    The sinogram goes through the operations of filtered back-projection, with the filter
    learned: per channel, the equiangular fan-beam weighting ``D cos(gamma)``, a filter
    whose frequency response starts as an FBP filter (ramp; Hann) and is learned as a
    per-frequency gain, and the fixed back-projection onto the 4 mm model grid. A learned
    1 x 1 window (started as the brain window) and ``tanh`` bring the channels to the
    range of :class:`LesionCNN`, which gives the logit. The filters and the window train
    together with the CNN, so the whole model learns on raw data.

    The fixed operators (weighting, FBP filters, back-projection) are plain CPU tensors,
    not state: the state dict holds the learned filter gains, the window and the CNN.

    Parameters:
        geometry: the fan-beam geometry of the input sinograms (views over 360 degrees) and
            the model grid as its image grid.

    Raises:
        TaskDataError: the geometry's image grid is not the 64 x 64 model grid.
    """

    def __init__(self, geometry: FanBeamGeometry) -> None:
        super().__init__()
        if geometry.image.shape != MODEL_GRID:
            raise TaskDataError(f"geometry grid is {geometry.image.shape}, expected the model grid {MODEL_GRID}")
        self._project = FanBackProjector(geometry)
        self._length = padded_length(geometry.n_detectors)
        gamma = torch.as_tensor(geometry.fan_angles(), dtype=torch.float32)
        self._weighting = geometry.source_to_isocenter_mm * torch.cos(gamma)
        self._responses = torch.stack(
            [
                torch.as_tensor(fan_response(name, self._length, geometry.angular_pitch_rad), dtype=torch.float32)
                for name in _FILTERS
            ]
        )
        channels = len(_FILTERS)
        self.filter_gain = nn.Parameter(torch.zeros(channels, self._length // 2 + 1))
        self.window = nn.Conv2d(channels, channels, 1)
        with torch.no_grad():
            # Attenuation (1/mm) -> (HU - centre) / scale, the image task's brain window.
            gain = 1000.0 / (WINDOW_SCALE_HU * MU_WATER_PER_MM)
            self.window.weight.copy_(torch.eye(channels)[:, :, None, None] * gain)
            if self.window.bias is not None:
                self.window.bias.fill_(-(1000.0 + WINDOW_CENTRE_HU) / WINDOW_SCALE_HU)
        self.cnn = LesionCNN(channels)

    def reconstruct(self, sinograms: torch.Tensor) -> torch.Tensor:
        """Return the learned-filter back-projections ``(n, channels, rows, cols)``, 1/mm at start.

        Parameters:
            sinograms: line integrals ``(n, 1, views, detectors)``.
        """
        detectors = sinograms.shape[-1]
        spectrum = torch.fft.rfft(sinograms * self._weighting, n=self._length, dim=-1)
        response = self._responses * (1.0 + self.filter_gain)
        filtered = torch.fft.irfft(spectrum * response[None, :, None, :], n=self._length, dim=-1)
        projected: torch.Tensor = self._project(filtered[..., :detectors])
        return projected

    def forward(self, sinograms: torch.Tensor) -> torch.Tensor:
        """Return the logits ``(n,)`` of line-integral sinograms ``(n, 1, views, detectors)``."""
        logits: torch.Tensor = self.cnn(torch.tanh(self.window(self.reconstruct(sinograms))))
        return logits


def seeded_init(factory: Callable[[], nn.Module], seed: int = 0) -> nn.Module:
    """Call ``factory()`` with torch's global RNG forked and seeded, so initial weights are fixed.

    The caller's random state is left as it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()
