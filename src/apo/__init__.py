"""apo: Asymmetric Policy Optimization (GRPO + DADS + STCR) for vision-language models.

The algorithm core lives in :mod:`apo.algorithms` (pure torch, no model code).
"""

__version__ = "0.1.0"
