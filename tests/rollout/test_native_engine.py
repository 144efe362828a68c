"""The native decoding loop against transformers' ``generate``: same greedy tokens,
same sampling distribution, same processors; a fallback for what it cannot drive."""

import copy
import logging
from collections import Counter

import pytest
import torch
from transformers import (
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from apo.data.synthetic import make_split
from apo.demo.settings import start_model_path
from apo.demo.warmup import prompt_of
from apo.models import ModelConfig, load_model
from apo.rollout import NativeEngine, SamplingConfig, TransformersEngine
from apo.rollout.native_engine import next_token_logits, supports_native_decoding
from tests.helpers import chat_prompt, image
from tests.rollout.test_engines import _prompts


def _engines(model, loaded):
    args = (model, loaded.processor, loaded.tokenizer, loaded.is_multimodal)
    return TransformersEngine(*args), NativeEngine(*args)


def _greedy(engine, prompts, max_new_tokens=24, group_size=1):
    sampling = SamplingConfig(group_size=group_size, temperature=0.0, max_new_tokens=max_new_tokens)
    return [(r.response_ids, r.finish_reason) for r in engine.generate(prompts, sampling)]


@pytest.fixture(scope="module")
def start():
    """The demo's start model: trained, so its greedy answers are real answers of
    varying lengths (the random tiny model repeats one token for ever)."""
    torch.manual_seed(0)
    return load_model(ModelConfig(name_or_path=str(start_model_path())))


def _questions(loaded, count):
    rows = make_split("test", count, seed=5)
    # Left padding: a text-only question among the image ones is shorter.
    text_only = chat_prompt(loaded.processor, "How many circles are there?", [])
    return [prompt_of(row, loaded.processor) for row in rows] + [text_only]


def test_greedy_tokens_equal_generate(start):
    # Images (3D positions), left padding, and rows ending at different steps, so
    # that the native loop drops rows from its batch and cache mid-way: any slip in
    # positions, cache or masks changes greedy tokens.
    prompts = _questions(start, 15)
    generate, native = _engines(start.model, start)
    expected = _greedy(generate, prompts, max_new_tokens=96, group_size=2)
    assert len({len(ids) for ids, _ in expected}) > 5, "rows must end at different steps"
    assert "eos" in {reason for _, reason in expected}
    assert _greedy(native, prompts, max_new_tokens=96, group_size=2) == expected


@pytest.mark.slow
def test_sampled_tokens_follow_the_same_distribution_as_generate(tiny):
    # 2,400 two-token responses per engine, top-k 3: the frequency of each (first,
    # second) token pair agrees within 5 standard errors of a difference of two
    # frequencies (sd <= sqrt(2 * 0.25 / 2400) = 0.0144).
    prompts = [chat_prompt(tiny.processor, "How many circles?", [image()])] * 4
    sampling = SamplingConfig(group_size=600, max_new_tokens=2, top_k=3, temperature=0.7)
    counts = []
    for engine, seed in zip(_engines(tiny.model, tiny), (0, 1), strict=True):
        torch.manual_seed(seed)
        pairs = Counter(tuple(r.response_ids[:2]) for r in engine.generate(prompts, sampling))
        counts.append({pair: n / 2400 for pair, n in pairs.items()})
    pairs = set(counts[0]) | set(counts[1])
    assert 3 <= len(pairs) <= 9
    for pair in pairs:
        assert abs(counts[0].get(pair, 0) - counts[1].get(pair, 0)) < 5 * 0.0144, pair


@pytest.mark.parametrize(
    ("temperature", "top_k", "top_p"), [(1.0, 0, 1.0), (0.6, 5, 1.0), (1.3, 0, 0.8), (0.9, 7, 0.5)]
)
def test_sampling_processors_match_transformers(temperature, top_k, top_p):
    torch.manual_seed(0)
    logits = 3 * torch.randn(6, 50)
    sampling = SamplingConfig(temperature=temperature, top_k=top_k, top_p=top_p)
    warpers = LogitsProcessorList([TemperatureLogitsWarper(temperature)])
    if top_k:
        warpers.append(TopKLogitsWarper(top_k))
    if top_p < 1:
        warpers.append(TopPLogitsWarper(top_p))
    expected = warpers(torch.zeros(6, 1, dtype=torch.long), logits.clone()).softmax(-1)
    ours = next_token_logits(logits.clone(), sampling, [], []).softmax(-1)
    torch.testing.assert_close(ours, expected)


def test_suppressed_and_early_end_tokens_get_no_probability():
    logits = torch.zeros(2, 10)
    sampling = SamplingConfig(max_new_tokens=3, ignore_eos=True)
    probs = next_token_logits(logits, sampling, [4, 5], [9]).softmax(-1)
    assert probs[:, [4, 5, 9]].sum() == 0
    assert torch.allclose(probs.sum(-1), torch.ones(2))


def test_stop_strings_end_a_response(tiny):
    # Responses of the random model hold some character sooner or later; stopping on
    # it must end the response right there, with finish reason "stop".
    torch.manual_seed(0)
    _, native = _engines(tiny.model, tiny)
    free = native.generate(
        _prompts(tiny.processor), SamplingConfig(group_size=4, max_new_tokens=16)
    )
    stop = Counter(ch for r in free for ch in r.text if not ch.isspace()).most_common(1)[0][0]
    torch.manual_seed(0)
    sampling = SamplingConfig(group_size=4, max_new_tokens=16, stop_strings=[stop])
    stopped = native.generate(_prompts(tiny.processor), sampling)
    assert any(r.finish_reason == "stop" for r in stopped)
    for rollout in stopped:
        if rollout.finish_reason == "stop":
            assert rollout.text.endswith(stop)
            assert stop not in tiny.tokenizer.decode(rollout.response_ids[:-1])


def test_a_lora_policy_decodes_as_with_generate(start):
    from peft import LoraConfig, get_peft_model

    model = copy.deepcopy(start.model)
    policy = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    for module in policy.modules():  # non-zero adapters, so that they matter
        if hasattr(module, "lora_B"):
            for linear in module.lora_B.values():
                torch.nn.init.normal_(linear.weight, std=0.02)
    prompts = _questions(start, 6)
    generate, native = _engines(policy, start)
    expected = _greedy(generate, prompts, max_new_tokens=64)
    assert expected != _greedy(_engines(start.model, start)[0], prompts, max_new_tokens=64)
    assert _greedy(native, prompts, max_new_tokens=64) == expected


class _NoCacheArgument(torch.nn.Module):
    """A causal LM whose forward cannot take a KV cache."""

    def __init__(self, model):
        super().__init__()
        self.inner, self.config = model, model.config
        self.generation_config = model.generation_config

    def forward(self, input_ids, attention_mask=None):
        return self.inner(input_ids=input_ids, attention_mask=attention_mask)

    def generate(self, **kwargs):
        return self.inner.generate(**kwargs)


def test_models_it_cannot_drive_fall_back_to_generate(tiny, caplog):
    wrapped = _NoCacheArgument(tiny.model)
    assert "cache" in supports_native_decoding(wrapped)
    assert supports_native_decoding(tiny.model) is None
    prompts = _prompts(tiny.processor)
    _, native = _engines(wrapped, tiny)
    with caplog.at_level(logging.WARNING):
        fallback = _greedy(native, prompts)
    assert "using generate" in caplog.text
    assert fallback == _greedy(_engines(tiny.model, tiny)[0], prompts)
