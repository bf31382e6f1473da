"""Compiled loops (numba) of the parallel-beam back-projector on the CPU, and their adjoint.

:mod:`raw_data.backprojection` describes the scheme: each view's filtered projection is
resampled onto a fine grid (polyphase order), and every image line adds a blend of two
windows of it. Written with torch ops, the windows are first gathered into a buffer and
summed afterwards, so every value is written to memory and read back: about 3 GB per
512 x 512 slice from 720 views, through a 16 MiB buffer. Whether that buffer stays in the
last-level cache decided the speed, which is why it varied 2.4x between two machines of the
same kind (``benchmarks/raw_data.py`` has the measurements). These loops resample a few
views at a time into a small scratch array and add the windows straight into the image
line: the line and the scratch stay in the level-1 and level-2 caches, and the windows are
never written anywhere.

They are plain Python here; :func:`loops` compiles them with numba on first use, for the
CPU it runs on (AVX2 or AVX-512), and numba caches the machine code on disk. Importing this
module does not import numba, so ``raw_data`` loads fast and its task code hash (which
covers the modules a task reaches, ``tasks/registry.py``) covers these loops too. They take
numpy views of CPU tensors and accumulate into their output.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]

# Views resampled per pass over the lines. Their fine profiles (32 KiB each for a 512 x 512
# image at 8x oversampling) stay in a level-2 cache of 512 KiB, the smallest on
# the x86 servers this runs on.
BLOCK = 8


def _resample(profile: Array, scale: float, origin: float, oversample: int, phases: int, out: Array) -> None:
    """Write ``profile`` linearly interpolated at ``scale * (n + origin)`` into ``out``.

    ``n = p + oversample * k`` is stored at ``out[p * phases + k]`` (polyphase order).
    ``profile`` is zero outside its samples, with linear ramps to zero over one sample.
    """
    size = profile.shape[0]
    for p in range(oversample):
        for k in range(phases):
            x = scale * (p + oversample * k + origin)
            i = math.floor(x)
            frac = x - i
            if i >= 0 and i + 1 < size:  # most samples: no zero padding to look at
                left = profile[i]
                out[p * phases + k] = left + frac * (profile[i + 1] - left)
            else:
                left = profile[i] if 0 <= i < size else 0.0
                right = profile[i + 1] if 0 <= i + 1 < size else 0.0
                out[p * phases + k] = left + frac * (right - left)


def _resample_adjoint(fine: Array, scale: float, origin: float, oversample: int, phases: int, out: Array) -> None:
    """Add the transpose of :func:`_resample` applied to ``fine`` into ``out``."""
    size = out.shape[0]
    for p in range(oversample):
        for k in range(phases):
            x = scale * (p + oversample * k + origin)
            i = math.floor(x)
            frac = x - i
            value = fine[p * phases + k]
            if 0 <= i < size:
                out[i] += (1.0 - frac) * value
            if 0 <= i + 1 < size:
                out[i + 1] += frac * value


def _add_two(row: Array, first: Array, second: Array, a: Any, b: Any) -> None:
    for j in range(row.shape[0]):
        row[j] += a * first[j] + b * second[j]


def _add_four(row: Array, w: Array, x: Array, y: Array, z: Array, a: Any, b: Any, c: Any, d: Any) -> None:
    # Two views per pass over the line: one load and store of the line per four windows.
    for j in range(row.shape[0]):
        row[j] += (a * w[j] + b * x[j]) + (c * y[j] + d * z[j])


def _window(fine: Array, t: int, v: int, i: int, oversample: int, phases: int) -> int:
    """Where line ``i``'s window ``t`` of view ``v`` starts in the view's polyphase profile."""
    n: int = fine[t, v, i]
    return (n % oversample) * phases + n // oversample


def _add_one(out: Array, source: Array, a: Any) -> None:
    for j in range(out.shape[0]):
        out[j] += a * source[j]


def _block_phases(needed: Array, v0: int, v1: int, oversample: int) -> int:
    most = 0
    for v in range(v0, v1):
        most = max(most, int(needed[v]))
    return most // oversample + 2


def backproject(
    profiles: Array,
    scale: Array,
    origin: Array,
    needed: Array,
    fine: Array,
    blend: Array,
    oversample: int,
    target: Array,
) -> None:
    """Add every view's interpolated profile along the lines of ``target``.

    ``target[s, i, j] += sum over v, t of blend[t, v, i] * F_v(fine[t, v, i] + oversample * j)``,
    where ``F_v(n)`` is ``profiles[s, v]`` linearly interpolated at ``scale[v] * (n + origin[v])``.

    Parameters:
        profiles: ``(S, V, D)`` filtered projections.
        scale: ``(V,)`` float64, detector units per fine sample.
        origin: ``(V,)`` float64, the fine index of each view's first needed sample.
        needed: ``(V,)`` int32, fine samples each view needs from its origin on.
        fine: ``(2, V, lines)`` int32, each line's two first fine samples, from the origin.
        blend: ``(2, V, lines)`` their weights, dtype of ``profiles``.
        oversample: fine samples per pixel step.
        target: ``(S, lines, length)`` accumulator, dtype of ``profiles``.
    """
    slices, views = profiles.shape[0], profiles.shape[1]
    lines, length = target.shape[1], target.shape[2]
    scratch = np.empty((BLOCK, oversample * _block_phases(needed, 0, views, oversample)), profiles.dtype)
    for v0 in range(0, views, BLOCK):
        v1 = min(v0 + BLOCK, views)
        phases = _block_phases(needed, v0, v1, oversample)
        for s in range(slices):
            for v in range(v0, v1):
                _resample(profiles[s, v], scale[v], origin[v], oversample, phases, scratch[v - v0])
            for i in range(lines):
                row = target[s, i]
                for v in range(v0, v1 - 1, 2):
                    a, b = scratch[v - v0], scratch[v + 1 - v0]
                    a0, a1 = _window(fine, 0, v, i, oversample, phases), _window(fine, 1, v, i, oversample, phases)
                    b0, b1 = (
                        _window(fine, 0, v + 1, i, oversample, phases),
                        _window(fine, 1, v + 1, i, oversample, phases),
                    )
                    _add_four(
                        row,
                        a[a0 : a0 + length],
                        a[a1 : a1 + length],
                        b[b0 : b0 + length],
                        b[b1 : b1 + length],
                        blend[0, v, i],
                        blend[1, v, i],
                        blend[0, v + 1, i],
                        blend[1, v + 1, i],
                    )
                if (v1 - v0) % 2:  # the block's odd view out
                    v = v1 - 1
                    a = scratch[v - v0]
                    a0, a1 = _window(fine, 0, v, i, oversample, phases), _window(fine, 1, v, i, oversample, phases)
                    _add_two(row, a[a0 : a0 + length], a[a1 : a1 + length], blend[0, v, i], blend[1, v, i])


def backproject_adjoint(
    grad: Array,
    scale: Array,
    origin: Array,
    needed: Array,
    fine: Array,
    blend: Array,
    oversample: int,
    out: Array,
) -> None:
    """Add the transpose of :func:`backproject` applied to ``grad (S, lines, length)`` into ``out (S, V, D)``."""
    slices, views = out.shape[0], out.shape[1]
    lines, length = grad.shape[1], grad.shape[2]
    scratch = np.empty((BLOCK, oversample * _block_phases(needed, 0, views, oversample)), out.dtype)
    for v0 in range(0, views, BLOCK):
        v1 = min(v0 + BLOCK, views)
        phases = _block_phases(needed, v0, v1, oversample)
        for s in range(slices):
            scratch[:] = 0
            for i in range(lines):
                g = grad[s, i]
                for v in range(v0, v1):
                    w = scratch[v - v0]
                    for t in range(2):
                        lo = _window(fine, t, v, i, oversample, phases)
                        _add_one(w[lo : lo + length], g, blend[t, v, i])
            for v in range(v0, v1):
                _resample_adjoint(scratch[v - v0], scale[v], origin[v], oversample, phases, out[s, v])


# Callees first: a loop is compiled on its first call, and by then the functions it calls
# must already be numba's.
_ORDER = (
    "_resample",
    "_resample_adjoint",
    "_add_two",
    "_add_four",
    "_add_one",
    "_window",
    "_block_phases",
    "backproject",
    "backproject_adjoint",
)
_lock = threading.Lock()


@dataclass(frozen=True)
class Loops:
    """The compiled entry points."""

    backproject: Callable[..., None]
    backproject_adjoint: Callable[..., None]


_loops: Loops | None = None


def loops() -> Loops:
    """Return the compiled loops, compiling them with numba on the first call."""
    global _loops
    with _lock:
        if _loops is None:
            import numba

            # boundscheck off: the caller builds every index in range (backprojection.py)
            # and the tests compare with the torch reference; "contract" allows fused
            # multiply-add.
            jit = numba.njit(cache=True, nogil=True, boundscheck=False, fastmath={"contract"})
            namespace = globals()
            for name in _ORDER:
                namespace[name] = jit(namespace[name])
            _loops = Loops(namespace["backproject"], namespace["backproject_adjoint"])
        return _loops
