"""The pieces of a training step that :class:`apo.trainer.Trainer` wires together.

- :mod:`.rollouts`: a step's prompts, their responses and scores (with dynamic
  sampling, rounds of them);
- :mod:`.log_probs`: the no-grad reference and old log-prob passes;
- :mod:`.update`: the policy update (micro-batches, global denominators,
  out-of-memory recuts, the non-finite streak);
- :mod:`.step_metrics`: a step's metrics reduced and gathered over processes;
- :mod:`.failures`: why a run stops on its own (the exceptions, the reward
  failure streak);
- :mod:`.stopping`: SIGTERM / SIGINT, answered with a checkpoint;
- :mod:`.timing`: how long each phase of a step took.
"""
