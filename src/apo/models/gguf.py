"""GGUF model files (llama.cpp's format) as a model source.

transformers reads a GGUF file of a text language model (Llama, Qwen2, Gemma 3,
...) with ``from_pretrained(folder, gguf_file=name)`` and the ``gguf`` package,
dequantising every tensor into plain weights. apo takes such a file wherever a
model path is expected (``model.name_or_path: path/model.gguf``), and
:func:`convert_gguf` (``apo convert-gguf``) writes it once as an ordinary
folder, which loads in seconds instead of a minute.

transformers is imported inside the functions: its model classes take seconds to
load, and this module is imported with every config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

GGUF_DTYPES = ("float32", "bfloat16", "float16")


def pretrained_source(path: str) -> tuple[str, dict[str, Any]]:
    """``from_pretrained``'s folder (or hub id) and extra arguments for ``path``: a GGUF
    file is its folder and ``gguf_file``."""
    if Path(path).suffix != ".gguf":
        return path, {}
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"cannot load model {path!r}: no such GGUF file")
    return str(file.parent), {"gguf_file": file.name}


def forget_gguf_quantization(model: Any) -> None:
    """Make a model loaded from a GGUF file an ordinary one.

    transformers dequantises GGUF weights into plain tensors on load, but keeps
    its GGUF quantizer on the model, which then refuses ``save_pretrained``
    ("not serializable"), ``.float()`` and ``.half()``: checkpoints and the
    final model could not be written. The weights are plain, so the quantizer
    and its config entry go, and the model saves as ordinary safetensors.
    """
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def convert_gguf(path: str | Path, output: str | Path, dtype: str = "float32") -> Path:
    """Write the GGUF model file ``path`` as a Hugging Face folder ``output`` (weights as
    safetensors in ``dtype``, config, tokenizer, generation config); returns it.

    Loading a GGUF file dequantises every tensor (about a minute for Gemma 3 270M
    on 2 CPU cores); the folder loads in seconds. ``output`` must be new or empty.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    output = Path(output)
    if Path(path).suffix != ".gguf":
        raise ValueError(f"{path} is not a .gguf file")
    if dtype not in GGUF_DTYPES:
        raise ValueError(f"dtype {dtype!r}: use one of {', '.join(GGUF_DTYPES)}")
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ValueError(f"{output} already exists and is not empty: choose a new folder")
    folder, extra = pretrained_source(str(path))
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype), **extra)
        tokenizer = AutoTokenizer.from_pretrained(folder, **extra)
    except (OSError, ValueError) as error:  # not a GGUF file, or an architecture it lacks
        raise ValueError(f"cannot read the GGUF model {path}: {error}") from None
    forget_gguf_quantization(model)
    model.save_pretrained(output, safe_serialization=True)
    tokenizer.save_pretrained(output)
    return output
