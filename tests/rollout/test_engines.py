import pytest
import torch

from apo.rollout import Rollout, SamplingConfig, build_engine
from apo.rollout.transformers_engine import TransformersEngine
from tests.helpers import chat_prompt, image, tiny_text_model


@pytest.fixture(params=["transformers", "native"])
def engine(request, tiny):
    """Both engines keep every promise of the interface."""
    return build_engine(
        request.param, tiny.model, tiny.processor, tiny.tokenizer, tiny.is_multimodal
    )


def _prompts(processor):
    return [
        chat_prompt(processor, "How many circles?", [image()]),
        chat_prompt(
            processor,
            "Two pictures here, and a longer question than the others.",
            [image(), image(84, 56, (0, 0, 255))],
        ),
        chat_prompt(processor, "2 + 3?", []),
    ]


def test_groups_of_responses_come_back_in_prompt_order(engine, tiny):
    torch.manual_seed(0)
    rollouts = engine.generate(
        _prompts(tiny.processor), SamplingConfig(group_size=4, max_new_tokens=12)
    )
    assert len(rollouts) == 12
    assert [r.prompt_index for r in rollouts] == [0] * 4 + [1] * 4 + [2] * 4
    for rollout in rollouts:
        assert 1 <= rollout.length <= 12
        assert rollout.truncated == (rollout.finish_reason == "length")
        if rollout.truncated:
            assert rollout.length == 12
        assert rollout.text == tiny.tokenizer.decode(rollout.response_ids, skip_special_tokens=True)


def test_prompt_batches_keep_prompt_indices(engine, tiny):
    torch.manual_seed(0)
    rollouts = engine.generate(
        _prompts(tiny.processor), SamplingConfig(group_size=2, max_new_tokens=4, max_batch_size=1)
    )
    assert [r.prompt_index for r in rollouts] == [0, 0, 1, 1, 2, 2]


def test_greedy_decoding_is_deterministic(engine, tiny):
    sampling = SamplingConfig(group_size=2, max_new_tokens=8, temperature=0.0)
    first = engine.generate(_prompts(tiny.processor), sampling)
    second = engine.generate(_prompts(tiny.processor), sampling)
    assert [r.response_ids for r in first] == [r.response_ids for r in second]
    assert first[0].response_ids == first[1].response_ids  # greedy: the group is identical


def make_end_token_likeliest(tiny) -> int:
    """<|im_end|> becomes by far the likeliest token; returns its id."""
    eos = tiny.tokenizer.eos_token_id

    def favour_eos(module, args, logits):
        logits[..., eos] += 1e4
        return logits

    tiny.model.get_output_embeddings().register_forward_hook(favour_eos)
    return eos


def test_end_of_sequence_finishes_a_response(engine, tiny):
    eos = make_end_token_likeliest(tiny)  # responses end at once, EOS included
    rollouts = engine.generate(_prompts(tiny.processor), SamplingConfig(group_size=2))
    assert [(r.response_ids, r.finish_reason) for r in rollouts] == [([eos], "eos")] * 6
    assert not any(r.truncated for r in rollouts)


def test_ignore_eos_gives_every_response_the_full_length(engine, tiny):
    eos = make_end_token_likeliest(tiny)
    sampling = SamplingConfig(group_size=2, max_new_tokens=7, ignore_eos=True)
    rollouts = engine.generate(_prompts(tiny.processor), sampling)
    assert {(r.length, r.finish_reason) for r in rollouts} == {(7, "length")}
    assert not any(eos in r.response_ids for r in rollouts)


def test_training_mode_is_restored_after_generation(engine, tiny):
    tiny.model.train()
    engine.generate(_prompts(tiny.processor)[:1], SamplingConfig(group_size=1, max_new_tokens=2))
    assert tiny.model.training


def _cut(engine, tokens, stop_strings=()):
    sampling = SamplingConfig(group_size=1, stop_strings=list(stop_strings))
    eos = engine.tokenizer.eos_token_id
    return engine._cut(tokens, {eos}, sampling)


def test_cut_keeps_the_end_token_and_drops_padding(engine):
    eos, pad = engine.tokenizer.eos_token_id, engine.tokenizer.pad_token_id
    assert _cut(engine, [5, 6, eos, pad, pad]) == ([5, 6, eos], "eos")
    assert _cut(engine, [5, 6, 7]) == ([5, 6, 7], "length")


def test_cut_recognises_a_stop_string(engine):
    tokenizer, pad = engine.tokenizer, engine.tokenizer.pad_token_id
    tokens = tokenizer.encode("<answer>3</answer>")
    assert _cut(engine, [*tokens, pad, pad], ["</answer>"]) == (tokens, "stop")
    assert _cut(engine, [*tokens, pad], ["</think>"])[1] == "length"


def test_rollout_properties():
    rollout = Rollout(prompt_index=0, response_ids=[1, 2, 3], text="abc", finish_reason="length")
    assert rollout.length == 3 and rollout.truncated


def test_bad_sampling_settings_are_rejected():
    with pytest.raises(ValueError, match="group_size"):
        SamplingConfig(group_size=0)
    with pytest.raises(ValueError, match="top_p"):
        SamplingConfig(top_p=0.0)


def test_per_prompt_seeds_make_responses_independent_of_batching(engine, tiny):
    prompts = _prompts(tiny.processor)
    sampling = SamplingConfig(group_size=2, max_new_tokens=6)
    together = engine.generate(prompts, sampling, seeds=[11, 12, 13])
    alone = engine.generate(prompts[1:2], sampling, seeds=[12])
    assert [r.response_ids for r in together[2:4]] == [r.response_ids for r in alone]
    assert [r.prompt_index for r in together] == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="2 seeds for 3 prompts"):
        engine.generate(prompts, sampling, seeds=[1, 2])


def test_image_placeholder_tokens_are_never_generated(engine, tiny):
    # Even when the model strongly prefers <|image_pad|>, responses cannot contain it:
    # fed back for training, the model would look for image features it lacks.
    image_pad = tiny.model.config.image_token_id

    def favour_image_pad(module, args, logits):
        logits[..., image_pad] += 1e4
        return logits

    tiny.model.get_output_embeddings().register_forward_hook(favour_image_pad)
    rollouts = engine.generate(
        _prompts(tiny.processor), SamplingConfig(group_size=2, max_new_tokens=8)
    )
    banned = {image_pad, tiny.model.config.video_token_id, tiny.model.config.vision_start_token_id}
    assert not any(set(r.response_ids) & banned for r in rollouts)


def test_the_chat_templates_end_of_turn_ends_a_response(tiny_path):
    """Stops: the generation config's, the tokenizer's, and the template's end of turn,
    found by rendering a conversation (Gemma names only <eos> in its config)."""
    from transformers import AutoTokenizer

    from apo.rollout.transformers_engine import turn_end_token_ids

    tokenizer = AutoTokenizer.from_pretrained(tiny_path)
    assert turn_end_token_ids(tokenizer) == {tokenizer.convert_tokens_to_ids("<|im_end|>")}
    tokenizer.add_special_tokens({"additional_special_tokens": ["<end_of_turn>"]})
    tokenizer.chat_template = (
        "{% for m in messages %}<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}"
        "<end_of_turn>\n{% endfor %}"
    )
    turn_end = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    assert turn_end_token_ids(tokenizer) == {turn_end}
    engine = TransformersEngine(tiny_text_model(tokenizer), tokenizer, tokenizer, False)
    assert engine.end_ids(engine.model) == {tokenizer.eos_token_id, turn_end}
    tokenizer.chat_template = None
    assert turn_end_token_ids(tokenizer) == set()
