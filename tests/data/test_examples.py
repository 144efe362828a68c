"""The example data shipped in examples/data stays valid and matches the README."""

from pathlib import Path

from apo.data import DataConfig, PromptDataset

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data"


def test_plain_example_loads_and_renders(tiny):
    dataset = PromptDataset.load(DataConfig(path=str(EXAMPLES / "plain.jsonl")), tiny.processor)
    assert [e.id for e in dataset.examples] == ["count-1", "mc-1", "two-images-1", "text-1"]
    assert [len(e.images) for e in dataset.examples] == [1, 1, 2, 0]
    assert dataset.examples[1].choices == ["circle", "square", "triangle"]
    assert dataset.examples[0].extra == {"category": "counting"}
    assert all(prompt.endswith("<|im_start|>assistant\n") for prompt in dataset.prompts)


def test_viewr1_example_loads(tiny):
    dataset = PromptDataset.load(DataConfig(path=str(EXAMPLES / "viewr1.jsonl")), tiny.processor)
    assert [e.answer for e in dataset.examples] == ["3", "B"]
    assert all(len(e.images) == 1 for e in dataset.examples)
