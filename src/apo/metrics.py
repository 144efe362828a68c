"""Step diagnostics from the per-response values of a rollout (all processes).

Pure functions of tensors, so they can be checked by hand and reused by any
loop. Names say what they measure (CleanRL style): ``length/incorrect_mean``,
``dads/kl_weight_pos_mean``, ``difficulty/solved_3_of_8``...
"""

from __future__ import annotations

from torch import Tensor


def _mean(values: Tensor) -> float:
    """Mean, or NaN (written as null) when there is nothing to average."""
    return values.float().mean().item() if values.numel() else float("nan")


def _median(values: Tensor) -> float:
    return values.float().median().item() if values.numel() else float("nan")


def rollout_metrics(values: dict[str, Tensor], group_size: int) -> dict[str, float]:
    """Diagnostics of one rollout.

    Args:
        values: [N] tensors, grouped by prompt (G each): ``length``, ``truncated``,
            ``correct``, ``total`` (reward), ``difficulty``, ``advantage``,
            ``kl_weight``, ``stcr_weight``, ``kept``, and ``reward/<name>`` per
            reward component.
        group_size: G.
    """
    length, correct = values["length"].float(), values["correct"].bool()
    total, advantage = values["total"].float(), values["advantage"].float()
    kl_weight, stcr_weight = values["kl_weight"].float(), values["stcr_weight"].float()
    metrics = {
        "reward/total": _mean(total),
        "reward/accuracy_rate": _mean(correct),
        "length/mean": _mean(length),
        "length/correct_mean": _mean(length[correct]),
        "length/incorrect_mean": _mean(length[~correct]),
        "length/correct_median": _median(length[correct]),
        "length/incorrect_median": _median(length[~correct]),
        "length/truncated_frac": _mean(values["truncated"]),
        "adv/mean": _mean(advantage),
        "adv/abs_mean": _mean(advantage.abs()),
        "difficulty/mean": _mean(values["difficulty"]),
        "dads/kl_weight_pos_mean": _mean(kl_weight[advantage > 0]),
        "dads/shaped_frac": _mean(kl_weight < 1),
        "stcr/weight_penalized_mean": _mean(stcr_weight[stcr_weight > 0]),
        "stcr/penalized_frac": _mean(stcr_weight > 0),
        "groups/filtered_frac": 1.0 - _mean(values["kept"]),
    }
    for key, value in values.items():
        if key.startswith("reward/"):
            metrics[key] = _mean(value)
    # The difficulty distribution: the fraction of groups with k right answers.
    solved = correct.reshape(-1, group_size).sum(dim=1)
    for k in range(group_size + 1):
        metrics[f"difficulty/solved_{k}_of_{group_size}"] = _mean(solved == k)
    grouped = total.reshape(-1, group_size)
    metrics["groups/uniform_reward_frac"] = _mean((grouped == grouped[:, :1]).all(dim=1))
    return metrics


def throughput(generated_tokens: float, seconds: dict[str, float]) -> dict[str, float]:
    """Generated tokens per second of generation and of the whole step."""
    return {
        "throughput/generated_tokens_per_s": generated_tokens
        / max(seconds["time/generation"], 1e-9),
        "throughput/step_tokens_per_s": generated_tokens / max(seconds["time/step"], 1e-9),
    }
