"""The reward settings: a weighted sum of reward functions, and how they are run.

Light (pydantic only): the config imports this module, and reading settings never
loads torch or starts a worker.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field, field_validator, model_validator

from apo.rewards.registry import reward_name, reward_reference
from apo.section import Section


def _as_reference(value: Any) -> Any:
    """A reward function given from Python becomes the string that names it."""
    return reward_reference(value) if callable(value) else value


# A reward name; from Python, the function itself is accepted and stored by name.
RewardReference = Annotated[str, BeforeValidator(_as_reference)]


class RewardComponentConfig(Section):
    name: RewardReference = Field(
        description=(
            "A built-in reward ('accuracy', 'format'), 'path/file.py:function' or "
            "'package.module:function' (a file is relative to the config file); from Python, "
            "also the function itself."
        )
    )
    weight: float = Field(1.0, description="Multiplies this component in the total reward.")


def _official_components() -> list[RewardComponentConfig]:
    return [
        RewardComponentConfig(name="accuracy", weight=1.0),
        RewardComponentConfig(name="format", weight=0.5),
    ]


class RewardConfig(Section):
    """The reward: a weighted sum of components (official: accuracy + 0.5 * format)."""

    components: list[RewardComponentConfig] = Field(
        default_factory=_official_components,
        description=(
            "Reward functions and their weights; name: accuracy, format, path/file.py:function "
            "or package.module:function."
        ),
    )
    correctness: RewardReference = Field(
        "accuracy",
        description="The component whose value 1.0 makes a response 'correct' (for DADS/STCR).",
    )
    timeout_seconds: float = Field(10.0, gt=0, description="Hard limit per response and component.")
    num_workers: int = Field(2, ge=1, description="Worker processes scoring in parallel.")
    max_failing_steps: int = Field(
        3,
        ge=1,
        description="Stop the run when a component fails on every response for this many steps.",
    )
    overlong_buffer: int = Field(
        0,
        ge=0,
        description=(
            "DAPO's soft overlong punishment: over the last this many tokens before "
            "rollout.max_new_tokens the reward falls linearly to -overlong_penalty (component "
            "'overlong'); 0: off."
        ),
    )
    overlong_penalty: float = Field(
        1.0, ge=0, description="The soft overlong punishment of a response at the length limit."
    )

    @field_validator("components", mode="before")
    @classmethod
    def _components_by_name(cls, components: Any) -> Any:
        """A bare function or name stands for a component of weight 1."""
        if not isinstance(components, (list, tuple)):
            return components
        return [{"name": c} if callable(c) or isinstance(c, str) else c for c in components]

    @model_validator(mode="after")
    def _check_names(self) -> RewardConfig:
        names = [reward_name(c.name) for c in self.components]
        if not names:
            raise ValueError("rewards.components is empty: give at least one reward")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"reward components named twice: {', '.join(duplicates)}")
        if self.overlong_buffer and "overlong" in names:
            raise ValueError(
                "a reward component is named 'overlong', as the soft overlong punishment "
                "(rewards.overlong_buffer) is: rename the component"
            )
        if reward_name(self.correctness) not in names:
            raise ValueError(
                f"rewards.correctness={self.correctness!r} is not a component; "
                f"allowed: {', '.join(names)}"
            )
        return self
