"""Each adapter reads its benchmark's published layout (fixtures written the same
way) into questions: ids, answers, options, images and categories."""

import json
import re

import pytest

from apo.data.errors import DataError
from apo.data.prompts import PromptConfig, chat_messages
from apo.evaluation.benchmarks import BENCHMARKS, get_benchmark
from tests.evaluation import fixtures


def load(name, path, split=None, limit=None):
    benchmark = get_benchmark(name)
    return benchmark.questions(path, split or benchmark.splits[0], limit)


@pytest.mark.parametrize("name", list(fixtures.WRITERS))
def test_every_question_has_an_answer_and_readable_images(tmp_path, name):
    questions = load(name, fixtures.WRITERS[name](tmp_path))
    assert questions and all(q.answer for q in questions)
    for question in questions:
        for image in question.images:
            assert image.open().size == (56, 56)
        fields = BENCHMARKS[name].category_fields
        assert set(question.categories) == set(fields)


def test_mathvista(tmp_path):
    first, integer, floating, listing = load("mathvista", fixtures.mathvista(tmp_path))
    assert (first.id, first.answer, first.choices) == ("1", "45", ["30", "45", "60", "90"])
    assert first.multiple_choice and first.categories["skill"] == ["GEO"]
    assert integer.answer_type == "integer" and "Answer with an integer." in integer.question
    assert floating.precision == 1 and "1 decimal place" in floating.question
    assert listing.categories["skill"] == ["ALG", "STA"]  # multi-label
    [from_json] = load("mathvista", fixtures.mathvista_json(tmp_path))
    assert from_json.id == "1" and from_json.choices == ["yes", "no"]
    assert from_json.images[0].open().getpixel((0, 0)) == (0, 128, 0)


def test_mathverse_options_are_read_from_the_question(tmp_path):
    choice, vision_only, free = load("mathverse", fixtures.mathverse(tmp_path))
    assert choice.choices == ["30°", "45°", "60°", "90°"] and not choice.show_choices
    assert vision_only.question.startswith("According to the question shown in the image")
    assert vision_only.categories["version"] == ["Vision Only"]
    assert not free.multiple_choice and free.categories["subject"] == ["Functions"]


def test_mmk12_reads_only_the_test_split(tmp_path):
    questions = load("mmk12", fixtures.mmk12(tmp_path))
    assert [q.categories["subject"] for q in questions] == [
        ["math"],
        ["physics"],
        ["chemistry"],
        ["biology"],
    ]
    assert questions[0].choices == ["1", "2", "3", "4"] and questions[0].multiple_choice


def test_mathvision_splits(tmp_path):
    folder = fixtures.mathvision(tmp_path)
    assert len(load("mathvision", folder)) == 2
    assert len(load("mathvision", folder, "testmini")) == 1
    with pytest.raises(ValueError, match="no split 'dev'; choose from test, testmini"):
        load("mathvision", folder, "dev")


def test_mmstar_parquet_and_tsv(tmp_path):
    first, _ = load("mmstar", fixtures.mmstar(tmp_path))
    assert first.choices == ["red", "blue", "green", "white"] and not first.show_choices
    [row] = load("mmstar", fixtures.mmstar_tsv(tmp_path))
    assert row.id == "7" and row.choices == ["red", "blue", "green", "black"]
    assert row.show_choices  # not in the question text: listed in the prompt
    assert row.categories["l2_category"] == ["image style"]


def test_mmmu_images_follow_their_placeholders(tmp_path):
    art, choice, open_question = load("mmmu", fixtures.mmmu(tmp_path))
    assert art.categories == {
        "discipline": ["Art & Design"],
        "subject": ["Art_Theory"],
        "difficulty": ["Medium"],
    }
    colours = [image.open().getpixel((0, 0)) for image in choice.images]
    assert colours == [(255, 0, 0), (0, 0, 255)]
    assert len(art.images) == 2  # placeholders in the options
    assert not open_question.multiple_choice and open_question.choices is None
    # The prompt puts each image where its placeholder is.
    [user] = chat_messages(choice.example(), PromptConfig(system_prompt=None), True)
    kinds = [part["type"] for part in user["content"]]
    assert kinds == ["image", "text", "image", "text"]
    assert user["content"][1]["text"] == " shows f and "


def test_custom_benchmark_uses_the_training_format(tmp_path):
    color, arithmetic = load("custom", fixtures.custom(tmp_path))
    assert color.categories == {"category": ["color"]} and len(color.images) == 1
    assert arithmetic.images == []


def test_limit(tmp_path):
    assert len(load("mmk12", fixtures.mmk12(tmp_path), limit=2)) == 2


def test_a_missing_field_names_file_row_and_field(tmp_path):
    folder = fixtures.mathverse(tmp_path)
    rows = json.loads((folder / "testmini.json").read_text())
    del rows[1]["answer"]
    (folder / "testmini.json").write_text(json.dumps(rows))
    with pytest.raises(DataError, match=r"testmini\.json\[1\], field 'answer': missing"):
        load("mathverse", folder)


def test_a_missing_image_names_the_row(tmp_path):
    folder = fixtures.mathverse(tmp_path)
    (folder / "images" / "image_2.png").unlink()
    with pytest.raises(DataError, match=r"testmini\.json\[1\], field 'image'"):
        load("mathverse", folder)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"choices": "red or blue"}, "field 'choices': must be a list of strings"),
        ({"image": {"bytes": 10**15}}, "field 'image': image 'bytes' must be raw bytes, got int"),
        ({"image": {"bytes": "iVBORw0KGgo="}}, "field 'image': image 'bytes' must be raw bytes"),
        ({"response": "red"}, "field 'response': is the name of an argument of reward functions"),
        ({"id": ["c1"]}, "field 'id': must be a string or an integer, got list"),
        ({"question": {"text": "What color?"}}, "field 'question': must be a non-empty string"),
    ],
    ids=["choices", "image-bytes-number", "image-bytes-text", "response", "id", "question"],
)
def test_custom_rows_of_the_wrong_type_name_file_line_and_field(tmp_path, change, message):
    path = fixtures.custom(tmp_path)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[1].update(change)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=re.escape(f"{path}:2, {message}")):
        load("custom", path)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("[" * 100_000 + "]" * 100_000, ": malformed JSON: nested too deeply"),
        ('{"question": "q", "answer": ' + "9" * 5000 + "}", ": malformed JSON: a number has"),
        (b'{"question": "\xff", "answer": "1"}', ": not UTF-8 text: byte 0xff at column 15"),
    ],
    ids=["deep", "long-number", "not-utf8"],
)
def test_unreadable_custom_lines_name_the_line(tmp_path, line, message):
    path = fixtures.custom(tmp_path)
    path.write_bytes(path.read_bytes() + (line if isinstance(line, bytes) else line.encode()))
    with pytest.raises(DataError, match=re.escape(f"{path}:3{message}")):
        load("custom", path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"precision": [1]}, "field 'precision': must be a whole number, got list"),
        ({"precision": "one"}, "field 'precision': must be a whole number, got 'one'"),
        ({"choices": 5}, "field 'choices': must be a list of strings"),
    ],
    ids=["precision-list", "precision-text", "choices"],
)
def test_mathvista_fields_of_the_wrong_type(tmp_path, change, message):
    folder = fixtures.mathvista_json(tmp_path)
    rows = json.loads((folder / "testmini.json").read_text())
    rows["1"].update(change)
    (folder / "testmini.json").write_text(json.dumps(rows))
    with pytest.raises(DataError, match=re.escape(f"testmini.json['1'], {message}")):
        load("mathvista", folder)


def test_a_folder_without_the_files_says_what_it_looked_for(tmp_path):
    with pytest.raises(DataError, match=r"no MMMU validation files here \(looked for"):
        load("mmmu", tmp_path)
    with pytest.raises(DataError, match="no such file or folder"):
        load("mmmu", tmp_path / "absent")


def test_unknown_benchmark():
    with pytest.raises(ValueError, match="unknown benchmark 'mmbench'; choose from mathvista"):
        get_benchmark("mmbench")
