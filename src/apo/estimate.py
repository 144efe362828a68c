"""GPU memory of a training config, predicted before anything loads.

Arithmetic only: the model's shape comes from its config (read offline; the
parameters are counted exactly on the ``meta`` device, no weights loaded), the
rest from the :class:`~apo.config.TrainConfig`. The prediction is per process
under DDP (every process holds everything; FSDP / ZeRO sharding is not modelled)
and per phase, because the phases of a step do not hold the same tensors:

- ``generation``: the persistent state + the rollout's KV cache + one layer's
  prefill working set + the sampling logits;
- ``log-prob passes`` (reference, and old log-probs when off-policy): the
  persistent state + the hidden states of a no-grad forward (every layer's: the
  model is called with ``output_hidden_states``, which the vision encoder
  honours too);
- ``update``: the persistent state + the activations of one micro-batch (saved
  for the backward, plus one layer's working memory) + the output-head chunk.

The persistent state is the one of every step after the first: policy weights,
a frozen reference copy, LoRA adapters and AdamW's two moments (created by the
first optimizer step). Gradients exist in the update only: the trainer frees
them after each step's updates.

Sizes are worst cases: every sequence is ``data.max_prompt_length +
rollout.max_new_tokens`` tokens (micro-batches are padded to their longest row).
Counts of saved activations follow Korthikanti et al. 2022 ("Reducing
Activation Recomputation in Large Transformer Models"), redone for the layers
apo actually runs (Hugging Face's Qwen2/Llama decoder: RMSNorm computed in
float32, grouped-query attention through SDPA, SwiGLU MLP, no dropout), see
:func:`layer_activation_bytes`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from apo.config import TrainConfig

GIB = 2**30
# The CUDA context and kernel images: held by the driver, outside torch's allocator
# (torch.cuda.max_memory_allocated does not see it). 0.3-0.8 GiB on recent GPUs.
CUDA_CONTEXT_BYTES = int(0.5 * GIB)
# Output-head bytes per (token, vocabulary entry) of a log-prob chunk
# (apo.models.logprobs._token_stats): with grad, the bf16 logits (2), their float32
# copy (4), softmax and softmax * logits for the entropy (4 + 4) and the float32
# gradient of the logits in the backward (4); without grad, the logits, their
# float32 copy and logsumexp's exp (2 + 4 + 4).
HEAD_BYTES_TRAIN = 18
HEAD_BYTES_NO_GRAD = 10
# Sampling bytes per (row, vocabulary entry) of one decoding step: the logits (2),
# their float32 copy, the temperature-scaled copy and the softmax (3 x 4); top-p
# adds a sort (4 + 8 for the order), the cumulative sum (4) and masks (~4).
SAMPLING_BYTES = 14
TOP_P_BYTES = 20

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class ModelShape:
    """What the memory arithmetic needs to know about a model."""

    parameters: int  # every parameter once (tied embeddings once)
    vision_parameters: int  # of the vision encoder (0 for a text-only model)
    lora_parameters: int  # of the adapters the config's LoRA settings add (0 without)
    lora_input_features: int  # sum of in_features of the adapted layers of one decoder layer
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    vision_layers: int = 0
    vision_hidden: int = 0
    vision_intermediate: int = 0
    vision_heads: int = 0
    patches_per_token: int = 1  # image patches merged into one language-model token


@dataclass
class MemoryEstimate:
    """Predicted bytes per process: named components and the phases that hold them."""

    components: dict[str, int]
    phases: dict[str, list[str]]
    notes: list[str] = field(default_factory=list)
    # Figures for comparison, not part of any phase (e.g. the other checkpointing choice).
    alternatives: dict[str, int] = field(default_factory=dict)

    def phase_bytes(self, phase: str) -> int:
        return sum(self.components[name] for name in self.phases[phase])

    @property
    def peak_phase(self) -> str:
        return max(self.phases, key=self.phase_bytes)

    @property
    def peak_bytes(self) -> int:
        return self.phase_bytes(self.peak_phase)

    def to_dict(self) -> dict:
        gib = {name: value / GIB for name, value in self.components.items()}
        return {
            "components_gib": gib,
            "phases_gib": {phase: self.phase_bytes(phase) / GIB for phase in self.phases},
            "phase_components": self.phases,
            "peak_phase": self.peak_phase,
            "peak_gib": self.peak_bytes / GIB,
            "alternatives_gib": {k: v / GIB for k, v in self.alternatives.items()},
            "notes": self.notes,
        }


# ------------------------------------------------------------------ the model's shape


def model_shape(config: TrainConfig) -> ModelShape:
    """The shape of ``config.model``: its config read offline, parameters counted on
    the ``meta`` device (no weights read), LoRA adapters counted by applying peft
    there. Raises ValueError naming the model when its config cannot be read."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    from apo.models.loading import is_multimodal_config

    hf_config = _model_config(config)
    multimodal = is_multimodal_config(hf_config)
    model_class = AutoModelForImageTextToText if multimodal else AutoModelForCausalLM
    with torch.device("meta"):
        model = model_class.from_config(hf_config, trust_remote_code=config.model.trust_remote_code)
    parameters = sum(p.numel() for p in model.parameters())
    from apo.models.loading import vision_tower

    tower = vision_tower(model) if multimodal else None
    vision_parameters = sum(p.numel() for p in tower.parameters()) if tower is not None else 0
    lora_parameters = lora_input_features = 0
    text = hf_config.get_text_config()
    if config.lora.enabled:
        from apo.models.lora import apply_lora

        adapted = apply_lora(model, config.lora)
        lora_parameters = sum(
            p.numel() for name, p in adapted.named_parameters() if "lora_" in name
        )
        lora_input_features = _adapted_input_features(adapted, tower) // text.num_hidden_layers
    heads = text.num_attention_heads
    vision = getattr(hf_config, "vision_config", None) if tower is not None else None
    return ModelShape(
        parameters=parameters,
        vision_parameters=vision_parameters,
        lora_parameters=lora_parameters,
        lora_input_features=lora_input_features,
        layers=text.num_hidden_layers,
        hidden=text.hidden_size,
        intermediate=text.intermediate_size,
        heads=heads,
        kv_heads=getattr(text, "num_key_value_heads", None) or heads,
        head_dim=getattr(text, "head_dim", None) or text.hidden_size // heads,
        vocab=text.vocab_size,
        vision_layers=_first(vision, "depth", "num_hidden_layers"),
        vision_hidden=_first(vision, "hidden_size", "embed_dim"),
        vision_intermediate=_first(vision, "intermediate_size"),
        vision_heads=_first(vision, "num_heads", "num_attention_heads"),
        patches_per_token=_first(vision, "spatial_merge_size") ** 2 if vision else 1,
    )


# The configs of the models the shipped configs name, as their config.json on the hub
# has them (model_type and the fields that set a shape), so that their estimate needs
# neither the network nor a download: apo estimate-memory configs/view-r1-3b.yaml works
# offline. transformers' defaults fill the rest; tests/test_estimate.py checks the
# parameter counts against the published ones.
_QWEN25_VL_VISION = {
    "depth": 32,
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "window_size": 112,
    "fullatt_block_indexes": [7, 15, 23, 31],
    "tokens_per_second": 2,
}
KNOWN_MODEL_CONFIGS: dict[str, dict] = {
    "Qwen/Qwen2.5-VL-3B-Instruct": {
        "model_type": "qwen2_5_vl",
        "text_config": {
            "vocab_size": 151936,
            "hidden_size": 2048,
            "intermediate_size": 11008,
            "num_hidden_layers": 36,
            "num_attention_heads": 16,
            "num_key_value_heads": 2,
            "max_position_embeddings": 128000,
            "tie_word_embeddings": True,
        },
        "vision_config": _QWEN25_VL_VISION | {"out_hidden_size": 2048},
        "tie_word_embeddings": True,
    },
    "Qwen/Qwen2.5-VL-7B-Instruct": {
        "model_type": "qwen2_5_vl",
        "text_config": {
            "vocab_size": 152064,
            "hidden_size": 3584,
            "intermediate_size": 18944,
            "num_hidden_layers": 28,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
            "max_position_embeddings": 128000,
            "tie_word_embeddings": False,
        },
        "vision_config": _QWEN25_VL_VISION | {"out_hidden_size": 3584},
        "tie_word_embeddings": False,
    },
}


def _model_config(config: TrainConfig):
    """The transformers config of ``config.model``, never downloaded: a local folder's
    or GGUF file's, a hub id's from the local Hugging Face cache, else a model of
    :data:`KNOWN_MODEL_CONFIGS`. ValueError says what to pass otherwise."""
    from pathlib import Path

    from transformers import AutoConfig

    from apo.models.loading import _load_config, resolve_model_path

    name = config.model.name_or_path
    path = resolve_model_path(name)
    if Path(path).expanduser().exists() or Path(path).expanduser().is_absolute():
        return _load_config(path, config.model.trust_remote_code)
    try:  # a hub id fetched before: its config.json in the Hugging Face cache
        return AutoConfig.from_pretrained(
            name, local_files_only=True, trust_remote_code=config.model.trust_remote_code
        )
    except (OSError, ValueError):
        pass
    known = KNOWN_MODEL_CONFIGS.get(name)
    if known is not None:
        fields = dict(known)
        return AutoConfig.for_model(fields.pop("model_type"), **fields)
    raise ValueError(
        f"model.name_or_path={name!r} is not a local folder, not in the Hugging Face cache, "
        f"and not a model whose shape apo knows offline ({', '.join(KNOWN_MODEL_CONFIGS)}); "
        "apo estimate-memory downloads nothing: pass model.name_or_path=FOLDER, a folder "
        "holding the model's config.json (no weights needed)"
    )


def _first(config, *names: str) -> int:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return 0


def _adapted_input_features(adapted, tower) -> int:
    """Sum of in_features over the LoRA-wrapped layers outside the vision tower."""
    tower_ids = {id(m) for m in tower.modules()} if tower is not None else set()
    total = 0
    for module in adapted.modules():
        lora_a = getattr(module, "lora_A", None)
        if lora_a is not None and len(lora_a) and id(module) not in tower_ids:
            base = module.get_base_layer()
            total += getattr(base, "in_features", 0)
    return total


# ------------------------------------------------------------------ activations


def layer_activation_bytes(
    hidden: int,
    intermediate: int,
    heads: int,
    kv_heads: int,
    *,
    activation_bytes: int,
    lora_input_features: int | None = None,
    adapter_input_bytes: int = 2,
    repeat_kv: bool = True,
    eager_attention_tokens: int = 0,
) -> int:
    """Bytes saved for the backward by one decoder layer, per token.

    Korthikanti et al. count ``s b h (34 + 5 a s / h)`` bytes per layer for a GPT
    layer in 16-bit (MLP 4h, dropout masks, attention scores stored). For the
    Hugging Face Qwen2/Llama layer that apo trains (e = activation bytes, h hidden,
    i intermediate):

    full fine-tuning, per token
        2 x RMSNorm: float32 input (4h) + normalised input of the weight (e h)
        q/k/v input e h, o_proj input e h, MLP input e h
        SDPA: q, k, v, output (4 e h; k and v are repeated to all heads by
            ``repeat_kv`` whenever there is a padding mask, else e h kv/a each)
        SwiGLU: gate, silu(gate), up, their product (4 e i)
        -> 2 (4 + e) h + 7 e h + 4 e i = 26 h + 8 i bytes in bf16

    LoRA (base frozen: no input of a frozen weight is kept)
        2 x RMSNorm float32 input (8h)
        each adapter's input, cast to the adapter's dtype (fp32 adapters, cast back
            to bf16 under autocast): adapter_input_bytes x sum of in_features
        SDPA 4 e h, SwiGLU gate, silu(gate), up (3 e i)
        -> with the seven default targets under bf16 autocast: 28 h + 8 i bytes

    ``eager_attention_tokens`` = s for eager attention, which also keeps the
    [a, s, s] softmax in float32 and its cast (6 a s bytes per token); SDPA and
    flash attention keep only the log-sum-exp (4 a bytes).
    """
    h, i, e = hidden, intermediate, activation_bytes
    kv = h if repeat_kv else h * kv_heads // heads
    attention = e * (2 * h + 2 * kv) + 4 * heads + 6 * heads * eager_attention_tokens
    if lora_input_features is None:  # full fine-tuning
        return 2 * (4 + e) * h + 3 * e * h + attention + 4 * e * i
    return 8 * h + adapter_input_bytes * lora_input_features + attention + 3 * e * i


def forward_working_bytes(hidden: int, intermediate: int, kv_fraction: float, e: int) -> int:
    """Bytes per token one layer's no-grad forward holds at its peak: the float32
    norm temporaries (8h), q/k/v and the attention output (e h (2 + 2 kv/a)) and
    three SwiGLU tensors (3 e i)."""
    return 8 * hidden + int(e * hidden * (2 + 2 * kv_fraction)) + 3 * e * intermediate


# ------------------------------------------------------------------ the estimate


def estimate_memory(
    config: TrainConfig,
    shape: ModelShape,
    *,
    processes: int = 1,
    prompt_tokens: int | None = None,
    image_tokens: int | None = None,
) -> MemoryEstimate:
    """Per-process GPU bytes of ``config`` on a model of ``shape``, by phase.

    Args:
        processes: DDP processes (each holds a full replica; the step's prompts are
            shared out, so each process generates for prompts_per_step / processes).
        prompt_tokens: longest prompt, image tokens included; default
            ``data.max_prompt_length``.
        image_tokens: language-model tokens of a prompt's images; default all of
            the prompt (the largest images the prompt length allows). Only the
            vision encoder's activations and working memory depend on it.
    """
    model, rollout, batch = config.model, config.rollout, config.batch
    notes: list[str] = []
    prompt = prompt_tokens or config.data.max_prompt_length
    if prompt is None:
        raise ValueError("data.max_prompt_length is None: give the longest prompt's tokens")
    images = min(prompt, image_tokens if image_tokens is not None else prompt)
    if not shape.vision_layers:
        images = 0
    patches = images * shape.patches_per_token
    sequence = prompt + rollout.max_new_tokens

    # Weights: model.dtype ('auto' is bf16 on a GPU that supports it).
    weight_bytes = 2 if model.dtype == "auto" else DTYPE_BYTES[model.dtype]
    e = 2 if config.training.precision != "no" else weight_bytes  # activation dtype
    flash = model.attn_implementation == "flash_attention_2"
    eager = model.attn_implementation == "eager"
    components: dict[str, int] = {}
    components["policy weights"] = shape.parameters * weight_bytes

    # The frozen reference: a copy unless LoRA's adapter-disabled base is used.
    kind = config.reference.kind
    if kind == "auto":
        kind = "adapter_disabled" if config.lora.enabled else "copy"
    if (
        kind == "copy"
        and config.reference.device not in (None, "cuda")
        and not str(config.reference.device).startswith("cuda")
    ):
        notes.append(f"reference copy on {config.reference.device}: not on the GPU")
        kind = "elsewhere"
    reference_bytes = DTYPE_BYTES.get(config.reference.dtype or "", weight_bytes)
    components["reference model"] = shape.parameters * reference_bytes if kind == "copy" else 0

    # Trainable parameters, their gradients and AdamW's two moments (torch.optim.AdamW
    # keeps them in the parameter's dtype; apo keeps no float32 master weights).
    if config.lora.enabled:
        trainable, trainable_bytes = shape.lora_parameters, 4  # peft: float32 adapters
        components["LoRA adapters"] = trainable * trainable_bytes
    else:
        trainable = shape.parameters - (shape.vision_parameters if model.freeze_vision_tower else 0)
        trainable_bytes = weight_bytes
        components["LoRA adapters"] = 0
    components["gradients"] = trainable * trainable_bytes
    components["AdamW states"] = 2 * trainable * trainable_bytes
    components["DDP gradient buckets"] = trainable * trainable_bytes if processes > 1 else 0

    # Activations of one micro-batch in the update.
    rows = batch.micro_batch_size
    tokens = rows * sequence
    if batch.max_tokens_per_micro_batch is not None:
        tokens = max(batch.max_tokens_per_micro_batch, sequence)
        rows = max(1, tokens // sequence)
    lora_inputs = shape.lora_input_features if config.lora.enabled else None
    per_layer = layer_activation_bytes(
        shape.hidden,
        shape.intermediate,
        shape.heads,
        shape.kv_heads,
        activation_bytes=e,
        lora_input_features=lora_inputs,
        adapter_input_bytes=e if config.training.precision != "no" else 4,
        eager_attention_tokens=sequence if eager else 0,
    )
    # The model is called with output_hidden_states=True (apo.models.logprobs): every
    # layer's output is kept (e h per token and layer); they are also what checkpointing
    # keeps. Plus the final norm (4h + e h).
    kept_outputs = shape.layers * e * shape.hidden + (4 + e) * shape.hidden
    without = tokens * (shape.layers * per_layer + kept_outputs)
    with_ = tokens * (per_layer + kept_outputs)
    # The vision encoder keeps activations when it trains, and also under LoRA with
    # gradient checkpointing: transformers then makes the input embeddings require
    # grad, the patch embeddings too, so the frozen encoder builds a graph and the
    # backward runs through it (seen on the tiny model).
    vision_trained = shape.vision_layers and (
        (not config.lora.enabled and not model.freeze_vision_tower)
        or (config.lora.enabled and model.gradient_checkpointing)
    )
    if vision_trained:
        vision_layer = layer_activation_bytes(
            shape.vision_hidden,
            shape.vision_intermediate,
            shape.vision_heads,
            shape.vision_heads,
            activation_bytes=e,
        )
        vision_patches = rows * patches
        without += vision_patches * shape.vision_layers * vision_layer
        with_ += vision_patches * (vision_layer + shape.vision_layers * e * shape.vision_hidden)
    mask = 0 if flash else rows * sequence * sequence * (e if eager else 1)
    # On top of what is stored: one layer's working memory while it runs (forward, or
    # its recomputation and backward), or the vision encoder's when it runs untrained
    # (LoRA, frozen tower) before the decoder layers.
    kv_fraction = shape.kv_heads / shape.heads
    working = forward_working_bytes(shape.hidden, shape.intermediate, kv_fraction, e)
    vision_working = forward_working_bytes(shape.vision_hidden, shape.vision_intermediate, 1.0, e)
    # output_hidden_states also makes the vision encoder record every block's output
    # (transformers' _can_record_outputs), kept until the forward returns.
    vision_recorded = patches * (shape.vision_layers + 1) * e * shape.vision_hidden
    transient = max(tokens * working, 0 if vision_trained else rows * patches * vision_working)
    if not vision_trained:
        transient += rows * vision_recorded
    activations = (with_ if model.gradient_checkpointing else without) + mask + transient
    components["activations (update micro-batch)"] = activations
    alternative = (without if model.gradient_checkpointing else with_) + mask + transient
    label = "without" if model.gradient_checkpointing else "with"
    components_alt = f"activations {label} gradient checkpointing"
    response_tokens = rows * rollout.max_new_tokens
    components["output-head chunk (update)"] = (
        min(batch.logprob_chunk_size, response_tokens) * shape.vocab * HEAD_BYTES_TRAIN
    )

    # The no-grad log-prob passes: all hidden states kept (output_hidden_states), one
    # layer's working memory, the mask and the head chunk.
    lp_rows = batch.logprob_batch_size or rows
    lp_tokens = lp_rows * sequence
    components["log-prob pass activations"] = (
        lp_tokens * ((shape.layers + 1) * e * shape.hidden + working)
        + lp_rows * vision_recorded
        + (0 if flash else lp_rows * sequence * sequence)
        + min(batch.logprob_chunk_size, lp_rows * rollout.max_new_tokens)
        * shape.vocab
        * HEAD_BYTES_NO_GRAD
    )
    log_prob_passes = config.algorithm.beta > 0 and kind != "none"
    off_policy = config.off_policy

    # The rollout: the KV cache of every row generating at once. Each call takes
    # rollout.max_batch_size prompts of this process's share; the native engine runs
    # the prefill on the distinct prompts and repeats their cache G times (greedy:
    # once); generate repeats the prompts before the prefill.
    per_process = math.ceil(batch.prompts_per_step / processes)
    prompts_at_once = min(rollout.max_batch_size, per_process)
    copies = 1 if rollout.temperature == 0 and rollout.engine == "native" else rollout.group_size
    gen_rows = prompts_at_once * copies
    prefill_rows = prompts_at_once if rollout.engine == "native" else gen_rows
    kv_per_token = 2 * shape.layers * shape.kv_heads * shape.head_dim * weight_bytes
    cache = gen_rows * sequence * kv_per_token
    if rollout.engine == "native" and copies > 1:  # the prefill's cache and its repeat
        cache = max(cache, (prefill_rows + gen_rows) * prompt * kv_per_token)
    components["KV cache (rollout)"] = cache
    prefill_mask = 0 if flash else prefill_rows * prompt * prompt
    components["prefill working memory"] = max(
        prefill_rows * prompt * working + prefill_mask,
        prefill_rows * patches * vision_working,
    )
    sampling = SAMPLING_BYTES + (TOP_P_BYTES if rollout.top_p < 1 else 0)
    components["sampling logits"] = gen_rows * shape.vocab * sampling
    components["CUDA context"] = CUDA_CONTEXT_BYTES

    persistent = [
        "CUDA context",
        "policy weights",
        "reference model",
        "LoRA adapters",
        "AdamW states",
        "DDP gradient buckets",
    ]
    phases = {
        "generation": [
            *persistent,
            "KV cache (rollout)",
            "prefill working memory",
            "sampling logits",
        ],
    }
    if log_prob_passes or off_policy:
        phases["log-prob passes"] = [*persistent, "log-prob pass activations"]
    else:
        notes.append("no log-prob pass: on-policy with beta = 0")
    phases["update"] = [
        *persistent,
        "gradients",
        "activations (update micro-batch)",
        "output-head chunk (update)",
    ]
    notes += [
        f"sequences of {prompt} prompt + {rollout.max_new_tokens} new tokens, "
        f"{images} of them image tokens ({patches} patches)",
        f"rollout: {prompts_at_once} prompts x {copies} = {gen_rows} rows at once "
        f"({rollout.engine} engine), update micro-batch {rows} rows",
        f"DDP over {processes} process(es): every process holds everything",
    ]
    return MemoryEstimate(
        components=components,
        phases=phases,
        notes=notes,
        alternatives={components_alt: alternative},
    )
