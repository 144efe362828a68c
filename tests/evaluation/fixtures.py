"""A few rows of each benchmark, written in its published layout, images generated.

Each writer returns the folder to pass as ``--benchmark NAME=FOLDER``; the rows
mirror the real files' columns and types (a struct ``{bytes, path}`` for an
embedded image, metadata structs, options stored as Python text for MMMU).
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image


def png(color: str = "red", size: int = 56) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="PNG")
    return buffer.getvalue()


def embedded(name: str, color: str = "red") -> dict:
    """The ``datasets`` Image encoding, as stored in parquet."""
    return {"bytes": png(color), "path": name}


def write_parquet(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def mathvista(root: Path) -> Path:
    def row(pid, question, answer, qtype, atype, choices=None, precision=None, skills=("ARI",)):
        return {
            "pid": pid,
            "question": question,
            "image": f"images/{pid}.jpg",
            "decoded_image": embedded(f"{pid}.jpg", "blue"),
            "choices": choices,
            "unit": None,
            "precision": precision,
            "answer": answer,
            "question_type": qtype,
            "answer_type": atype,
            "metadata": {
                "category": "math-targeted-vqa",
                "context": "geometry diagram",
                "grade": "high school",
                "img_height": 56,
                "img_width": 56,
                "language": "english",
                "skills": list(skills),
                "source": "Geometry3K",
                "split": "testmini",
                "task": "geometry problem solving" if choices else "figure question answering",
            },
            "query": f"Hint: ...\nQuestion: {question}",
        }

    rows = [
        row("1", "Find x.", "45", "multi_choice", "text", ["30", "45", "60", "90"], None, ["GEO"]),
        row("2", "How many bars are there?", "4", "free_form", "integer"),
        row("3", "What is the ratio?", "1.5", "free_form", "float", precision=1.0),
        row("4", "List the values.", "[1, 2, 3]", "free_form", "list", skills=["ALG", "STA"]),
    ]
    folder = root / "MathVista"
    write_parquet(folder / "data" / "testmini-00000-of-00001-abc.parquet", rows)
    return folder


def mathvista_json(root: Path) -> Path:
    """The GitHub release: testmini.json keyed by pid, images in a folder."""
    folder = root / "MathVista-json"
    (folder / "images").mkdir(parents=True)
    (folder / "images" / "1.jpg").write_bytes(png("green"))
    rows = {
        "1": {
            "question": "Is the shape green?",
            "image": "images/1.jpg",
            "choices": ["yes", "no"],
            "unit": None,
            "precision": None,
            "answer": "yes",
            "question_type": "multi_choice",
            "answer_type": "text",
            "pid": "1",
            "metadata": {"task": "visual question answering", "skills": ["LOG"]},
        }
    }
    (folder / "testmini.json").write_text(json.dumps(rows))
    return folder


def mathverse(root: Path) -> Path:
    folder = root / "MathVerse"
    (folder / "images").mkdir(parents=True)
    rows = []
    for index, (version, question, answer, qtype) in enumerate(
        [
            (
                "Text Dominant",
                "Find the angle.\nChoices:\nA:30°\nB:45°\nC:60°\nD:90°",
                "B",
                "multi-choice",
            ),
            ("Vision Only", "", "2\\sqrt{3}", "free-form"),
            ("Text Lite", "What is y when x = 2?", "\\frac{1}{2}", "free-form"),
        ],
        start=1,
    ):
        image = f"images/image_{index}.png"
        (folder / image).write_bytes(png("white"))
        rows.append(
            {
                "sample_index": str(index),
                "problem_index": "1",
                "problem_version": version,
                "question": question,
                "image": image,
                "answer": answer,
                "question_type": qtype,
                "metadata": {
                    "split": "testmini",
                    "source": "GeoQA",
                    "subject": "Plane Geometry" if index != 3 else "Functions",
                    "subfield": "Angle",
                },
                "query_wo": "According to the question shown in the image, answer it.",
                "query_cot": "...",
                "question_for_eval": question,
            }
        )
    (folder / "testmini.json").write_text(json.dumps(rows, indent=1))
    return folder


def mmk12(root: Path) -> Path:
    rows = [
        {
            "id": f"{subject}_{n}",
            "subject": subject,
            "image": embedded(f"{subject}_{n}.png"),
            "question": f"Which value is shown?\nA. {n}\nB. {n + 1}\nC. {n + 2}\nD. {n + 3}",
            "answer": "B",
        }
        for n, subject in enumerate(["math", "physics", "chemistry", "biology"], start=1)
    ]
    folder = root / "MMK12"
    write_parquet(folder / "data" / "test-00000-of-00001.parquet", rows)
    write_parquet(folder / "data" / "train-00000-of-00001.parquet", rows[:1])  # not read
    return folder


def mathvision(root: Path) -> Path:
    rows = [
        {
            "id": "1",
            "question": "<image1>\nWhich figure is next?",
            "options": ["A", "B", "C", "D", "E"],
            "image": "images/1.jpg",
            "decoded_image": embedded("1.jpg"),
            "answer": "C",
            "solution": None,
            "level": 2,
            "subject": "logic",
        },
        {
            "id": "2",
            "question": "<image1>\nWhat is the area of the square?",
            "options": [],
            "image": "images/2.jpg",
            "decoded_image": embedded("2.jpg"),
            "answer": "\\frac{9}{2}",
            "solution": None,
            "level": 4,
            "subject": "metric geometry - area",
        },
    ]
    folder = root / "MathVision"
    write_parquet(folder / "data" / "test-00000-of-00001.parquet", rows)
    write_parquet(folder / "data" / "testmini-00000-of-00001.parquet", rows[:1])
    return folder


def mmstar(root: Path) -> Path:
    rows = [
        {
            "index": n,
            "question": f"What color is the square?\nOptions: A: red, B: blue, C: green, D: {c}",
            "image": embedded(f"{n}.png"),
            "answer": "A",
            "category": category,
            "l2_category": l2,
            "meta_info": {"source": "SEEDBench_IMG", "split": "val", "image_path": f"{n}.png"},
        }
        for n, (c, category, l2) in enumerate(
            [
                ("white", "coarse perception", "image scene and topic"),
                ("black", "math", "numeric commonsense and calculation"),
            ]
        )
    ]
    folder = root / "MMStar"
    write_parquet(folder / "mmstar.parquet", rows)
    return folder


def mmstar_tsv(root: Path) -> Path:
    """VLMEvalKit's MMStar.tsv: base64 images, options in columns A-D."""
    folder = root / "MMStar-tsv"
    folder.mkdir(parents=True)
    image = base64.b64encode(png("red")).decode()
    header = "index\tquestion\tanswer\tcategory\tl2-category\tA\tB\tC\tD\timage\n"
    cells = ["7", "What color is it?", "A", "coarse perception", "image style"]
    line = "\t".join([*cells, "red", "blue", "green", "black", image]) + "\n"
    (folder / "MMStar.tsv").write_text(header + line)
    return folder


def mmmu(root: Path) -> Path:
    folder = root / "MMMU"

    def row(subject, n, question, options, answer, qtype, images):
        entry = {
            "id": f"validation_{subject}_{n}",
            "question": question,
            "options": str(options),
            "explanation": "",
            "img_type": "['Diagrams']",
            "answer": answer,
            "topic_difficulty": "Medium",
            "question_type": qtype,
            "subfield": "Calculus",
        }
        for k in range(1, 8):
            entry[f"image_{k}"] = embedded(f"{k}.png", images[k - 1]) if k <= len(images) else None
        return entry

    write_parquet(
        folder / "Math" / "validation-00000-of-00001.parquet",
        [
            row(
                "Math",
                1,
                "<image 1> shows f and <image 2> shows g. Which is larger at x = 1?",
                ["f", "g", "equal"],
                "B",
                "multiple-choice",
                ["red", "blue"],
            ),
            row(
                "Math",
                2,
                "Compute the limit in <image 1>.",
                [],
                "['0.5', '1/2']",
                "open",
                ["white"],
            ),
        ],
    )
    write_parquet(
        folder / "Art_Theory" / "validation-00000-of-00001.parquet",
        [
            row(
                "Art_Theory",
                1,
                "Which painting is older?",
                ["<image 1>", "<image 2>"],
                "A",
                "multiple-choice",
                ["yellow", "black"],
            )
        ],
    )
    return folder


def custom(root: Path) -> Path:
    folder = root / "custom"
    folder.mkdir(parents=True)
    (folder / "a.png").write_bytes(png("red"))
    rows = [
        {
            "id": "c1",
            "image": "a.png",
            "question": "What color?",
            "answer": "red",
            "category": "color",
        },
        {"id": "c2", "question": "2 + 2 = ?", "answer": "4", "category": "arithmetic"},
    ]
    (folder / "questions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder / "questions.jsonl"


WRITERS = {
    "mathvista": mathvista,
    "mathverse": mathverse,
    "mmk12": mmk12,
    "mathvision": mathvision,
    "mmstar": mmstar,
    "mmmu": mmmu,
    "custom": custom,
}
