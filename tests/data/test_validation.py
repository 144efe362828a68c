"""Every bad input gets one clear error naming file, row and field; 'skip' counts it."""

import json
import re

import pytest

from apo.data import DataConfig, DataError, PromptDataset
from tests.data.test_records_and_formats import png_bytes, write_jsonl
from tests.helpers import image


@pytest.fixture
def folder(tmp_path):
    image(40, 30).save(tmp_path / "ok.png")
    (tmp_path / "truncated.png").write_bytes(png_bytes(64, 64)[:60])
    (tmp_path / "not_an_image.png").write_text("hello, I am text")
    (tmp_path / "empty.png").write_bytes(b"")
    image(300, 300).save(tmp_path / "big.png")
    return tmp_path


def load(path, **kwargs):
    return PromptDataset.load(DataConfig(path=str(path), **kwargs))


def expect_error(path, pattern, **kwargs):
    with pytest.raises(DataError, match=pattern) as info:
        load(path, **kwargs)
    return info.value


GOOD = {"question": "How many?", "answer": "3", "image": "ok.png"}


def test_malformed_json_line_names_the_line(folder):
    path = folder / "d.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + json.dumps(GOOD) + "\n{bad json\n")
    error = expect_error(path, re.escape(f"{path}:3: malformed JSON"))
    assert error.reason == "malformed_json"


def test_malformed_json_file_names_the_line(folder):
    path = folder / "d.json"
    path.write_text('[\n{"question": "a", "answer": "1"},\n{"question": }\n]')
    expect_error(path, re.escape(f"{path}:3: malformed JSON"))


def test_a_row_that_is_not_an_object(folder):
    path = folder / "d.jsonl"
    path.write_text('["a list"]\n')
    expect_error(path, re.escape(f"{path}:1: a row must be a JSON object"))


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        ({"question": "q"}, "answer", "missing required field"),
        ({"question": "q", "answer": ""}, "answer", "is empty"),
        ({"question": "q", "answer": ["3"]}, "answer", "must be a string or a number, got list"),
        ({"answer": "3"}, "question", "missing required field"),
        ({"question": 7, "answer": "3"}, "question", "must be a non-empty string"),
        ({"question": "q", "answer": "3", "choices": "A or B"}, "choices", "must be a list"),
        ({"question": "q", "answer": "3", "images": "ok.png"}, "images", "must be a list, got str"),
        ({"question": "q", "answer": "3", "id": [1]}, "id", "must be a string or an integer"),
        ({"question": "q", "answer": "3", "image": 5}, "image", "an image must be a path"),
        ({"message": "{not json", "answer": "3"}, "message", "holds malformed JSON"),
        (
            {"message": [{"role": "user", "content": 5}], "answer": "3"},
            "message[0].content",
            "content must be a string or a list",
        ),
        (
            {"message": [{"role": "user", "content": [{"type": "audio"}]}], "answer": "3"},
            "message[0].content[0]",
            "unsupported content type 'audio'",
        ),
        (
            {
                "message": [{"role": "user", "content": [{"type": "image", "image": "ok.png"}]}],
                "answer": "3",
            },
            "message",
            "has no user text",
        ),
    ],
)
def test_missing_and_wrong_fields_name_row_and_field(folder, row, field, message):
    path = write_jsonl(folder / "d.jsonl", [GOOD, row])
    expect_error(path, re.escape(f"{path}:2, field '{field}': {message}"))


@pytest.mark.parametrize(
    ("name", "message", "reason"),
    [
        ("missing.png", "image file not found", "missing_image"),
        ("truncated.png", "unreadable image", "bad_image"),
        ("not_an_image.png", "unreadable image", "bad_image"),
        ("empty.png", "unreadable image", "bad_image"),
    ],
)
def test_bad_images_name_the_file(folder, name, message, reason):
    path = write_jsonl(folder / "d.jsonl", [{**GOOD, "image": name}])
    error = expect_error(path, re.escape(f"{path}:1, field 'image") + ".*" + message)
    assert error.reason == reason


def test_image_over_the_pixel_budget(folder):
    path = write_jsonl(folder / "d.jsonl", [{**GOOD, "image": "big.png"}])
    error = expect_error(
        path, "300x300 = 90000 pixels, over the budget of 10000", max_image_pixels=10_000
    )
    assert error.reason == "image_too_large"


def test_decompression_bomb_is_refused(folder, monkeypatch):
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 300x300 is over 2x this: a "bomb"
    path = write_jsonl(folder / "d.jsonl", [{**GOOD, "image": "big.png"}])
    expect_error(path, "too many pixels to decode safely", max_image_pixels=None)


def test_duplicate_ids_name_both_rows(folder):
    path = write_jsonl(
        folder / "d.jsonl", [{**GOOD, "id": "a"}, {**GOOD, "id": "b"}, {**GOOD, "id": "a"}]
    )
    expect_error(path, re.escape(f"{path}:3, field 'id': duplicate id 'a' (first at {path}:1)"))


def test_empty_dataset(folder):
    path = folder / "d.jsonl"
    path.write_text("\n")
    expect_error(path, "the dataset has no usable rows")


def test_missing_file_and_unsupported_type(folder):
    expect_error(folder / "nope.jsonl", "no such file or folder")
    (folder / "d.csv").write_text("a,b\n")
    expect_error(folder / "d.csv", "unsupported file type '.csv'")


def test_data_path_must_be_set():
    with pytest.raises(ValueError, match=r"data\.path is not set"):
        PromptDataset.load(DataConfig())


def test_skip_drops_and_counts_bad_rows(folder):
    rows = [
        GOOD,
        {"question": "q"},
        {**GOOD, "image": "missing.png"},
        {**GOOD, "image": "truncated.png"},
        {**GOOD, "id": "x"},
        {**GOOD, "id": "x"},
        GOOD,
    ]
    path = write_jsonl(folder / "d.jsonl", rows)
    path.write_text(path.read_text() + "{oops\n" + json.dumps(GOOD) + "\n")
    dataset = load(path, on_error="skip")
    assert len(dataset) == 4
    assert dict(dataset.report.dropped) == {
        "missing_field": 1,
        "missing_image": 1,
        "bad_image": 1,
        "duplicate_id": 1,
        "malformed_json": 1,
    }
    assert dataset.report.summary() == (
        "4 of 9 rows kept; dropped: 1 bad_image, 1 duplicate_id, 1 malformed_json, "
        "1 missing_field, 1 missing_image"
    )
    assert any("d.jsonl:2, field 'answer'" in m for m in dataset.report.messages)


def test_skip_with_nothing_left_is_still_an_error(folder):
    path = write_jsonl(folder / "d.jsonl", [{"question": "q"}])
    expect_error(
        path, r"no usable rows \(0 of 1 rows kept; dropped: 1 missing_field\)", on_error="skip"
    )


def test_prompt_longer_than_the_limit(folder, tiny):
    rows = [GOOD, {**GOOD, "question": "How many? " * 200}]
    path = write_jsonl(folder / "d.jsonl", rows)
    with pytest.raises(DataError, match=re.escape(f"{path}:2, field 'question': the prompt is")):
        PromptDataset.load(DataConfig(path=str(path), max_prompt_length=300), tiny.processor)
    dataset = PromptDataset.load(
        DataConfig(path=str(path), max_prompt_length=300, on_error="skip"), tiny.processor
    )
    assert len(dataset) == 1 and dataset.report.dropped["prompt_too_long"] == 1


def test_images_for_a_text_only_model(folder, tiny):
    path = write_jsonl(folder / "d.jsonl", [GOOD])
    with pytest.raises(DataError, match="field 'images': this model is text-only"):
        PromptDataset.load(DataConfig(path=str(path)), tiny.tokenizer, is_multimodal=False)
