"""apo: Asymmetric Policy Optimization (GRPO + DADS + STCR) for vision-language models.

``apo.train(config)`` trains as ``apo train`` does. The algorithm core lives in
:mod:`apo.algorithms` (pure torch, no model code).
"""

from apo.api import train

__version__ = "0.1.0"

__all__ = ["__version__", "train"]
