"""Data: reading files, the View-R1 and plain formats, images, prompts, validation, order."""

from apo.data.dataset import DataConfig, DataReport, PromptDataset
from apo.data.errors import DataError
from apo.data.formats import Example, parse_record
from apo.data.images import ImageRef, check_image, image_ref
from apo.data.prompts import (
    DEFAULT_SYSTEM_PROMPT,
    PromptConfig,
    PromptInput,
    chat_messages,
    render_prompt,
)
from apo.data.records import Record, read_records
from apo.data.sampler import ResumableSampler

__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "DataConfig",
    "DataError",
    "DataReport",
    "Example",
    "ImageRef",
    "PromptConfig",
    "PromptDataset",
    "PromptInput",
    "Record",
    "ResumableSampler",
    "chat_messages",
    "check_image",
    "image_ref",
    "parse_record",
    "read_records",
    "render_prompt",
]
