"""The Python API: ``apo.train(config)`` does what ``apo train`` does."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from apo.config import TrainConfig


def train(
    config: TrainConfig | dict[str, Any] | str | Path, resume: bool | str | Path | None = None
) -> Path:
    """Train as ``apo train`` does; returns the run folder (``metrics.jsonl``,
    ``config.yaml``, ``checkpoints/``, ``final_model/``).

    ``config``: a :class:`~apo.config.TrainConfig`, a dict of its sections, or a
    YAML file. ``resume``: True continues from the latest checkpoint of the run
    folder (or starts fresh when there is none), a path from that checkpoint.
    Bad settings raise :class:`~apo.config.ConfigError`; a run stopped by
    SIGTERM/SIGINT saves a checkpoint and raises ``SystemExit`` (143/130).
    Call it under ``if __name__ == "__main__":``: reward workers re-import the
    main script.
    """
    # Imported here, not at the top: `import apo` (and so `apo --help`) stays instant
    # instead of loading torch, transformers and the trainer.
    from pydantic import ValidationError

    from apo.config import ConfigError, TrainConfig, format_validation_error, load_config
    from apo.trainer import Trainer

    if isinstance(config, (str, Path)):
        config = load_config(config)
    elif isinstance(config, dict):
        try:
            config = TrainConfig.model_validate(config)
        except ValidationError as error:
            raise ConfigError(
                f"invalid configuration:\n{format_validation_error(error, TrainConfig)}"
            ) from None
    elif not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, a dict or a YAML path, not {config!r}")
    if isinstance(resume, Path):
        resume = str(resume)
    Trainer(config, resume=resume).train()
    return Path(config.logging.output_dir)
