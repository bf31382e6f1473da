"""How a trained model behaves across virtual scanners, acquisition levels, lesions and patients.

:func:`evaluate_robustness` acquires held-out virtual patients with every scanner the raw-data
library models, at two or more dose (CT) or noise (MR) levels, reads each record through the
task's own loader and reports accuracy, sensitivity, specificity and AUC with a 95 %
patient-level bootstrap interval per cell: per scanner and level, per lesion radius and
contrast bin, and per demographic subgroup (sex, age, head size). See ``docs/robustness.md``.
"""

from tasks.robustness.acquisition import Condition, conditions_for, rebin_fan_beam
from tasks.robustness.cohort import HeldOutPatient, held_out_patients
from tasks.robustness.evaluate import build_cells, clear_acquisitions, evaluate_robustness
from tasks.robustness.metrics import CellMetrics, auc, auc_interval, cell_metrics
from tasks.robustness.report import CellNotFoundError, RobustnessCell, RobustnessReport, ScanScore

__all__ = [
    "CellMetrics",
    "CellNotFoundError",
    "Condition",
    "HeldOutPatient",
    "RobustnessCell",
    "RobustnessReport",
    "ScanScore",
    "auc",
    "auc_interval",
    "build_cells",
    "cell_metrics",
    "clear_acquisitions",
    "conditions_for",
    "evaluate_robustness",
    "held_out_patients",
    "rebin_fan_beam",
]
