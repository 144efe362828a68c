"""Load, validate and serve prompts: everything is checked before training starts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from apo.data.config import DataConfig
from apo.data.errors import DataError
from apo.data.formats import Example, parse_record
from apo.data.images import check_image
from apo.data.prompts import PromptInput, prompt_input, render_prompt, uses_chat_template
from apo.data.records import read_records


@dataclass
class DataReport:
    """What loading found: rows read, kept, and dropped by reason."""

    rows: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    messages: list[str] = field(default_factory=list)

    def record(self, error: DataError) -> None:
        self.dropped[error.reason] += 1
        if len(self.messages) < 20:
            self.messages.append(str(error))

    def summary(self) -> str:
        text = f"{self.kept} of {self.rows} rows kept"
        if self.dropped:
            reasons = ", ".join(
                f"{count} {reason}" for reason, count in sorted(self.dropped.items())
            )
            text += f"; dropped: {reasons}"
        return text


def check_new_id(seen: dict[str, str], identifier: str, location: str) -> None:
    """DataError naming both rows when ``identifier`` was already seen (``seen`` maps
    ids to where they were first found; the caller records the new one)."""
    if identifier in seen:
        raise DataError(
            location,
            f"duplicate id {identifier!r} (first at {seen[identifier]})",
            "id",
            reason="duplicate_id",
        )


def _paths(config: DataConfig) -> list[str]:
    if config.path is None:
        raise ValueError("data.path is not set: give a data file or datasets folder")
    return [config.path] if isinstance(config.path, str) else list(config.path)


class PromptDataset:
    """Validated examples with their rendered prompts.

    Loading checks every row before returning: fields and types, every image
    (decoded once, within the pixel budget), duplicate ids, and, given a
    processor, the prompt length in tokens. With ``on_error='raise'`` the first
    problem raises a DataError naming file, row and field; with ``'skip'`` bad
    rows are dropped and counted in :attr:`report`.
    """

    def __init__(self, examples: list[Example], prompts: list[str], report: DataReport) -> None:
        self.examples = examples
        self.prompts = prompts
        self.report = report

    @classmethod
    def load(
        cls,
        config: DataConfig,
        processor: Any = None,
        is_multimodal: bool = True,
    ) -> PromptDataset:
        report = DataReport()
        examples: list[Example] = []
        prompts: list[str] = []
        seen: dict[str, str] = {}
        if processor is not None:
            uses_chat_template(processor, config.prompt)  # a format the model lacks: no row fits
        for path in _paths(config):
            for record in read_records(path, config.split):
                if config.limit is not None and report.rows >= config.limit:
                    break
                report.rows += 1
                try:
                    if record.error is not None:
                        raise record.error
                    example = parse_record(record, row_index=report.rows - 1)
                    check_new_id(seen, example.id, record.location)
                    images = [
                        check_image(
                            ref, record.location, f"images[{index}]", config.max_image_pixels
                        )
                        for index, ref in enumerate(example.images)
                    ]
                    text = cls._prompt(example, images, processor, config, is_multimodal)
                except DataError as error:
                    if config.on_error == "raise":
                        raise
                    report.record(error)
                    continue
                seen[example.id] = record.location
                examples.append(example)
                prompts.append(text)
        report.kept = len(examples)
        if not examples:
            detail = f" ({report.summary()})" if report.rows else ""
            raise DataError(
                ", ".join(_paths(config)), f"the dataset has no usable rows{detail}", reason="empty"
            )
        return cls(examples, prompts, report)

    @staticmethod
    def _prompt(
        example: Example, images: list[Any], processor: Any, config: DataConfig, is_multimodal: bool
    ) -> str:
        if processor is None:
            return ""
        try:
            text = render_prompt(example, processor, config.prompt, is_multimodal)
        except ValueError as error:  # e.g. images for a text-only model
            raise DataError(
                example.location,
                str(error).removeprefix(f"{example.location}: "),
                "images",
                reason="wrong_type",
            ) from None
        if config.max_prompt_length is not None:
            length = prompt_token_count(processor, text, images, is_multimodal)
            if length > config.max_prompt_length:
                raise DataError(
                    example.location,
                    f"the prompt is {length} tokens (images included), over data.max_prompt_length="
                    f"{config.max_prompt_length}",
                    "question",
                    reason="prompt_too_long",
                )
        return text

    def __len__(self) -> int:
        return len(self.examples)

    def prompt_inputs(self, indices: Sequence[int]) -> list[PromptInput]:
        """The engine inputs of these rows, images decoded now."""
        if not any(self.prompts):
            raise ValueError("prompts were not rendered: load the dataset with a processor")
        return [prompt_input(self.examples[i], self.prompts[i]) for i in indices]


def prompt_token_count(processor: Any, text: str, images: list[Any], is_multimodal: bool) -> int:
    """Tokens of the encoded prompt, including the image placeholder expansion."""
    if is_multimodal:
        encoded = processor(text=[text], images=images or None, return_tensors="pt")
    else:
        encoded = processor([text], return_tensors="pt", add_special_tokens=False)
    return int(encoded["input_ids"].shape[1])
