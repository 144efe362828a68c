"""Each prompt run once for its responses (apo.models.prefix) against the full rows."""

import pytest
import torch

from apo.models import (
    LoraConfig,
    apply_lora,
    build_reference,
    build_sequence_batch,
    collate_prompts,
    encode_prompts,
    prefix,
    sequence_log_probs,
)
from apo.models.loading import enable_activation_checkpointing
from tests.helpers import chat_prompt, image, tiny_text_model

# Rows answer prompts 0, 1, 0, 2, 1, 2, 0, out of order, with responses of 1-5 tokens.
ROW_PROMPTS = [0, 1, 0, 2, 1, 2, 0]
RESPONSES = [[11, 12, 13, 14, 2], [21, 22], [31], [41, 42, 43], [51, 52, 53, 54, 55], [61], [7, 8]]


def _batch(processor, pad_id, prompts, is_multimodal=True):
    """The rows of ROW_PROMPTS as full rows, with the distinct prompts marked shared."""
    encoded = [
        encode_prompts(processor, [p.text], [p.images], is_multimodal)
        if is_multimodal
        else encode_prompts(processor, [p], [[]], False)
        for p in prompts
    ]
    rows = collate_prompts([encoded[i] for i in ROW_PROMPTS], pad_id)
    batch = build_sequence_batch(rows, RESPONSES, pad_id)
    batch.distinct_prompts = collate_prompts(encoded, pad_id)
    batch.prompt_index = torch.tensor(ROW_PROMPTS)
    return batch


def _vlm_batch(loaded):
    prompts = [
        chat_prompt(loaded.processor, "How many circles?", [image()]),
        chat_prompt(
            loaded.processor, "Compare the two pictures, then count.", [image(), image(84, 56)]
        ),
        chat_prompt(loaded.processor, "What is 2 + 3?", []),
    ]
    return _batch(loaded.processor, loaded.tokenizer.pad_token_id, prompts)


def _full(batch):
    """The same batch without its shared prompts: every row runs whole."""
    return type(batch)(batch.inputs, batch.response_ids, batch.response_mask, batch.prompt_length)


def _tokens_embedded(model, run):
    """How many token positions the model's input embedding looked up during ``run``."""
    counts = []
    embedding = model.get_input_embeddings()
    handle = embedding.register_forward_hook(lambda m, args, out: counts.append(args[0].numel()))
    try:
        run()
    finally:
        handle.remove()
    return sum(counts)


def test_shared_prompts_give_the_log_probs_of_the_full_rows_with_less_work(tiny):
    batch = _vlm_batch(tiny)
    model = tiny.model
    with torch.no_grad():
        full = sequence_log_probs(model, _full(batch), with_entropy=True)
        shared = sequence_log_probs(model, batch, with_entropy=True)
        full_tokens = _tokens_embedded(model, lambda: sequence_log_probs(model, _full(batch)))
        shared_tokens = _tokens_embedded(model, lambda: sequence_log_probs(model, batch))
    torch.testing.assert_close(shared.logp, full.logp, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(shared.entropy, full.entropy, atol=1e-5, rtol=1e-5)
    assert (shared.logp[~batch.response_mask] == 0).all()
    rows, width, p = len(ROW_PROMPTS), batch.response_ids.shape[1], batch.prompt_length
    assert full_tokens == rows * (p + width)
    # 3 prompts without their last token, then each row's last prompt token + response
    assert shared_tokens == 3 * (p - 1) + rows * width


def test_shared_prompts_give_the_gradients_of_the_full_rows(tiny):
    batch = _vlm_batch(tiny)
    model = tiny.model
    model.train()
    weights = torch.randn(batch.response_ids.shape, generator=torch.Generator().manual_seed(0))
    parameters = [p for p in model.parameters() if p.requires_grad]
    (sequence_log_probs(model, _full(batch)).logp * weights).sum().backward()
    full = [p.grad.clone() for p in parameters]
    model.zero_grad()
    (sequence_log_probs(model, batch).logp * weights).sum().backward()
    assert any(g.abs().sum() > 0 for g in full)
    for got, expected in zip([p.grad for p in parameters], full, strict=True):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_lora_policy_and_its_adapter_disabled_reference_share_prompts(tiny):
    model = apply_lora(tiny.model, LoraConfig(enabled=True, r=4, alpha=8))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)
    batch = _vlm_batch(tiny)
    reference = build_reference(model, "auto")
    with torch.no_grad():
        policy = sequence_log_probs(model, batch).logp
        torch.testing.assert_close(
            policy, sequence_log_probs(model, _full(batch)).logp, atol=1e-5, rtol=1e-5
        )
        ref = reference.log_probs(batch)
        torch.testing.assert_close(ref, reference.log_probs(_full(batch)), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(policy, ref)  # the adapters were on, then off


def test_text_only_model_shares_prompts(tiny_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_path)
    model = tiny_text_model(tokenizer)
    prompts = [
        "<|im_start|>user\nshort<|im_end|>\n",
        "<|im_start|>user\na longer question<|im_end|>\n",
        "<|im_start|>user\nthe longest question of the three<|im_end|>\n",
    ]
    batch = _batch(tokenizer, tokenizer.pad_token_id, prompts, is_multimodal=False)
    with torch.no_grad():
        shared = sequence_log_probs(model, batch).logp
        full = sequence_log_probs(model, _full(batch)).logp
    torch.testing.assert_close(shared, full, atol=1e-5, rtol=1e-5)


def test_gradient_checkpointing_keeps_full_rows_under_autograd(tiny):
    """transformers drops a checkpointed layer's cache: the update runs full rows, the
    no-grad passes still share."""
    model = tiny.model
    enable_activation_checkpointing(model)
    model.train()
    batch = _vlm_batch(tiny)
    assert "checkpointing" in prefix.shared_prompt_unsupported(model)
    tokens = _tokens_embedded(model, lambda: sequence_log_probs(model, batch).logp.sum().backward())
    assert tokens == len(ROW_PROMPTS) * (batch.prompt_length + batch.response_ids.shape[1])
    with torch.no_grad():
        assert prefix.shared_prompt_unsupported(model) is None
        shared = sequence_log_probs(model, batch).logp
        torch.testing.assert_close(
            shared, sequence_log_probs(model, _full(batch)).logp, atol=1e-5, rtol=1e-5
        )


def test_a_model_without_a_kv_cache_runs_full_rows(tiny):
    class NoCache(torch.nn.Module):
        """The tiny model behind a forward that takes no cache."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            self.config = inner.config

        def forward(self, input_ids, attention_mask=None, **kwargs):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

        def get_output_embeddings(self):
            return self.inner.get_output_embeddings()

    model = NoCache(tiny.model)
    batch = _vlm_batch(tiny)
    assert "cache" in prefix.shared_prompt_unsupported(model)
    with torch.no_grad():
        got = sequence_log_probs(model, batch).logp
        torch.testing.assert_close(got, sequence_log_probs(tiny.model, _full(batch)).logp)
    with pytest.raises(ValueError, match="no distinct prompts"):
        prefix.shared_prompt_hidden(tiny.model, _full(batch))
