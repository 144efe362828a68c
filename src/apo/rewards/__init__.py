"""Rewards: accuracy (math_verify + multiple choice), format, custom functions, a safe runner.

The names load with their module on first use (:mod:`apo.lazy`): the settings
(``RewardConfig``) and the registry never import torch or start a worker.
"""

from typing import TYPE_CHECKING

from apo.lazy import lazy_exports

if TYPE_CHECKING:
    from apo.rewards.accuracy import GroundTruthError, accuracy_reward, answers_match
    from apo.rewards.answer import extract_answer
    from apo.rewards.config import RewardComponentConfig, RewardConfig
    from apo.rewards.format import format_reward, is_well_formatted
    from apo.rewards.registry import REWARDS, resolve_reward, reward_name, reward_reference
    from apo.rewards.runner import RewardResult, RewardRunner, RewardSample

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "apo.rewards.accuracy": ["GroundTruthError", "accuracy_reward", "answers_match"],
        "apo.rewards.answer": ["extract_answer"],
        "apo.rewards.config": ["RewardComponentConfig", "RewardConfig"],
        "apo.rewards.format": ["format_reward", "is_well_formatted"],
        "apo.rewards.registry": ["REWARDS", "resolve_reward", "reward_name", "reward_reference"],
        "apo.rewards.runner": ["RewardResult", "RewardRunner", "RewardSample"],
    },
)

__all__ = [
    "REWARDS",
    "GroundTruthError",
    "RewardComponentConfig",
    "RewardConfig",
    "RewardResult",
    "RewardRunner",
    "RewardSample",
    "accuracy_reward",
    "answers_match",
    "extract_answer",
    "format_reward",
    "is_well_formatted",
    "resolve_reward",
    "reward_name",
    "reward_reference",
]
