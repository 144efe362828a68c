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
from apo.data.prompts import check_question_template, format_choices, user_text
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
