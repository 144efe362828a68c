"""The names of the built-in variants: light data (no torch) that a config is checked
against before anything loads.

Each registry (``ADVANTAGE_ESTIMATORS`` in advantages.py, ``DADS_SCHEDULES`` in
dads.py, ...) registers these names with their functions, and tests/test_imports.py
checks that the two agree. A config naming another variant (a former name, or
one a user registered) is looked up in the registry itself.
"""

from __future__ import annotations

BUILTIN_ADVANTAGES = ("grpo", "dr_grpo", "rloo")
BUILTIN_DADS_SCHEDULES = ("saturating", "exp_decay", "constant")
BUILTIN_KL_ESTIMATORS = ("k1", "k2", "k3", "low_var_kl")
BUILTIN_AGGREGATIONS = ("seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm")

# Estimators that compare each response with the others of its group: with one
# response per prompt every advantage is 0 and nothing is learned.
GROUP_RELATIVE = ("grpo", "dr_grpo", "rloo")

IMPORTANCE_MODES = ("off", "monitor", "truncate", "mask")
