"""The settings of the algorithm: one section, read whole by the pure functions.

The trainer passes its ``algorithm`` config section to :func:`shape_advantages`,
:func:`apo_objective` and :func:`apo_loss`; library users pass the same fields
as keyword arguments (or build an :class:`AlgorithmConfig`). A new knob is one
field here, used where it matters (a shaping knob is also named in
:data:`SHAPING_FIELDS`, which ``apo advantages`` turns into flags).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from apo.algorithms.names import (
    BUILTIN_ADVANTAGES,
    BUILTIN_AGGREGATIONS,
    BUILTIN_DADS_SCHEDULES,
    BUILTIN_KL_ESTIMATORS,
    IMPORTANCE_MODES,
)
from apo.registry import Registry
from apo.section import Section

OFFICIAL_BETA = 1e-3
OFFICIAL_STCR_BASE = 1.00001

# Keyword arguments of the functions that name a field differently.
KEYWORD_ALIASES = {"advantage_method": "advantage"}

SHAPING_FIELDS = (
    "advantage",
    "unbiased_std",
    "advantage_eps",
    "dads_schedule",
    "stcr_base",
    "stcr_negatives_only",
)
"""The fields that tune how a rollout's advantages and KL weights are shaped
(:func:`~apo.algorithms.shape_advantages`, its metrics), beside the ``dads`` and
``stcr`` switches. ``apo advantages`` offers each as a flag, with its default and
description; a new shaping knob is a field of :class:`AlgorithmConfig`, its name
here, and its use in the shaping."""


class AlgorithmConfig(Section):
    """APO: dads and stcr on; GRPO: both off ('name: apo' / 'name: grpo' say the same).

    Every knob of the objective, explained in docs/ALGORITHM.md.
    """

    dads: bool = Field(
        True, description="DADS: positive samples of harder prompts get a smaller KL weight."
    )
    stcr: bool = Field(
        True, description="STCR: wrong answers longer than the group's correct ones lose more."
    )
    advantage: str = Field("grpo", description="Group advantage estimator: grpo, dr_grpo, rloo.")
    unbiased_std: bool = Field(True, description="grpo: unbiased group std (official).")
    advantage_eps: float = Field(1e-9, gt=0, description="grpo: added to the std.")
    dads_schedule: str = Field(
        "saturating",
        description=(
            "DADS weight schedule: saturating (official, 1 - exp(-e (1 - d))), "
            "exp_decay (exp(-e d)), constant (no DADS); former names official, exp."
        ),
    )
    stcr_base: float = Field(
        OFFICIAL_STCR_BASE, gt=1.0, description="STCR base (official 1.00001)."
    )
    stcr_negatives_only: bool = Field(
        False,
        description="Apply STCR only to negative advantages (official: to every wrong answer).",
    )
    beta: float = Field(OFFICIAL_BETA, description="KL coefficient (official 1e-3).")
    kl_estimator: str = Field("k3", description="KL estimator: k1, k2, k3, low_var_kl.")
    kl_clamp: float | None = Field(None, gt=0, description="Clamp per-token KL to [-c, c].")
    eps_low: float = Field(0.2, ge=0, lt=1, description="PPO clip range below 1.")
    eps_high: float | None = Field(
        None, ge=0, description="PPO clip range above 1; None: eps_low (larger: clip-higher)."
    )
    dual_clip: float | None = Field(None, gt=1, description="Dual-clip bound c > 1 for A < 0.")
    aggregation: str = Field(
        "seq-mean-token-mean",
        description="Loss aggregation: seq-mean-token-mean, token-mean, seq-mean-token-sum-norm.",
    )
    ppo_epochs: int = Field(1, ge=1, description="Passes over each rollout.")
    filter_uniform_groups: bool = Field(
        False,
        description=(
            "Drop groups whose rewards are all equal from the update (DAPO-style); they carry "
            "no policy gradient. Off in the paper."
        ),
    )
    importance_sampling: str = Field(
        "off",
        description=(
            "Sampler/trainer mismatch: off; monitor (the engine records its sampling log-probs, "
            "importance/* metrics); truncate (each token's policy loss times min(rho, "
            "importance_cap), rho = pi_trainer / pi_sampler); mask (a response whose geometric-"
            "mean rho is outside [1/cap, cap] leaves the policy loss)."
        ),
    )
    importance_cap: float = Field(
        2.0, gt=1, description="C of importance_sampling: the cap of rho, or the mask's bound."
    )
    overlong_filter: bool = Field(
        False,
        description=(
            "Leave truncated responses (cut at rollout.max_new_tokens) out of the loss (DAPO's "
            "overlong filtering); they still count in their group's advantages, DADS and STCR."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _name_shorthand(cls, data: Any) -> Any:
        """``name: apo`` / ``name: grpo``: DADS and STCR on / off, unless given."""
        if isinstance(data, dict) and "name" in data:
            data = dict(data)
            name = data.pop("name")
            if name not in ("apo", "grpo"):
                raise ValueError(f"algorithm name {name!r} is unknown; allowed: apo, grpo")
            data.setdefault("dads", name == "apo")
            data.setdefault("stcr", name == "apo")
        return data

    @field_validator("dads_schedule")
    @classmethod
    def _current_schedule_name(cls, value: str) -> str:
        """A former name (``official``, ``exp``) becomes the current one in saved configs."""
        if value in BUILTIN_DADS_SCHEDULES:
            return value
        return _registry("dads_schedule").canonical(value)

    @field_validator("importance_sampling")
    @classmethod
    def _known_importance_mode(cls, value: str) -> str:
        if value not in IMPORTANCE_MODES:
            raise ValueError(f"importance_sampling must be one of {', '.join(IMPORTANCE_MODES)}")
        return value

    @field_validator("beta")
    @classmethod
    def _non_negative_beta(cls, value: float) -> float:
        if value < 0:
            raise ValueError("beta must be >= 0")
        return value

    @model_validator(mode="after")
    def _check_names(self) -> AlgorithmConfig:
        for field, builtin in (
            ("advantage", BUILTIN_ADVANTAGES),
            ("dads_schedule", BUILTIN_DADS_SCHEDULES),
            ("kl_estimator", BUILTIN_KL_ESTIMATORS),
            ("aggregation", BUILTIN_AGGREGATIONS),
        ):
            value = getattr(self, field)
            if value in builtin:
                continue
            registry = _registry(field)
            if value not in registry:
                raise ValueError(f"{field}={value!r} is unknown; allowed: {', '.join(registry)}")
        return self


def _registry(field: str) -> Registry:
    """The registry a name field is looked up in when the name is not built in (a former
    name, or a user's variant): it loads torch, which the built-in names never do."""
    from apo.algorithms.advantages import ADVANTAGE_ESTIMATORS
    from apo.algorithms.dads import DADS_SCHEDULES
    from apo.algorithms.kl import KL_ESTIMATORS
    from apo.algorithms.policy_loss import LOSS_AGGREGATIONS

    return {
        "advantage": ADVANTAGE_ESTIMATORS,
        "dads_schedule": DADS_SCHEDULES,
        "kl_estimator": KL_ESTIMATORS,
        "aggregation": LOSS_AGGREGATIONS,
    }[field]


def resolve_config(config: AlgorithmConfig | None, keywords: dict[str, Any]) -> AlgorithmConfig:
    """``config`` (official settings when None) with keyword arguments over it, validated."""
    if not keywords:
        return AlgorithmConfig() if config is None else config
    values = {} if config is None else config.model_dump()
    values |= {KEYWORD_ALIASES.get(key, key): value for key, value in keywords.items()}
    return AlgorithmConfig.model_validate(values)  # a few microseconds
