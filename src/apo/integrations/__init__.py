"""APO inside other training frameworks.

``apo.integrations.trl``: :class:`~apo.integrations.trl.APOTrainer`, TRL's
``GRPOTrainer`` with DADS and STCR (needs ``pip install "apo-rl[trl]"``).
Nothing here is imported by the rest of apo.
"""
