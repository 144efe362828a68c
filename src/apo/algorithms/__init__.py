"""The APO algorithm core: pure torch functions, no model code.

Responses are laid out group by group: the G responses of prompt k occupy
indices [k*G, (k+1)*G) of every per-sample tensor.
"""

from apo.algorithms.advantages import ADVANTAGE_ESTIMATORS, group_advantages
from apo.algorithms.config import OFFICIAL_BETA, AlgorithmConfig
from apo.algorithms.dads import DADS_SCHEDULES, dads_kl_weights
from apo.algorithms.difficulty import group_difficulty
from apo.algorithms.groups import trained_responses, varied_groups
from apo.algorithms.importance import IMPORTANCE_MODES, importance_weights
from apo.algorithms.kl import KL_ESTIMATORS, kl_divergence
from apo.algorithms.objective import (
    ShapedAdvantages,
    apo_loss,
    apo_objective,
    shape_advantages,
    shaping_metrics,
)
from apo.algorithms.policy_loss import LOSS_AGGREGATIONS, aggregate_loss, ppo_clip_loss
from apo.algorithms.stcr import OFFICIAL_STCR_BASE, apply_stcr, stcr_weights

__all__ = [
    "ADVANTAGE_ESTIMATORS",
    "DADS_SCHEDULES",
    "IMPORTANCE_MODES",
    "KL_ESTIMATORS",
    "LOSS_AGGREGATIONS",
    "OFFICIAL_BETA",
    "OFFICIAL_STCR_BASE",
    "AlgorithmConfig",
    "ShapedAdvantages",
    "aggregate_loss",
    "apo_loss",
    "apo_objective",
    "apply_stcr",
    "dads_kl_weights",
    "group_advantages",
    "group_difficulty",
    "importance_weights",
    "kl_divergence",
    "ppo_clip_loss",
    "shape_advantages",
    "shaping_metrics",
    "stcr_weights",
    "trained_responses",
    "varied_groups",
]
