"""Data errors that say where: file, line or row, and field."""

from __future__ import annotations


class DataError(ValueError):
    """A problem with one record (or one file), with its location in the message.

    ``location`` is ``file:line`` for JSON lines and ``file[row]`` otherwise;
    ``field`` names the offending field when there is one; ``reason`` is a short
    machine-friendly category used to count skipped records.
    """

    def __init__(
        self, location: str, message: str, field: str | None = None, reason: str = "invalid"
    ):
        self.location = location
        self.field = field
        self.reason = reason
        self.detail = message
        where = f"{location}, field {field!r}" if field else location
        super().__init__(f"{where}: {message}")
