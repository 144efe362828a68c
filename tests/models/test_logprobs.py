import pytest
import torch

from apo.models import build_sequence_batch, encode_prompts, logprobs, sequence_log_probs
from tests.helpers import chat_prompt, image, tiny_text_model


def _batch(loaded):
    """Three prompts of different lengths: one image, two images, text only."""
    prompts = [
        chat_prompt(loaded.processor, "How many circles?", [image()]),
        chat_prompt(
            loaded.processor, "Compare the two pictures, then count.", [image(), image(84, 56)]
        ),
        chat_prompt(loaded.processor, "What is 2 + 3?", []),
    ]
    inputs = encode_prompts(
        loaded.processor, [p.text for p in prompts], [p.images for p in prompts], True
    )
    eos = loaded.tokenizer.eos_token_id
    responses = [[11, 12, 13, 14, eos], [21, 22], [31, 32, 33]]
    return build_sequence_batch(inputs, responses, loaded.tokenizer.pad_token_id)


def _naive(model, batch, temperature=1.0):
    """The straightforward computation: full logits, log_softmax, gather."""
    logits = model(**batch.inputs).logits.float() / temperature
    start, width = batch.prompt_length, batch.response_ids.shape[1]
    logits = logits[:, start - 1 : start - 1 + width]
    logp = torch.log_softmax(logits, -1).gather(-1, batch.response_ids[..., None]).squeeze(-1)
    probs = torch.softmax(logits, -1)
    entropy = -(probs * torch.log_softmax(logits, -1)).sum(-1)
    mask = batch.response_mask
    return logp * mask, entropy * mask


def test_sequence_batch_layout(tiny):
    batch = _batch(tiny)
    assert batch.response_mask.sum(-1).tolist() == [5, 2, 3]
    ids = batch.inputs["input_ids"]
    assert ids.shape[1] == batch.prompt_length + 5
    assert ids[0, batch.prompt_length :].tolist() == batch.response_ids[0].tolist()
    # prompts are left-padded: the shortest prompt (text only) starts with padding
    assert batch.inputs["attention_mask"][2, 0] == 0
    assert batch.inputs["attention_mask"][1, -3:].tolist() == [0, 0, 0]  # response padding
    assert batch.inputs["mm_token_type_ids"].shape == ids.shape


@pytest.mark.parametrize("chunk_size", [1, 3, 1024])
def test_chunked_log_probs_equal_the_naive_computation(tiny, chunk_size):
    batch = _batch(tiny)
    with torch.no_grad():
        result = sequence_log_probs(tiny.model, batch, chunk_size=chunk_size, with_entropy=True)
        logp, entropy = _naive(tiny.model, batch)
    torch.testing.assert_close(result.logp, logp, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(result.entropy, entropy, atol=1e-5, rtol=1e-5)
    assert (result.logp[~batch.response_mask] == 0).all()


def test_temperature_scales_the_logits(tiny):
    batch = _batch(tiny)
    with torch.no_grad():
        result = sequence_log_probs(tiny.model, batch, temperature=0.7)
        logp, _ = _naive(tiny.model, batch, temperature=0.7)
    torch.testing.assert_close(result.logp, logp, atol=1e-5, rtol=1e-5)


def test_chunked_gradients_equal_the_naive_gradients(tiny):
    batch = _batch(tiny)
    weights = torch.randn(batch.response_ids.shape, generator=torch.Generator().manual_seed(0))
    parameters = [p for p in tiny.model.parameters() if p.requires_grad]

    (sequence_log_probs(tiny.model, batch, chunk_size=2).logp * weights).sum().backward()
    chunked = [p.grad.clone() for p in parameters]
    tiny.model.zero_grad()
    (_naive(tiny.model, batch)[0] * weights).sum().backward()
    for got, expected in zip(chunked, [p.grad for p in parameters], strict=True):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_no_full_vocabulary_float32_tensor_for_the_batch(tiny, monkeypatch):
    """The output head only ever sees chunk_size tokens at a time."""
    batch = _batch(tiny)
    head = tiny.model.get_output_embeddings()
    in_forward, chunks = [], []
    handle = head.register_forward_hook(lambda module, args, out: in_forward.append(out.shape))
    apply_head = logprobs._head_logits

    def recording(head, hidden):
        chunks.append(hidden.shape[0])
        return apply_head(head, hidden)

    monkeypatch.setattr(logprobs, "_head_logits", recording)
    try:
        with torch.no_grad():
            sequence_log_probs(tiny.model, batch, chunk_size=4)
    finally:
        handle.remove()
    # The model's own forward computes logits for 1 position per row (logits_to_keep=1).
    assert [shape[:2] for shape in in_forward] == [(3, 1)]
    assert all(rows <= 4 for rows in chunks)
    assert sum(chunks) == int(batch.response_mask.sum())


def test_text_only_model(tmp_path, tiny_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_path)
    model = tiny_text_model(tokenizer)
    texts = [
        "<|im_start|>user\nshort<|im_end|>\n",
        "<|im_start|>user\na longer question<|im_end|>\n",
    ]
    inputs = encode_prompts(tokenizer, texts, [[], []], is_multimodal=False)
    batch = build_sequence_batch(inputs, [[5, 6], [7, 8, 9]], tokenizer.pad_token_id)
    with torch.no_grad():
        result = sequence_log_probs(model, batch, chunk_size=2)
        logp, _ = _naive(model, batch)
    torch.testing.assert_close(result.logp, logp, atol=1e-5, rtol=1e-5)


def test_bad_arguments_are_rejected(tiny):
    batch = _batch(tiny)
    with pytest.raises(ValueError, match="chunk_size"):
        sequence_log_probs(tiny.model, batch, chunk_size=0)
    with pytest.raises(ValueError, match="temperature"):
        sequence_log_probs(tiny.model, batch, temperature=0)


def test_text_prompts_with_images_are_rejected_for_text_models(tiny):
    with pytest.raises(ValueError, match="text-only"):
        encode_prompts(tiny.tokenizer, ["x"], [[image()]], is_multimodal=False)
