"""Files sent by reference: a row names the file (`FileRef`), its `UploadSource` gives a
file_id or the bytes at send time; rows never hold bytes."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any, Protocol

from aiogram import Bot
from aiogram.types import InputFile

UPLOAD_PARAM = "_upload"  # params key of a row's FileRef; never sent to Telegram


@dataclass(frozen=True)
class FileRef:
    """A file a row sends by reference (see the module docstring): rows hold this, never bytes.

    `source` names the `UploadSource` (`Sender.add_source`), `field` the method's file
    parameter (document, photo, …), `key` the file itself (rows with one key share one upload),
    `ref` is the source's own JSON (e.g. an item id). `refused` is a file_id Telegram refused
    for this row: the source must not answer with it again.
    """

    source: str
    field: str
    key: str
    ref: dict[str, Any] = dc_field(default_factory=dict)
    refused: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "source": self.source,
            "field": self.field,
            "key": self.key,
            "ref": self.ref,
        }
        if self.refused is not None:
            out["refused"] = self.refused
        return out

    @classmethod
    def of(cls, params: dict[str, Any]) -> FileRef | None:
        data = params.get(UPLOAD_PARAM)
        if not isinstance(data, dict):
            return None
        return cls(
            source=str(data["source"]),
            field=str(data["field"]),
            key=str(data["key"]),
            ref=dict(data.get("ref") or {}),
            refused=data.get("refused"),
        )


class SourceUnavailable(Exception):
    """An upload source cannot give the file (bytes missing or unreadable): the row fails with
    cause `source`; retrying would not bring the bytes back."""


class UploadSource(Protocol):
    """Where the bytes of rows sent by reference come from (registered per process)."""

    async def open(self, ref: dict[str, Any], *, refused: str | None) -> str | InputFile:
        """The file to send now: a Telegram file_id (not `refused`), or an InputFile that
        streams the bytes (open them lazily in `read`). Raise SourceUnavailable if neither."""
        ...

    async def uploaded(self, ref: dict[str, Any], file_id: str, file_unique_id: str | None) -> None:
        """An upload went through: keep Telegram's file_id so later rows send by it."""
        ...


class TrackedUpload(InputFile):
    """Wraps a source's InputFile to know whether its bytes were all handed to the connection
    (a timeout before that provably sent nothing) and whether reading them failed."""

    def __init__(self, inner: InputFile) -> None:
        super().__init__(filename=inner.filename, chunk_size=inner.chunk_size)
        self.inner = inner
        self.complete = False
        self.error: BaseException | None = None

    async def read(self, bot: Bot) -> Any:
        try:
            async for chunk in self.inner.read(bot):
                yield chunk
        except Exception as exc:
            self.error = exc
            raise
        self.complete = True
