"""FBP speed and accuracy against scikit-image, and forward-projection throughput.

Run: ``.venv/bin/python -m benchmarks.raw_data``. Writes ``benchmarks/results/raw_data.json``
and the table in ``benchmarks/README.md``.

Setup: the CT head phantom (Shepp-Logan shapes, HU values) on a 512 x 512 grid of 0.5 mm
pixels; its exact (analytic) parallel-beam sinogram, 720 views over 180 degrees x 768
detectors of 0.5 mm. The same float32 sinogram goes to ``raw_data.fbp`` and to
``skimage.transform.iradon`` (ramp filter, linear interpolation, circle), in one process.
Both errors are RMS differences to the rasterised phantom inside the reconstruction circle.

Threads: scikit-image's back-projection runs on one core, so the headline ratio runs torch
on one thread too (``torch.set_num_threads(1)``); the all-cores time is in ``extra``.
Timings are medians of several runs after one warm-up run.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from skimage.transform import iradon

from benchmarks.report import Measurement, write_results
from raw_data import (
    MU_WATER_PER_MM,
    Ellipse,
    ct_head,
    ellipse_line_integrals,
    fbp,
    forward_project,
    parallel_beam,
    rasterize_ellipses,
)

SIZE = 512
VIEWS = 720
DETECTORS = 768
PIXEL_MM = 0.5
FILTER = "ramp"
RUNS = 5
PROJECTION_BATCH = 4
SPEEDUP_TARGET = 5.0


def _median_time(fn: Callable[[], object], runs: int) -> tuple[float, list[float]]:
    fn()  # warm-up: caches, allocator, thread pools
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def _rms_hu(image: np.ndarray, truth: np.ndarray, inside: np.ndarray) -> float:
    return float(np.sqrt(np.mean((image - truth)[inside] ** 2)) / MU_WATER_PER_MM * 1000.0)


def main() -> None:
    """Measure and write the results."""
    default_threads = torch.get_num_threads()
    geometry = parallel_beam(VIEWS, DETECTORS, PIXEL_MM, (SIZE, SIZE), PIXEL_MM)
    phantom: tuple[Ellipse, ...] = ct_head(SIZE * PIXEL_MM)
    truth = rasterize_ellipses(phantom, geometry.image)
    sinogram = ellipse_line_integrals(phantom, geometry).astype(np.float32)
    sino_t = torch.from_numpy(sinogram)
    theta_deg = np.degrees(geometry.angles)

    def ours() -> np.ndarray:
        with torch.no_grad():
            return fbp(sino_t, geometry, FILTER).numpy()

    def theirs() -> np.ndarray:
        # skimage counts lengths in pixels: divide by the pixel size for 1/mm.
        image = iradon(  # type: ignore[no-untyped-call]
            sinogram.T,
            theta=theta_deg,
            output_size=SIZE,
            filter_name=FILTER,
            interpolation="linear",
            circle=True,
        )
        return np.asarray(image) / PIXEL_MM

    torch.set_num_threads(1)
    t_ours, runs_ours = _median_time(ours, RUNS)
    t_theirs, runs_theirs = _median_time(theirs, 3)
    img_ours, img_theirs = ours(), theirs()
    image_batch = torch.from_numpy(np.stack([truth] * PROJECTION_BATCH).astype(np.float32))
    with torch.no_grad():
        t_fp, _ = _median_time(lambda: forward_project(image_batch, geometry), 3)
    torch.set_num_threads(default_threads)
    t_ours_all, _ = _median_time(ours, RUNS)

    y, x = np.mgrid[:SIZE, :SIZE]
    inside = (y - SIZE // 2) ** 2 + (x - SIZE // 2) ** 2 <= (SIZE // 2 - 2) ** 2
    err_ours = _rms_hu(img_ours, truth, inside)
    err_theirs = _rms_hu(img_theirs, truth, inside)
    ratio = t_theirs / t_ours
    agreement = float(np.linalg.norm((img_ours - img_theirs)[inside]) / np.linalg.norm(img_theirs[inside]))
    throughput = PROJECTION_BATCH / t_fp
    setup = f"{SIZE}x{SIZE} from {VIEWS}x{DETECTORS}, {FILTER}"
    rows = [
        Measurement("FBP time, raw_data", round(t_ours, 4), "s", note=f"{setup}, 1 thread"),
        Measurement("FBP time, skimage iradon", round(t_theirs, 4), "s", note=f"{setup}, 1 thread"),
        Measurement(
            "FBP speed-up over skimage",
            round(ratio, 2),
            "x",
            target=f">= {SPEEDUP_TARGET:g}",
            met=ratio >= SPEEDUP_TARGET,
        ),
        Measurement(
            "FBP RMS error vs phantom, raw_data",
            round(err_ours, 3),
            "HU",
            target="<= skimage's",
            met=err_ours <= err_theirs,
        ),
        Measurement("FBP RMS error vs phantom, skimage", round(err_theirs, 3), "HU"),
        Measurement(
            "FBP speed-up over skimage, torch on all cores",
            round(t_theirs / t_ours_all, 2),
            "x",
            note=f"{default_threads} torch threads vs skimage's one; shared machines vary",
        ),
        Measurement(
            "forward projection throughput",
            round(throughput, 3),
            "slices/s",
            note=f"512x512 -> {VIEWS}x{DETECTORS} parallel, batch {PROJECTION_BATCH}, 1 thread",
        ),
    ]
    extra = {
        "geometry": {
            "image": [SIZE, SIZE],
            "pixel_mm": PIXEL_MM,
            "views": VIEWS,
            "detectors": DETECTORS,
            "detector_pitch_mm": PIXEL_MM,
            "span_deg": 180,
        },
        "phantom": "ct_head (Shepp-Logan shapes, HU values), exact analytic sinogram",
        "filter": FILTER,
        "runs_s": {"raw_data": runs_ours, "skimage": runs_theirs},
        "raw_data_time_all_threads_s": t_ours_all,
        "torch_threads_default": default_threads,
        "relative_rms_difference_raw_data_vs_skimage": agreement,
        "relative_rms_error_vs_phantom": {
            "raw_data": float(np.linalg.norm((img_ours - truth)[inside]) / np.linalg.norm(truth[inside])),
            "skimage": float(np.linalg.norm((img_theirs - truth)[inside]) / np.linalg.norm(truth[inside])),
        },
        "forward_projection_batch_time_s": t_fp,
        "mu_water_per_mm": MU_WATER_PER_MM,
    }
    path = write_results("raw_data", rows, extra)
    for m in rows:
        print(f"{m.metric:<40} {m.value:>12,.4f} {m.unit:<9} {m.target:<26} {m.met}")
    print(f"raw_data FBP on all {default_threads} threads: {t_ours_all:.4f} s")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
