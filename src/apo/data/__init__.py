"""Data: reading files, the View-R1 and plain formats, images, prompts, validation, order.

The names load with their module on first use (:mod:`apo.lazy`): the settings
never import PIL, pyarrow or torch.
"""

from typing import TYPE_CHECKING

from apo.lazy import lazy_exports

if TYPE_CHECKING:
    from apo.data.config import DEFAULT_SYSTEM_PROMPT, DataConfig, PromptConfig
    from apo.data.dataset import DataReport, PromptDataset
    from apo.data.errors import DataError
    from apo.data.formats import Example, parse_record
    from apo.data.images import ImageRef, check_image, image_ref
    from apo.data.prompts import PromptInput, chat_messages, render_prompt
    from apo.data.records import Record, read_records
    from apo.data.sampler import ResumableSampler

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "apo.data.config": ["DEFAULT_SYSTEM_PROMPT", "DataConfig", "PromptConfig"],
        "apo.data.dataset": ["DataReport", "PromptDataset"],
        "apo.data.errors": ["DataError"],
        "apo.data.formats": ["Example", "parse_record"],
        "apo.data.images": ["ImageRef", "check_image", "image_ref"],
        "apo.data.prompts": ["PromptInput", "chat_messages", "render_prompt"],
        "apo.data.records": ["Record", "read_records"],
        "apo.data.sampler": ["ResumableSampler"],
    },
)

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
