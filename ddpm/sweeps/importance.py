"""Parameter importances of a study: one function, one evaluator, for the W&B study run and the report alike.

The evaluator is PED-ANOVA (Watanabe et al. 2023, "PED-ANOVA: Efficiently Quantifying Hyperparameter
Importance in Arbitrary Subspaces"), named here rather than left to Optuna's default (which has changed
between Optuna versions): it is deterministic, so the same study gives the same numbers in W&B and in the
report, and it needs no scikit-learn (fANOVA does, and draws a random forest).
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Optional

EVALUATOR = "PED-ANOVA (Watanabe et al. 2023)"


def importance_evaluator() -> Any:
    import optuna

    return optuna.importance.PedAnovaImportanceEvaluator()


def objective_target(study: Any, index: int) -> Optional[Callable[[Any], float]]:
    """Optuna's ``target`` for objective ``index``: None for a single-objective study (its value)."""
    return None if len(study.directions) == 1 else (lambda t: t.values[index])


def param_importances(study: Any, index: int = 0) -> dict[str, float]:
    """Importance of each searched parameter for objective ``index`` (they sum to 1), by ``EVALUATOR``.

    Raises what Optuna raises when they cannot be computed (RuntimeError, ValueError: e.g. no completed
    trial, or every trial has the same params)."""
    from optuna.importance import get_param_importances

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ExperimentalWarning
        numbers = get_param_importances(study, evaluator=importance_evaluator(),
                                        target=objective_target(study, index))
    return {k: float(v) for k, v in numbers.items()}
