"""APO in TRL: ``APOConfig`` and ``APOTrainer``, TRL's ``GRPOTrainer`` with DADS and STCR.

    from apo.integrations.trl import APOConfig, APOTrainer

    args = APOConfig(output_dir="out", correctness_reward="accuracy")  # APO's official settings
    trainer = APOTrainer(model, reward_funcs=[accuracy, formatted], args=args, train_dataset=data)
    trainer.train()

Everything TRL does stays TRL's (generation, vLLM, batching, the loss, the
optimizer); APO changes two quantities, both computed by ``apo.algorithms``:

- the advantages: :func:`apo.algorithms.shape_advantages` on the rewards of all
  processes (TRL's weighted sum of the reward functions), the correctness
  (the reward function named ``correctness_reward`` equals 1) and the completion
  lengths (TRL's: generated tokens, tool tokens left out), gathered across
  processes exactly as TRL gathers the rewards; each process keeps its slice.
- the KL term: each completion's per-token KL is scaled by its DADS weight, so
  the loss is TRL's with ``beta * w_i * KL_it`` for ``beta * KL_it``.

The override points, all narrow, are checked against TRL's source by
tests/integrations/test_trl.py (``trl>=1.16,<1.17``, :data:`TESTED_TRL`); a TRL
that no longer calls them the same way fails loudly at the first step instead of
training plain GRPO.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, make_dataclass
from typing import Any

import torch
from packaging.version import Version
from pydantic.fields import FieldInfo
from trl import GRPOConfig, GRPOTrainer
from trl import __version__ as trl_version

from apo.algorithms import OFFICIAL_BETA, AlgorithmConfig, shape_advantages
from apo.algorithms.config import SHAPING_FIELDS

TESTED_TRL = (Version("1.16"), Version("1.17"))
"""TRL versions APOTrainer is tested with: from the first (included) to the second (excluded)."""

# TRL loss types whose policy term is APO's clipped surrogate, and the apo aggregation each is.
LOSS_AGGREGATIONS = {
    "grpo": "seq-mean-token-mean",
    "bnpo": "token-mean",
    "dr_grpo": "seq-mean-token-sum-norm",
    "dapo": "token-mean",
}
# TRL's scale_rewards -> apo's group advantage estimator.
SCALE_REWARDS_ADVANTAGE = {"group": "grpo", "none": "dr_grpo"}


# The APOConfig fields are the APO switches and the shaping knobs (SHAPING_FIELDS), less
# those a TRL option sets (see APOConfig.algorithm_config): APOTrainer changes only the
# advantages and the KL weights, TRL's own loss does the rest.
SET_BY_TRL = frozenset(
    {"advantage", "unbiased_std", "beta", "kl_estimator", "eps_low", "eps_high", "aggregation"}
)
APO_FIELDS = tuple(
    name
    for name in AlgorithmConfig.model_fields
    if name in {"dads", "stcr", *SHAPING_FIELDS} and name not in SET_BY_TRL
)
"""The APOConfig fields taken from :class:`AlgorithmConfig` (dads, stcr, advantage_eps, ...)."""


def _help(text: str | None) -> dict[str, Any]:
    return {"help": text}


def _dataclass_field(info: FieldInfo) -> Any:
    """A dataclass field with the default and help text of an AlgorithmConfig field."""
    if info.default_factory is not None:
        return field(default_factory=info.default_factory, metadata=_help(info.description))
    return field(default=info.default, metadata=_help(info.description))


# A dataclass base that HfArgumentParser reads like any other: APOConfig lists it before
# GRPOConfig, so its fields come after TRL's (output_dir stays the first positional one).
_AlgorithmFields = make_dataclass(
    "_AlgorithmFields",
    [
        (name, info.annotation, _dataclass_field(info))
        for name, info in AlgorithmConfig.model_fields.items()
        if name in APO_FIELDS
    ],
    namespace={"__module__": __name__},  # else "types": where introspection would look
)


@dataclass
class APOConfig(_AlgorithmFields, GRPOConfig):
    """A ``GRPOConfig`` with the APO fields, and APO's official settings where TRL's differ.

    The APO fields are those of :class:`~apo.algorithms.AlgorithmConfig` that shape the
    advantages and KL weights (:data:`APO_FIELDS`: ``dads``, ``stcr``, ``stcr_base``,
    ...), with their official defaults and help, and ``correctness_reward``.

    Official (docs/ALGORITHM.md) over TRL's defaults: ``beta`` 1e-3 (TRL: 0),
    ``loss_type`` ``grpo`` (per-response token mean, then batch mean; TRL: dapo),
    ``use_bias_correction_kl`` False (the KL is not importance-weighted; TRL: True)
    and ``advantage_eps`` 1e-9 (TRL adds a fixed 1e-4 to the group std). Group
    advantages use the unbiased std, as TRL's. The optimiser settings of the paper
    (Adam betas (0.9, 0.95), lr 1e-6, 3 % warm-up) are in examples/trl_apo.py.
    """

    correctness_reward: str | None = field(
        default=None,
        metadata=_help(
            "Name of the reward function whose value 1 means the answer is correct (a function's "
            "__name__, as TRL logs it under rewards/NAME). Needed when dads or stcr is on."
        ),
    )
    beta: float = field(
        default=OFFICIAL_BETA, metadata=_help("KL coefficient (official 1e-3; TRL: 0).")
    )
    loss_type: str = field(
        default="grpo",
        metadata=_help(
            "TRL loss type: grpo (official: per-response token mean), bnpo, dr_grpo or dapo."
        ),
    )
    use_bias_correction_kl: bool = field(
        default=False,
        metadata=_help("Importance-weight the KL term (official: no; TRL's default: yes)."),
    )

    def __post_init__(self):
        super().__post_init__()
        check_compatible(self)
        self.algorithm_config()  # the APO fields' own checks (schedule names, base > 1)

    def algorithm_config(self) -> AlgorithmConfig:
        """The settings as ``apo.algorithms`` reads them."""
        return AlgorithmConfig(
            **{name: getattr(self, name) for name in APO_FIELDS},
            # SET_BY_TRL: TRL's options, or what its GRPOTrainer computes.
            advantage=SCALE_REWARDS_ADVANTAGE[self.scale_rewards],
            unbiased_std=True,  # TRL's group std is unbiased
            beta=self.beta,
            kl_estimator="k3",  # TRL's per-token KL
            eps_low=self.epsilon,
            eps_high=self.epsilon_high,
            aggregation=LOSS_AGGREGATIONS[self.loss_type],
        )


def check_compatible(args: GRPOConfig) -> None:
    """Raise ValueError naming the first TRL option that APO cannot be combined with."""
    if args.loss_type not in LOSS_AGGREGATIONS:
        raise ValueError(
            f"loss_type={args.loss_type!r} cannot be combined with APO: its policy loss is not "
            f"the PPO clipped surrogate APO shapes. Use one of {sorted(LOSS_AGGREGATIONS)} "
            "(grpo is the official one)."
        )
    if args.scale_rewards not in SCALE_REWARDS_ADVANTAGE:
        raise ValueError(
            f"scale_rewards={args.scale_rewards!r} cannot be combined with APO: APO normalises "
            "each prompt's group (scale_rewards='group', official) or none ('none')."
        )
    if args.multi_objective_aggregation != "sum_then_normalize":
        raise ValueError(
            f"multi_objective_aggregation={args.multi_objective_aggregation!r} cannot be combined "
            "with APO: APO's advantages are group-relative on the summed reward "
            "('sum_then_normalize')."
        )
    dads = getattr(args, "dads", False)
    if dads and args.beta == 0.0:
        raise ValueError(
            "dads=True needs beta > 0: DADS weights the KL term, and beta=0 removes it. "
            "Set beta (official 1e-3) or dads=False."
        )
    needs_correctness = dads or getattr(args, "stcr", False)
    if needs_correctness and not getattr(args, "correctness_reward", None):
        raise ValueError(
            "correctness_reward is not set: DADS and STCR need to know which answers are "
            "correct. Name the reward function whose value 1 means correct (e.g. "
            "correctness_reward='accuracy'), or turn dads and stcr off."
        )


class _PerResponseBeta(float):
    """TRL's ``beta`` with each response's DADS weight: ``beta * per_token_kl`` gives
    ``per_token_kl * (beta * w_i)``. Compares and prints as the plain beta.

    Why a number with its own product: TRL 1.16 computes the KL term inline in
    ``GRPOTrainer._compute_loss`` (some 250 lines: log-probs, policy loss, aggregation
    per loss type, entropy bonus, metrics), with no method of its own to override;
    ``self.beta`` is the one quantity it reads that APO can hand a per-response value.
    The alternatives copy that method, or add the KL term beside TRL's loss (a second
    aggregation per loss type, and TRL's ``kl`` metric lost).
    """

    weights: torch.Tensor
    used: bool

    def __new__(cls, beta: float, weights: torch.Tensor) -> _PerResponseBeta:
        value = super().__new__(cls, beta)
        value.weights = weights
        value.used = False
        return value

    def __mul__(self, other: Any) -> Any:
        if isinstance(other, torch.Tensor):
            self.used = True
            scale = float(self) * self.weights.detach().to(other.dtype)
            return other * scale.view(-1, *([1] * (other.dim() - 1)))
        return float(self) * other

    __rmul__ = __mul__


class APOTrainer(GRPOTrainer):
    """TRL's ``GRPOTrainer`` with APO's advantages (STCR) and KL weights (DADS).

    Takes ``GRPOTrainer``'s arguments, with an :class:`APOConfig` as ``args``. After
    each generation, ``last_shaping`` holds the rollout's (all processes')
    ``rewards``, ``correct``, ``lengths``, ``group_size`` and the ``advantages``
    and ``kl_weights`` used; ``apo/*`` metrics are logged with TRL's.
    """

    def __init__(self, model: Any, reward_funcs: Any, args: APOConfig | None = None, **kwargs):
        if not isinstance(args, APOConfig):
            raise TypeError(
                f"APOTrainer needs args=APOConfig(...) (got {type(args).__name__}): it carries "
                "the APO settings, e.g. correctness_reward."
            )
        version = Version(trl_version)
        if not TESTED_TRL[0] <= version < TESTED_TRL[1]:
            warnings.warn(
                f"APOTrainer is tested with trl>={TESTED_TRL[0]},<{TESTED_TRL[1]}; this is trl "
                f"{trl_version}. It stops at the first step if TRL's internals moved.",
                stacklevel=2,
            )
        super().__init__(model=model, reward_funcs=reward_funcs, args=args, **kwargs)
        self._apo = args.algorithm_config()
        self._correct_index = None
        if args.correctness_reward is not None:
            if args.correctness_reward not in self.reward_func_names:
                raise ValueError(
                    f"correctness_reward={args.correctness_reward!r} names no reward function; "
                    f"the reward functions are {self.reward_func_names}."
                )
            self._correct_index = self.reward_func_names.index(args.correctness_reward)
        self._rollout: dict[str, torch.Tensor | None] = {}
        self.last_shaping: dict[str, Any] = {}

    # -- what TRL computes, kept for the shaping -------------------------------

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(
            inputs, prompts, completions, completion_ids_list
        )
        self._rollout["rewards_per_func"] = rewards_per_func  # all processes', [N, F]
        return rewards_per_func

    def _generate(self, prompts):
        result = super()._generate(prompts)
        completion_ids, tool_mask = result[1], result[2]
        # TRL's completion length: generated tokens, tool tokens left out.
        if tool_mask is not None:
            lengths = [sum(mask) for mask in tool_mask]
        else:
            lengths = [len(ids) for ids in completion_ids]
        self._rollout["lengths"] = torch.tensor(lengths, device=self.accelerator.device)
        return result

    # -- STCR on the advantages, DADS weights alongside ------------------------

    def _generate_and_score_completions(self, inputs):
        self._rollout = {}
        output = super()._generate_and_score_completions(inputs)
        rewards_per_func = self._rollout.get("rewards_per_func")
        local_lengths = self._rollout.get("lengths")
        if rewards_per_func is None or local_lengths is None:
            raise RuntimeError(
                f"trl {trl_version}'s GRPOTrainer no longer calls _calculate_rewards and _generate "
                f"as APOTrainer expects (tested: trl>={TESTED_TRL[0]},<{TESTED_TRL[1]})."
            )
        mode = "train" if self.model.training else "eval"
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        weights = self.reward_weights.to(rewards_per_func.device)
        rewards = (rewards_per_func * weights.unsqueeze(0)).nansum(dim=1)  # TRL's total reward
        if self._correct_index is None:
            correct = torch.zeros_like(rewards, dtype=torch.bool)
        else:
            correct = rewards_per_func[:, self._correct_index] == 1
        lengths = self.accelerator.gather(local_lengths)
        shaped = shape_advantages(rewards, correct, lengths, group_size, self._apo)
        # A completion no reward function scored carries no signal, as in TRL; unlike
        # TRL, its reward counts as 0 in its group's mean and std.
        unscorable = torch.isnan(rewards_per_func).all(dim=1)
        advantages = shaped.advantages.masked_fill(unscorable, 0.0)

        local = len(output["advantages"])
        start = self.accelerator.process_index * local
        output["advantages"] = advantages[start : start + local].to(output["advantages"].dtype)
        output["apo_kl_weights"] = shaped.kl_weights[start : start + local]

        logged = self._logs["advantages"]  # the completions table shows the advantages used
        for _ in range(min(len(advantages), len(logged))):
            logged.pop()
        logged.extend(advantages.tolist())
        for name, value in shaped.metrics.items():
            self._metrics[mode][f"apo/{name}"].append(value.item())
        self.last_shaping = {
            "rewards": rewards,
            "correct": correct,
            "lengths": lengths,
            "group_size": group_size,
            "advantages": advantages,
            "kl_weights": shaped.kl_weights,
        }
        return output

    def _compute_loss(self, model, inputs):
        kl_weights = inputs.get("apo_kl_weights")
        if kl_weights is None or not self.args.dads or self.beta == 0.0:
            return super()._compute_loss(model, inputs)
        beta = self.beta
        self.beta = _PerResponseBeta(beta, kl_weights)
        try:
            loss = super()._compute_loss(model, inputs)
            used = self.beta.used
        finally:
            self.beta = beta
        if not used:
            raise RuntimeError(
                f"trl {trl_version}'s GRPOTrainer._compute_loss no longer computes "
                "`self.beta * per_token_kl`, where APOTrainer applies the DADS weights "
                f"(tested: trl>={TESTED_TRL[0]},<{TESTED_TRL[1]})."
            )
        return loss


__all__ = ["TESTED_TRL", "APOConfig", "APOTrainer", "check_compatible"]
