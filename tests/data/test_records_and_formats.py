import base64
import io
import json

import pytest
from PIL import Image

from apo.data import DataConfig, DataError, PromptDataset, read_records
from apo.data.formats import parse_record
from tests.helpers import image


def png_bytes(width=32, height=32, colour=(0, 128, 255)) -> bytes:
    buffer = io.BytesIO()
    image(width, height, colour).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "images").mkdir()
    image(40, 30).save(tmp_path / "images" / "a.png")
    image(30, 40, (0, 255, 0)).save(tmp_path / "images" / "b.png")
    return tmp_path


PLAIN_ROWS = [
    {
        "id": "q1",
        "image": "images/a.png",
        "question": "How many?",
        "answer": "3",
        "category": "count",
    },
    {
        "id": "q2",
        "images": ["images/a.png", "images/b.png"],
        "question": "Which is bigger?",
        "answer": "B",
        "choices": ["left", "right"],
    },
    {"id": "q3", "question": "What is 2 + 2?", "answer": 4},
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def load(path, **kwargs):
    return PromptDataset.load(DataConfig(path=str(path), **kwargs))


def test_plain_format_from_jsonl(folder):
    dataset = load(write_jsonl(folder / "data.jsonl", PLAIN_ROWS))
    one, two, three = dataset.examples
    assert (one.id, one.question, one.answer, len(one.images)) == ("q1", "How many?", "3", 1)
    assert one.extra == {"category": "count"}
    assert one.location.endswith("data.jsonl:1")
    assert two.choices == ["left", "right"] and len(two.images) == 2
    assert three.images == [] and three.answer == "4"
    assert one.images[0].open().size == (40, 30)


def test_json_list_and_data_wrapper_give_the_same_examples(folder):
    (folder / "list.json").write_text(json.dumps(PLAIN_ROWS))
    (folder / "wrapped.json").write_text(json.dumps({"data": PLAIN_ROWS}))
    first, second = load(folder / "list.json"), load(folder / "wrapped.json")
    assert [e.id for e in first.examples] == [e.id for e in second.examples] == ["q1", "q2", "q3"]
    assert first.examples[1].location.endswith("list.json[1]")


def test_parquet_with_embedded_image_bytes(folder):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "question": ["How many?", "Colour?"],
            "answer": ["3", "green"],
            "image": [
                {"bytes": png_bytes(), "path": None},
                {"bytes": png_bytes(colour=(0, 255, 0)), "path": None},
            ],
        }
    )
    pq.write_table(table, folder / "data.parquet")
    dataset = load(folder / "data.parquet")
    assert [e.answer for e in dataset.examples] == ["3", "green"]
    assert dataset.examples[1].images[0].open().getpixel((0, 0)) == (0, 255, 0)
    assert dataset.examples[0].location.endswith("data.parquet[0]")


def test_datasets_folder_with_image_feature(folder):
    import datasets

    ds = datasets.Dataset.from_dict(
        {"question": ["How many?"], "answer": ["3"], "image": [str(folder / "images" / "a.png")]}
    ).cast_column("image", datasets.Image())
    datasets.DatasetDict({"train": ds, "test": ds}).save_to_disk(str(folder / "hf"))
    dataset = load(folder / "hf", split="test")
    assert dataset.examples[0].images[0].open().size == (40, 30)
    with pytest.raises(DataError, match="no split 'validation'"):
        load(folder / "hf", split="validation")


def test_viewr1_format_with_message_as_json_string(folder):
    message = [
        {"role": "system", "content": "Think first."},
        {
            "role": "user",
            "content": [
                {"type": "image", "image": "file://" + str(folder / "images" / "a.png")},
                {"type": "image", "image": "images/b.png"},
                {"type": "text", "text": "Which image is taller?"},
            ],
        },
    ]
    rows = [
        {"message": json.dumps(message), "answer": "the second"},
        {"message": message, "answer": "x"},
    ]
    dataset = load(write_jsonl(folder / "viewr1.jsonl", rows))
    first, second = dataset.examples
    assert first.question == "Which image is taller?"
    assert first.system_prompt == "Think first."
    assert [ref.open().size for ref in first.images] == [(40, 30), (30, 40)]
    assert second.question == first.question


@pytest.mark.parametrize("encoding", ["data_uri", "bare"])
def test_base64_images(folder, encoding):
    text = base64.b64encode(png_bytes(64, 64)).decode()
    value = f"data:image/png;base64,{text}" if encoding == "data_uri" else text
    rows = [{"question": "?", "answer": "1", "image": value}]
    assert load(write_jsonl(folder / "b64.jsonl", rows)).examples[0].images[0].open().size == (
        64,
        64,
    )


def test_pil_images_and_bytes_in_records(tmp_path):
    from apo.data.records import Record

    record = Record(
        "mem[0]", {"question": "?", "answer": "1", "images": [image(), png_bytes()]}, tmp_path
    )
    example = parse_record(record, 0)
    assert [ref.open().size for ref in example.images] == [(56, 56), (32, 32)]


def test_absolute_image_paths(folder):
    rows = [{"question": "?", "answer": "1", "image": str(folder / "images" / "a.png")}]
    elsewhere = folder / "sub"
    elsewhere.mkdir()
    assert load(write_jsonl(elsewhere / "d.jsonl", rows)).examples[0].images[0].path.is_absolute()


def test_rows_without_id_are_numbered(folder):
    dataset = load(write_jsonl(folder / "d.jsonl", [{"question": "a", "answer": "1"}] * 3))
    assert [e.id for e in dataset.examples] == ["0", "1", "2"]


def test_limit_reads_the_first_rows(folder):
    rows = [{"question": f"q{i}", "answer": "1"} for i in range(10)]
    assert len(load(write_jsonl(folder / "d.jsonl", rows), limit=4)) == 4


def test_several_files(folder):
    a = write_jsonl(folder / "a.jsonl", [{"id": "a", "question": "q", "answer": "1"}])
    b = write_jsonl(folder / "b.jsonl", [{"id": "b", "question": "q", "answer": "2"}])
    dataset = PromptDataset.load(DataConfig(path=[str(a), str(b)]))
    assert [e.id for e in dataset.examples] == ["a", "b"]


def test_read_records_yields_locations(folder):
    path = write_jsonl(folder / "d.jsonl", PLAIN_ROWS)
    assert [r.location for r in read_records(path)] == [f"{path}:{n}" for n in (1, 2, 3)]
    assert Image  # PIL is what images decode to
