"""Images from paths, base64, bytes, ``datasets`` dicts or PIL images, loaded lazily.

A dataset keeps an :class:`ImageRef` per image (a path or the encoded bytes),
never the decoded pixels: decoding happens when a batch is built, so a large
dataset costs its file size in memory, not its pixel count.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from apo.data.errors import DataError

DATA_URI_PREFIX = "data:image"


@dataclass(frozen=True)
class ImageRef:
    """Where an image's bytes are: a file ``path``, encoded ``data``, or a PIL ``image``."""

    path: Path | None = None
    data: bytes | None = None
    image: Image.Image | None = None

    def describe(self) -> str:
        if self.path is not None:
            return str(self.path)
        if self.data is not None:
            return f"<{len(self.data)} encoded bytes>"
        return "<PIL image>"

    @contextmanager
    def header(self) -> Iterator[Image.Image]:
        """The image with only its header read: ``size`` is known, no pixel decoded yet."""
        if self.image is not None:
            yield self.image
            return
        source = self.path if self.path is not None else io.BytesIO(self.data or b"")
        with warnings.catch_warnings():
            # Pillow warns before it raises DecompressionBombError; we report the error.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as handle:
                yield handle

    def open(self) -> Image.Image:
        """The decoded RGB image; raises OSError/ValueError if it cannot be decoded."""
        with self.header() as handle:
            handle.load()
            return handle.convert("RGB")


def image_ref(value: Any, base_dir: Path, location: str, field: str) -> ImageRef:
    """Interpret one image value of a record; DataError if it cannot be one.

    Accepted: a path (absolute, relative to the data file, or ``file://``), a
    ``data:image/...;base64,`` URI or bare base64 text, raw bytes, a dict with
    ``bytes`` and/or ``path`` (the ``datasets`` Image encoding), or a PIL image.
    """
    if isinstance(value, Image.Image):
        return ImageRef(image=value)
    if isinstance(value, (bytes, bytearray)):
        if not value:
            raise DataError(location, "image bytes are empty", field, reason="bad_image")
        return ImageRef(data=bytes(value))
    if isinstance(value, dict):
        data, path = value.get("bytes"), value.get("path")
        # Types first: bytes(n) of a number n would allocate n bytes.
        if data is not None and not isinstance(data, (bytes, bytearray)):
            raise DataError(
                location,
                f"image 'bytes' must be raw bytes, got {type(data).__name__} (give base64 text "
                "as the image itself, or as a data:image/...;base64, URI)",
                field,
                reason="bad_image",
            )
        if path is not None and not isinstance(path, str):
            raise DataError(
                location,
                f"image 'path' must be a string, got {type(path).__name__}",
                field,
                reason="bad_image",
            )
        if data:
            return ImageRef(data=bytes(data))
        if path:
            return image_ref(path, base_dir, location, field)
        raise DataError(
            location, "image dict has neither 'bytes' nor 'path'", field, reason="bad_image"
        )
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise DataError(location, "image is an empty string", field, reason="bad_image")
        if text.startswith(DATA_URI_PREFIX):
            _, _, payload = text.partition(",")
            return ImageRef(data=_decode_base64(payload, location, field))
        if text.startswith("file://"):
            text = text[len("file://") :]
        path = Path(text)
        if not path.is_absolute():
            path = base_dir / path
        if _exists(path):
            return ImageRef(path=path)
        encoded = _bare_base64_image(text)
        if encoded is not None:
            return ImageRef(data=encoded)
        raise DataError(location, f"image file not found: {path}", field, reason="missing_image")
    raise DataError(
        location,
        f"an image must be a path, base64 text, bytes or a PIL image, got {type(value).__name__}",
        field,
        reason="bad_image",
    )


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):  # a name too long (base64 text) or holding a NUL byte
        return False


_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]+")
_IMAGE_SIGNATURES = (b"\x89PNG", b"\xff\xd8", b"GIF8", b"RIFF", b"BM", b"II*\x00", b"MM\x00*")


def _bare_base64_image(text: str) -> bytes | None:
    """The bytes of base64 text without a data: prefix, if it decodes to an image."""
    if len(text) < 32 or not _BASE64.fullmatch(text):
        return None
    try:
        data = base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError):
        return None
    return data if data.startswith(_IMAGE_SIGNATURES) else None


def _decode_base64(payload: str, location: str, field: str) -> bytes:
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise DataError(
            location,
            "image is neither an existing file nor valid base64",
            field,
            reason="bad_image",
        ) from None
    if not data:
        raise DataError(location, "base64 image decodes to no bytes", field, reason="bad_image")
    return data


def check_image(ref: ImageRef, location: str, field: str, max_pixels: int | None) -> Image.Image:
    """Decode the image to prove it is readable and within the pixel budget.

    The size is checked from the header, before any pixel is decoded. Returns
    the decoded RGB image; raises DataError naming the image otherwise.
    """
    try:
        with ref.header() as handle:
            _check_size(ref, handle.size, location, field, max_pixels)
            handle.load()
            return handle.convert("RGB")
    except DataError:
        raise
    except Image.DecompressionBombError:
        raise DataError(
            location,
            f"image {ref.describe()} has too many pixels to decode safely",
            field,
            reason="image_too_large",
        ) from None
    except (OSError, ValueError, SyntaxError) as error:
        raise DataError(
            location, f"unreadable image {ref.describe()}: {error}", field, reason="bad_image"
        ) from None


def _check_size(
    ref: ImageRef, size: tuple[int, int], location: str, field: str, max_pixels: int | None
) -> None:
    width, height = size
    if width == 0 or height == 0:
        raise DataError(
            location,
            f"image {ref.describe()} is empty ({width}x{height})",
            field,
            reason="bad_image",
        )
    if max_pixels is not None and width * height > max_pixels:
        raise DataError(
            location,
            f"image {ref.describe()} is {width}x{height} = {width * height} pixels, over the "
            f"budget of {max_pixels} (data.max_image_pixels); resize it or raise the budget",
            field,
            reason="image_too_large",
        )
