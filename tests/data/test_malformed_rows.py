"""Rows made to crash or exhaust the loader: each is one DataError naming file,
line and field with ``on_error: raise``, and one dropped, counted row with ``skip``."""

import base64
import io
import json
import re
import struct
import zlib

import pytest
from PIL import Image, ImageFile

from apo.data import DataConfig, DataError, PromptDataset, Record, parse_record
from tests.helpers import image

GOOD = {"question": "How many?", "answer": "3", "image": "ok.png"}


def user_turn(*parts):
    return [{"role": "user", "content": list(parts)}]


TEXT = {"type": "text", "text": "How many?"}

# (the second line of the file, the message's start after "d.jsonl:2", the reason)
BAD_LINES = {
    "image bytes as a huge number": (
        json.dumps({**GOOD, "image": {"bytes": 10**15}}),  # bytes(10**15) would allocate 1 PB
        ", field 'image': image 'bytes' must be raw bytes, got int",
        "bad_image",
    ),
    "image bytes as a string": (
        json.dumps({**GOOD, "image": {"bytes": "iVBORw0KGgo="}}),
        ", field 'image': image 'bytes' must be raw bytes, got str",
        "bad_image",
    ),
    "image path as an object": (
        json.dumps({**GOOD, "image": {"path": {"path": "ok.png"}}}),
        ", field 'image': image 'path' must be a string, got dict",
        "bad_image",
    ),
    "text part that is a number": (
        json.dumps({"message": user_turn({"type": "text", "text": 5}), "answer": "3"}),
        ", field 'message[0].content[0]': text part has no string 'text'",
        "wrong_type",
    ),
    "system text part that is a number": (
        json.dumps(
            {
                "message": [{"role": "system", "content": [{"text": 5}]}, *user_turn(TEXT)],
                "answer": "3",
            }
        ),
        ", field 'message[0].content': a system turn's content must be a string or a list of "
        "text parts",
        "wrong_type",
    ),
    "very deep JSON": (
        "[" * 100_000 + "]" * 100_000,
        ": malformed JSON: nested too deeply",
        "malformed_json",
    ),
    "very deep JSON in a field": (
        '{"question": "q", "answer": "3", "meta": ' + "[" * 100_000 + "]" * 100_000 + "}",
        ": malformed JSON: nested too deeply",
        "malformed_json",
    ),
    "very deep JSON in the message string": (
        json.dumps({"message": "[" * 100_000 + "]" * 100_000, "answer": "3"}),
        ", field 'message': holds malformed JSON: nested too deeply",
        "malformed_json",
    ),
    "deep field that reward workers cannot pickle": (
        json.dumps({**GOOD, "meta": json.loads("[" * 400 + "]" * 400)}),
        ", field 'meta': nests lists or objects more than 32 levels deep",
        "wrong_type",
    ),
    "integer of 5000 digits": (
        '{"question": "q", "answer": ' + "9" * 5000 + "}",
        ": malformed JSON: a number has too many digits",
        "malformed_json",
    ),
    "integer of 5000 digits in the message string": (
        json.dumps({"message": "[" + "9" * 5000 + "]", "answer": "3"}),
        ", field 'message': holds malformed JSON: a number has too many digits",
        "malformed_json",
    ),
    "answer NaN": (
        '{"question": "q", "answer": NaN}',
        ", field 'answer': must be a finite number, got nan",
        "wrong_type",
    ),
    "a field named like a reward argument": (
        json.dumps({**GOOD, "response": "B"}),
        ", field 'response': is the name of an argument of reward functions",
        "reserved_field",
    ),
    "View-R1 row with a question field": (
        json.dumps({"message": user_turn(TEXT), "answer": "3", "question": ["x"]}),
        ", field 'question': is the name of an argument of reward functions",
        "reserved_field",
    ),
    "View-R1 choices that are a string": (
        json.dumps({"message": user_turn(TEXT), "answer": "3", "choices": "A or B"}),
        ", field 'choices': must be a list of strings",
        "wrong_type",
    ),
    "choices that are booleans": (
        json.dumps({**GOOD, "choices": [True, False]}),
        ", field 'choices': must be a list of strings",
        "wrong_type",
    ),
    "more choices than letters": (
        json.dumps({**GOOD, "choices": [str(n) for n in range(27)]}),
        ", field 'choices': has 27 options; at most 26 (A-Z) are supported",
        "wrong_type",
    ),
}


@pytest.fixture
def folder(tmp_path):
    image(40, 30).save(tmp_path / "ok.png")
    return tmp_path


def write_lines(path, *lines):
    """A JSON lines file from text or raw bytes lines."""
    path.write_bytes(b"".join((x if isinstance(x, bytes) else x.encode()) + b"\n" for x in lines))
    return path


def load(path, **kwargs):
    return PromptDataset.load(DataConfig(path=str(path), **kwargs))


@pytest.mark.parametrize(("line", "message", "reason"), BAD_LINES.values(), ids=list(BAD_LINES))
def test_a_malformed_row_is_one_named_error(folder, line, message, reason):
    path = write_lines(folder / "d.jsonl", json.dumps(GOOD), line, json.dumps(GOOD))
    with pytest.raises(DataError, match=re.escape(f"{path}:2{message}")) as info:
        load(path)
    assert info.value.reason == reason


@pytest.mark.parametrize(("line", "message", "reason"), BAD_LINES.values(), ids=list(BAD_LINES))
def test_a_malformed_row_is_skipped_and_counted(folder, line, message, reason):
    path = write_lines(folder / "d.jsonl", json.dumps(GOOD), line, json.dumps(GOOD))
    dataset = load(path, on_error="skip")
    assert len(dataset) == 2 and dataset.report.rows == 3
    assert dataset.report.dropped == {reason: 1}
    assert dataset.report.messages[0].startswith(f"{path}:2{message}")


def test_a_line_that_is_not_utf8(folder):
    bad = b'{"question": "caf\xe9?", "answer": "3"}'  # Latin-1, not UTF-8
    path = write_lines(folder / "d.jsonl", json.dumps(GOOD), bad, json.dumps(GOOD))
    with pytest.raises(DataError, match=re.escape(f"{path}:2: not UTF-8 text: byte 0xe9")):
        load(path)
    dataset = load(path, on_error="skip")
    assert len(dataset) == 2 and dataset.report.summary() == "2 of 3 rows kept; dropped: 1 not_utf8"


def test_a_json_file_that_is_not_utf8_names_the_line(folder):
    path = folder / "d.json"
    path.write_bytes(
        b'[\n{"question": "a", "answer": "1"},\n{"question": "\xff", "answer": "1"}\n]'
    )
    with pytest.raises(DataError, match=re.escape(f"{path}:3: not UTF-8 text: byte 0xff")):
        load(path)


def test_a_json_file_nested_too_deeply(folder):
    path = folder / "d.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataError, match=re.escape(f"{path}: malformed JSON: nested too deeply")):
        load(path)


def test_a_tsv_row_that_is_not_utf8_is_skipped_and_the_next_rows_read(folder):
    path = folder / "d.tsv"
    path.write_bytes(b'question\tanswer\nq1\t1\nq\xff2\t2\n"q\n3"\t3\n')
    with pytest.raises(
        DataError, match=re.escape(f"{path}:3: not UTF-8 text: byte 0xff on line 3")
    ):
        load(path)
    dataset = load(path, on_error="skip")
    assert [e.question for e in dataset.examples] == ["q1", "q\n3"]
    assert dataset.report.dropped == {"not_utf8": 1}


def test_an_integer_too_long_to_convert_names_the_field(folder):
    """A reader other than JSON (a Python caller) may hand over such an integer."""
    record = Record("rows[0]", {"question": "q", "answer": 10**5000}, folder)
    with pytest.raises(DataError, match=re.escape("rows[0], field 'answer': is a number with too")):
        parse_record(record, row_index=0)


def test_view_r1_choices_are_read_and_checked(folder):
    row = {"message": user_turn(TEXT), "answer": "B", "choices": ["3", 4]}
    example = parse_record(Record("d.jsonl:1", row, folder), row_index=0)
    assert example.choices == ["3", "4"] and "choices" not in example.extra


def blank_png(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` 1-bit pixels, all black: a few KB on
    disk, 21 MB decoded, 500 MB as RGB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte, then the packed pixels
    pixels = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def test_an_image_over_the_budget_is_refused_before_decoding(folder, monkeypatch):
    (folder / "huge.png").write_bytes(blank_png(13_000, 13_000))
    decoded = []  # the size of every image whose pixels were decoded
    load_pixels = ImageFile.ImageFile.load

    def spy(self):
        decoded.append(self.size)
        return load_pixels(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    path = write_lines(
        folder / "d.jsonl", json.dumps(GOOD), json.dumps({**GOOD, "image": "huge.png"})
    )
    with pytest.raises(
        DataError, match="13000x13000 = 169000000 pixels, over the budget of 16777216"
    ):
        load(path)
    assert load(path, on_error="skip").report.dropped == {"image_too_large": 1}
    assert decoded and set(decoded) == {(40, 30)}  # only the good image was decoded


def test_long_bare_base64_text_is_an_image_not_a_path(folder):
    """Base64 longer than a file name may be (255 bytes) is read as the image."""
    buffer = io.BytesIO()
    Image.effect_noise((64, 64), 50).save(buffer, format="PNG")
    text = base64.b64encode(buffer.getvalue()).decode()
    assert len(text) > 1000
    path = write_lines(folder / "d.jsonl", json.dumps({**GOOD, "image": text}))
    [example] = load(path).examples
    assert example.images[0].open().size == (64, 64)
