"""Rewards: accuracy (math_verify + multiple choice), format, custom functions, a safe runner."""

from apo.rewards.accuracy import GroundTruthError, accuracy_reward, answers_match
from apo.rewards.answer import extract_answer
from apo.rewards.format import format_reward, is_well_formatted
from apo.rewards.registry import REWARDS, resolve_reward, reward_name, reward_reference
from apo.rewards.runner import (
    RewardComponentConfig,
    RewardConfig,
    RewardResult,
    RewardRunner,
    RewardSample,
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
