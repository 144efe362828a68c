"""The APO algorithm core: pure torch functions, no model code.

Responses are laid out group by group: the G responses of prompt k occupy
indices [k*G, (k+1)*G) of every per-sample tensor.

The names load with their module on first use (:mod:`apo.lazy`): the config
section and its constants never import torch.
"""

from typing import TYPE_CHECKING

from apo.lazy import lazy_exports

if TYPE_CHECKING:
    from apo.algorithms.advantages import ADVANTAGE_ESTIMATORS, group_advantages
    from apo.algorithms.config import OFFICIAL_BETA, OFFICIAL_STCR_BASE, AlgorithmConfig
    from apo.algorithms.dads import DADS_SCHEDULES, dads_kl_weights
    from apo.algorithms.difficulty import group_difficulty
    from apo.algorithms.groups import trained_responses, varied_groups
    from apo.algorithms.importance import importance_weights
    from apo.algorithms.kl import KL_ESTIMATORS, kl_divergence
    from apo.algorithms.names import IMPORTANCE_MODES
    from apo.algorithms.objective import (
        ShapedAdvantages,
        apo_loss,
        apo_objective,
        shape_advantages,
        shaping_metrics,
    )
    from apo.algorithms.policy_loss import LOSS_AGGREGATIONS, aggregate_loss, ppo_clip_loss
    from apo.algorithms.stcr import apply_stcr, stcr_weights

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "apo.algorithms.advantages": ["ADVANTAGE_ESTIMATORS", "group_advantages"],
        "apo.algorithms.config": ["OFFICIAL_BETA", "OFFICIAL_STCR_BASE", "AlgorithmConfig"],
        "apo.algorithms.dads": ["DADS_SCHEDULES", "dads_kl_weights"],
        "apo.algorithms.difficulty": ["group_difficulty"],
        "apo.algorithms.groups": ["trained_responses", "varied_groups"],
        "apo.algorithms.importance": ["importance_weights"],
        "apo.algorithms.kl": ["KL_ESTIMATORS", "kl_divergence"],
        "apo.algorithms.names": ["IMPORTANCE_MODES"],
        "apo.algorithms.objective": [
            "ShapedAdvantages",
            "apo_loss",
            "apo_objective",
            "shape_advantages",
            "shaping_metrics",
        ],
        "apo.algorithms.policy_loss": ["LOSS_AGGREGATIONS", "aggregate_loss", "ppo_clip_loss"],
        "apo.algorithms.stcr": ["apply_stcr", "stcr_weights"],
    },
)

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
