import re

import pytest

from apo.data import (
    DEFAULT_SYSTEM_PROMPT,
    DataConfig,
    Example,
    PromptConfig,
    PromptDataset,
    chat_messages,
)
from apo.data.images import ImageRef
from apo.data.prompts import check_question_template, format_choices, render_prompt, user_text
from tests.data.test_records_and_formats import write_jsonl
from tests.helpers import image


def example(**kwargs):
    defaults = {"id": "1", "question": "Which angle?", "answer": "B"}
    return Example(**(defaults | kwargs))


def test_choices_are_lettered_after_the_question():
    text = user_text(example(choices=["30°", "45°"]), PromptConfig())
    assert text == "Which angle?\nChoices:\n(A) 30°\n(B) 45°"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("Answer briefly.", "no {question} placeholder"),
        ("{question} {options}", "unknown placeholder {options}"),
        ("{}: {question}", "unknown placeholder {}"),
        ("{question", "write a literal brace as {{ or }}"),
    ],
)
def test_a_template_must_place_the_question_and_name_known_placeholders(template, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        check_question_template(template)
    with pytest.raises(ValueError, match=re.escape(message)):
        PromptConfig(question_template=template)  # a training config is checked at load
    check_question_template("{{literal}} {question!r} {choices}")


def test_template_places_the_question_and_choices():
    config = PromptConfig(
        question_template="Q: {question}\nOptions: {choices}\nAnswer with a letter."
    )
    text = user_text(example(choices=["x", "y"]), config)
    assert text == "Q: Which angle?\nOptions: (A) x\n(B) y\nAnswer with a letter."


def test_too_many_choices():
    with pytest.raises(ValueError, match="at most 26 choices"):
        format_choices([str(i) for i in range(27)])


def test_messages_put_images_before_the_question():
    refs = [ImageRef(image=image()), ImageRef(image=image())]
    messages = chat_messages(example(images=refs), PromptConfig(), is_multimodal=True)
    assert messages[0] == {"role": "system", "content": DEFAULT_SYSTEM_PROMPT}
    assert [part["type"] for part in messages[1]["content"]] == ["image", "image", "text"]


def test_the_row_system_prompt_wins_and_none_removes_it():
    messages = chat_messages(example(system_prompt="Be brief."), PromptConfig(), is_multimodal=True)
    assert messages[0]["content"] == "Be brief."
    messages = chat_messages(example(), PromptConfig(system_prompt=None), is_multimodal=False)
    assert messages == [{"role": "user", "content": "Which angle?"}]


def test_dataset_renders_prompts_with_the_model_chat_template(tmp_path, tiny):
    image(40, 30).save(tmp_path / "a.png")
    rows = [{"question": "How many?", "answer": "3", "images": ["a.png", "a.png"]}]
    dataset = PromptDataset.load(
        DataConfig(path=str(write_jsonl(tmp_path / "d.jsonl", rows))), tiny.processor
    )
    prompt = dataset.prompts[0]
    assert prompt.startswith("<|im_start|>system\nA conversation between User and Assistant.")
    assert prompt.count("<|vision_start|><|image_pad|><|vision_end|>") == 2
    assert prompt.endswith("How many?<|im_end|>\n<|im_start|>assistant\n")
    [engine_input] = dataset.prompt_inputs([0])
    assert engine_input.text == prompt and [i.size for i in engine_input.images] == [(40, 30)] * 2


def test_prompt_inputs_need_rendered_prompts(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"question": "q", "answer": "1"}])
    dataset = PromptDataset.load(DataConfig(path=str(path)))
    with pytest.raises(ValueError, match="load the dataset with a processor"):
        dataset.prompt_inputs([0])


@pytest.fixture
def base_tokenizer(tiny_path):
    """A tokenizer as a base model ships it: no chat template, and an encoding that
    starts with its BOS token (Gemma, Llama)."""
    from tokenizers.processors import TemplateProcessing
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_path)
    tokenizer.chat_template = None
    tokenizer.add_special_tokens({"bos_token": "<bos>"})
    tokenizer._tokenizer.post_processor = TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", tokenizer.bos_token_id)]
    )
    return tokenizer


def plain(**kwargs):
    return PromptConfig(**({"format": "plain"} | kwargs))


def test_a_plain_prompt_is_bos_system_and_question_with_nothing_after(base_tokenizer):
    config = plain(system_prompt="Solve it.", question_template="Q: {question}\nA:")
    text = render_prompt(example(), base_tokenizer, config, is_multimodal=False)
    assert text == "<bos>Solve it.\n\nQ: Which angle?\nA:"
    ids = base_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids[0] == base_tokenizer.bos_token_id  # exactly one, as the tokenizer would add
    assert base_tokenizer.bos_token_id not in ids[1:]


def test_a_plain_prompt_has_no_bos_where_the_tokenizer_adds_none(tiny_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_path)  # Qwen-style: no BOS
    text = render_prompt(example(), tokenizer, plain(system_prompt=None), is_multimodal=False)
    assert text == "Which angle?"


def test_auto_uses_the_chat_template_where_there_is_one(base_tokenizer, tiny_path):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_path)
    chat = render_prompt(example(), processor, PromptConfig(), is_multimodal=True)
    assert chat.startswith("<|im_start|>system")
    text = render_prompt(example(), base_tokenizer, PromptConfig(), is_multimodal=False)
    assert text == f"<bos>{DEFAULT_SYSTEM_PROMPT}\n\nWhich angle?"


def test_chat_format_without_a_template_names_the_way_out(base_tokenizer):
    with pytest.raises(ValueError, match=r"no chat template .* use format plain"):
        render_prompt(example(), base_tokenizer, PromptConfig(format="chat"), False)


def test_a_plain_prompt_refuses_images(base_tokenizer):
    row = example(images=[ImageRef(image=image())])
    with pytest.raises(ValueError, match="plain prompts are text only"):
        render_prompt(row, base_tokenizer, plain(), is_multimodal=False)
