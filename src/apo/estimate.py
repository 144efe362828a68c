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

:func:`estimate_memory` adds up one function per quantity (:func:`model_state_bytes`,
:func:`saved_activation_bytes`, :func:`update_transient_bytes`,
:func:`log_prob_pass_bytes`, :func:`generation_bytes`, ...), each with its formula.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from apo.config import TrainConfig
from apo.models.config import resolve_reference_kind

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

# What every phase holds (once the first optimizer step has created AdamW's moments).
PERSISTENT = [
    "CUDA context",
    "policy weights",
    "reference model",
    "LoRA adapters",
    "AdamW states",
    "DDP gradient buckets",
]


@dataclass(frozen=True)
class Workload:
    """The sizes every phase's arithmetic reads: lengths and dtypes of one config."""

    prompt: int  # tokens of the longest prompt, image tokens included
    images: int  # language-model tokens of its images (0 without a vision encoder)
    patches: int  # vision-encoder patches of those images
    sequence: int  # prompt + rollout.max_new_tokens: every sequence at its worst case
    weight_bytes: int  # bytes per weight of model.dtype ('auto' is bf16)
    e: int  # bytes per activation: bf16 under mixed precision, else the weights'
    flash: bool  # flash attention: no attention mask is materialised
    eager: bool  # eager attention: the [a, s, s] softmax is kept


def workload(
    config: TrainConfig, shape: ModelShape, prompt_tokens: int | None, image_tokens: int | None
) -> Workload:
    """The :class:`Workload` of ``config``: the prompt is ``prompt_tokens`` (default
    ``data.max_prompt_length``), its images ``min(prompt, image_tokens)`` tokens (default
    the whole prompt), of ``patches_per_token`` patches each."""
    prompt = prompt_tokens or config.data.max_prompt_length
    if prompt is None:
        raise ValueError("data.max_prompt_length is None: give the longest prompt's tokens")
    images = min(prompt, image_tokens if image_tokens is not None else prompt)
    if not shape.vision_layers:
        images = 0
    weight_bytes = 2 if config.model.dtype == "auto" else DTYPE_BYTES[config.model.dtype]
    return Workload(
        prompt=prompt,
        images=images,
        patches=images * shape.patches_per_token,
        sequence=prompt + config.rollout.max_new_tokens,
        weight_bytes=weight_bytes,
        e=2 if config.training.precision != "no" else weight_bytes,
        flash=config.model.attn_implementation == "flash_attention_2",
        eager=config.model.attn_implementation == "eager",
    )


def reference_placement(config: TrainConfig) -> str:
    """Where the reference lives: the resolved ``reference.kind`` (``copy``,
    ``adapter_disabled``, ``none``), or ``elsewhere`` for a copy off the GPU."""
    kind = resolve_reference_kind(config.reference.kind, config.lora.enabled)
    device = config.reference.device
    if kind == "copy" and device not in (None, "cuda") and not str(device).startswith("cuda"):
        return "elsewhere"
    return kind


def model_state_bytes(
    config: TrainConfig, shape: ModelShape, w: Workload, reference: str, processes: int
) -> dict[str, int]:
    """Weights, the trainable parameters' gradients and optimizer state.

    With P parameters, T trainable ones of t bytes, w bytes per weight:

    - policy weights ``P w``; a reference copy on the GPU ``P x`` its dtype's bytes
      (``reference.dtype``, default w), else 0;
    - T, t: the adapters' parameters in float32 (peft) with LoRA, else P (less the
      vision encoder's when it is frozen) in the weights' dtype;
    - LoRA adapters ``T t`` (0 without LoRA), gradients ``T t``, AdamW's two moments
      ``2 T t`` (torch.optim.AdamW keeps them in the parameter's dtype; apo keeps no
      float32 master weights), DDP's gradient buckets ``T t`` with several processes.
    """
    reference_bytes = DTYPE_BYTES.get(config.reference.dtype or "", w.weight_bytes)
    if config.lora.enabled:
        trainable, trainable_bytes = shape.lora_parameters, 4  # peft: float32 adapters
    else:
        frozen = shape.vision_parameters if config.model.freeze_vision_tower else 0
        trainable, trainable_bytes = shape.parameters - frozen, w.weight_bytes
    state = trainable * trainable_bytes
    return {
        "policy weights": shape.parameters * w.weight_bytes,
        "reference model": shape.parameters * reference_bytes if reference == "copy" else 0,
        "LoRA adapters": state if config.lora.enabled else 0,
        "gradients": state,
        "AdamW states": 2 * state,
        "DDP gradient buckets": state if processes > 1 else 0,
    }


def update_micro_batch(config: TrainConfig, sequence: int) -> tuple[int, int]:
    """(rows, tokens) of one update micro-batch: ``batch.micro_batch_size`` rows of
    ``sequence`` tokens, or, with ``batch.max_tokens_per_micro_batch`` = m,
    ``max(m, sequence)`` tokens in ``max(1, tokens // sequence)`` rows."""
    rows = config.batch.micro_batch_size
    tokens = rows * sequence
    if config.batch.max_tokens_per_micro_batch is not None:
        tokens = max(config.batch.max_tokens_per_micro_batch, sequence)
        rows = max(1, tokens // sequence)
    return rows, tokens


def vision_encoder_trains(config: TrainConfig, shape: ModelShape) -> bool:
    """Whether the vision encoder keeps activations for the backward: when it trains,
    and also under LoRA with gradient checkpointing (transformers then makes the input
    embeddings require grad, the patch embeddings too, so the frozen encoder builds a
    graph and the backward runs through it; seen on the tiny model)."""
    lora, model = config.lora.enabled, config.model
    return bool(shape.vision_layers) and (
        (not lora and not model.freeze_vision_tower) or (lora and model.gradient_checkpointing)
    )


def layer_working_bytes(shape: ModelShape, e: int) -> int:
    """Per token: one decoder layer's working memory while it runs
    (:func:`forward_working_bytes` with the model's kv_heads / heads)."""
    return forward_working_bytes(shape.hidden, shape.intermediate, shape.kv_heads / shape.heads, e)


def vision_working_bytes(shape: ModelShape, e: int) -> int:
    """Per patch: one vision-encoder block's working memory (all heads are KV heads)."""
    return forward_working_bytes(shape.vision_hidden, shape.vision_intermediate, 1.0, e)


def vision_recorded_bytes(shape: ModelShape, w: Workload) -> int:
    """Per row: the vision encoder's block outputs recorded under
    ``output_hidden_states`` (transformers' ``_can_record_outputs``), kept until the
    forward returns: ``patches (vision_layers + 1) e vision_hidden``."""
    return w.patches * (shape.vision_layers + 1) * w.e * shape.vision_hidden


def saved_activation_bytes(
    config: TrainConfig, shape: ModelShape, w: Workload, rows: int, tokens: int
) -> tuple[int, int]:
    """Bytes one update micro-batch saves for the backward: (without gradient
    checkpointing, with it).

    Per token, L layers of :func:`layer_activation_bytes` each (a) plus what is kept
    anyway, k = ``L e h`` (every layer's output: the model is called with
    ``output_hidden_states``; also what checkpointing keeps) ``+ (4 + e) h`` (the final
    norm): without checkpointing ``tokens (L a + k)``, with it ``tokens (a + k)``.
    A vision encoder that trains (:func:`vision_encoder_trains`) adds, per patch of the
    ``rows`` prompts, ``L_v a_v`` without and ``a_v + L_v e h_v`` with checkpointing.
    """
    lora, e = config.lora.enabled, w.e
    per_layer = layer_activation_bytes(
        shape.hidden,
        shape.intermediate,
        shape.heads,
        shape.kv_heads,
        activation_bytes=e,
        lora_input_features=shape.lora_input_features if lora else None,
        adapter_input_bytes=e if config.training.precision != "no" else 4,
        eager_attention_tokens=w.sequence if w.eager else 0,
    )
    kept_outputs = shape.layers * e * shape.hidden + (4 + e) * shape.hidden
    without = tokens * (shape.layers * per_layer + kept_outputs)
    with_ = tokens * (per_layer + kept_outputs)
    if vision_encoder_trains(config, shape):
        vision_layer = layer_activation_bytes(
            shape.vision_hidden,
            shape.vision_intermediate,
            shape.vision_heads,
            shape.vision_heads,
            activation_bytes=e,
        )
        vision_patches = rows * w.patches
        without += vision_patches * shape.vision_layers * vision_layer
        with_ += vision_patches * (vision_layer + shape.vision_layers * e * shape.vision_hidden)
    return without, with_


def update_transient_bytes(
    config: TrainConfig, shape: ModelShape, w: Workload, rows: int, tokens: int
) -> int:
    """Bytes an update micro-batch holds on top of what it saves.

    The attention mask ``rows s^2`` (bool; e bytes each under eager attention; none
    with flash attention), and the larger of one decoder layer's working memory
    ``tokens x`` :func:`layer_working_bytes` (its forward, or its recomputation and
    backward) and, when the vision encoder runs untrained (LoRA, frozen tower) before
    the decoder layers, its working memory ``rows patches x``
    :func:`vision_working_bytes` and its recorded outputs
    (:func:`vision_recorded_bytes`, per row).
    """
    mask = 0 if w.flash else rows * w.sequence * w.sequence * (w.e if w.eager else 1)
    trains = vision_encoder_trains(config, shape)
    untrained_vision = 0 if trains else rows * w.patches * vision_working_bytes(shape, w.e)
    transient = max(tokens * layer_working_bytes(shape, w.e), untrained_vision)
    if not trains:
        transient += rows * vision_recorded_bytes(shape, w)
    return mask + transient


def output_head_bytes(chunk: int, response_tokens: int, vocab: int, per_entry: int) -> int:
    """One log-prob chunk of the output head: ``min(chunk, response tokens) x vocab x
    per_entry`` (:data:`HEAD_BYTES_TRAIN` or :data:`HEAD_BYTES_NO_GRAD`)."""
    return min(chunk, response_tokens) * vocab * per_entry


def log_prob_pass_bytes(config: TrainConfig, shape: ModelShape, w: Workload, rows: int) -> int:
    """Activations of one no-grad log-prob pass (reference, old log-probs) over
    r = ``batch.logprob_batch_size`` rows (default the update micro-batch's ``rows``).

    ``r s ((L + 1) e h + working)`` (every hidden state, kept by
    ``output_hidden_states``, and one layer's :func:`layer_working_bytes`)
    ``+ r x`` :func:`vision_recorded_bytes` ``+ r s^2`` (the mask; none with flash
    attention) + the no-grad output-head chunk over ``r x max_new_tokens`` tokens.
    """
    lp_rows = config.batch.logprob_batch_size or rows
    hidden_states = (shape.layers + 1) * w.e * shape.hidden + layer_working_bytes(shape, w.e)
    head = output_head_bytes(
        config.batch.logprob_chunk_size,
        lp_rows * config.rollout.max_new_tokens,
        shape.vocab,
        HEAD_BYTES_NO_GRAD,
    )
    return (
        lp_rows * w.sequence * hidden_states
        + lp_rows * vision_recorded_bytes(shape, w)
        + (0 if w.flash else lp_rows * w.sequence * w.sequence)
        + head
    )


@dataclass(frozen=True)
class RolloutRows:
    """How many rows one generation call runs at once."""

    prompts: int  # rollout.max_batch_size prompts of this process's share, at most
    copies: int  # responses per prompt: G, or 1 for the native engine's greedy decoding
    rows: int  # prompts x copies: the rows decoding together
    prefill_rows: int  # the native engine prefills each distinct prompt once; generate all rows


def rollout_rows(config: TrainConfig, processes: int) -> RolloutRows:
    """The :class:`RolloutRows` of one generation call on one of ``processes``: each
    takes ``min(rollout.max_batch_size, ceil(prompts_per_step / processes))`` prompts;
    the native engine runs the prefill on the distinct prompts and repeats their cache
    G times (greedy: once), generate repeats the prompts before the prefill."""
    rollout = config.rollout
    per_process = math.ceil(config.batch.prompts_per_step / processes)
    prompts = min(rollout.max_batch_size, per_process)
    native = rollout.engine == "native"
    copies = 1 if rollout.temperature == 0 and native else rollout.group_size
    return RolloutRows(prompts, copies, prompts * copies, prompts if native else prompts * copies)


def generation_bytes(
    config: TrainConfig, shape: ModelShape, w: Workload, gen: RolloutRows
) -> dict[str, int]:
    """The rollout's own memory, with K = ``2 L kv_heads head_dim w`` bytes of KV cache
    per token:

    - KV cache: ``rows s K`` for every row generating at once; with the native engine
      and several copies, at least ``(prefill rows + rows) prompt K`` (the prefill's
      cache and its repeat, held together);
    - prefill working memory: the larger of one layer's
      ``prefill rows x prompt x`` :func:`layer_working_bytes` plus the mask
      ``prefill rows x prompt^2`` (none with flash attention), and the vision encoder's
      ``prefill rows x patches x`` :func:`vision_working_bytes`;
    - sampling logits: ``rows x vocab x`` (:data:`SAMPLING_BYTES`, plus
      :data:`TOP_P_BYTES` with top-p < 1) for one decoding step.
    """
    rollout = config.rollout
    kv_per_token = 2 * shape.layers * shape.kv_heads * shape.head_dim * w.weight_bytes
    cache = gen.rows * w.sequence * kv_per_token
    if rollout.engine == "native" and gen.copies > 1:
        cache = max(cache, (gen.prefill_rows + gen.rows) * w.prompt * kv_per_token)
    prefill_mask = 0 if w.flash else gen.prefill_rows * w.prompt * w.prompt
    prefill = max(
        gen.prefill_rows * w.prompt * layer_working_bytes(shape, w.e) + prefill_mask,
        gen.prefill_rows * w.patches * vision_working_bytes(shape, w.e),
    )
    sampling = SAMPLING_BYTES + (TOP_P_BYTES if rollout.top_p < 1 else 0)
    return {
        "KV cache (rollout)": cache,
        "prefill working memory": prefill,
        "sampling logits": gen.rows * shape.vocab * sampling,
    }


def phase_components(log_prob_passes: bool) -> dict[str, list[str]]:
    """The components each phase of a step holds: :data:`PERSISTENT` and its own."""
    held = {
        "generation": [
            *PERSISTENT,
            "KV cache (rollout)",
            "prefill working memory",
            "sampling logits",
        ]
    }
    if log_prob_passes:
        held["log-prob passes"] = [*PERSISTENT, "log-prob pass activations"]
    held["update"] = [
        *PERSISTENT,
        "gradients",
        "activations (update micro-batch)",
        "output-head chunk (update)",
    ]
    return held


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
    rollout, batch = config.rollout, config.batch
    w = workload(config, shape, prompt_tokens, image_tokens)
    notes: list[str] = []
    reference = reference_placement(config)
    if reference == "elsewhere":
        notes.append(f"reference copy on {config.reference.device}: not on the GPU")
    components = model_state_bytes(config, shape, w, reference, processes)

    rows, tokens = update_micro_batch(config, w.sequence)
    without, with_ = saved_activation_bytes(config, shape, w, rows, tokens)
    transient = update_transient_bytes(config, shape, w, rows, tokens)
    checkpointing = config.model.gradient_checkpointing
    saved, other_choice = (with_, without) if checkpointing else (without, with_)
    components["activations (update micro-batch)"] = saved + transient
    components["output-head chunk (update)"] = output_head_bytes(
        batch.logprob_chunk_size, rows * rollout.max_new_tokens, shape.vocab, HEAD_BYTES_TRAIN
    )
    other = f"activations {'without' if checkpointing else 'with'} gradient checkpointing"
    alternatives = {other: other_choice + transient}

    components["log-prob pass activations"] = log_prob_pass_bytes(config, shape, w, rows)
    gen = rollout_rows(config, processes)
    components |= generation_bytes(config, shape, w, gen)
    components["CUDA context"] = CUDA_CONTEXT_BYTES

    log_prob_passes = (config.algorithm.beta > 0 and reference != "none") or config.off_policy
    if not log_prob_passes:
        notes.append("no log-prob pass: on-policy with beta = 0")
    notes += [
        f"sequences of {w.prompt} prompt + {rollout.max_new_tokens} new tokens, "
        f"{w.images} of them image tokens ({w.patches} patches)",
        f"rollout: {gen.prompts} prompts x {gen.copies} = {gen.rows} rows at once "
        f"({rollout.engine} engine), update micro-batch {rows} rows",
        f"DDP over {processes} process(es): every process holds everything",
    ]
    return MemoryEstimate(components, phase_components(log_prob_passes), notes, alternatives)
