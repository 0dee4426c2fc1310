"""Mime sniffing from magic numbers, and the declared type as fallback."""

from __future__ import annotations

import pytest

from core.vault.sniff import extension_for, normalize_mime, sniff_bytes, sniff_mime


def ftyp(brand: bytes) -> bytes:
    return b"\x00\x00\x00\x20ftyp" + brand + b"\x00\x00\x02\x00" + b"isom" * 4


@pytest.mark.parametrize(
    ("head", "mime"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "image/png"),
        (b"GIF89a\x01\x00", "image/gif"),
        (b"GIF87a\x01\x00", "image/gif"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "audio/wav"),
        (ftyp(b"isom"), "video/mp4"),
        (ftyp(b"mp42"), "video/mp4"),
        (ftyp(b"qt  "), "video/quicktime"),
        (ftyp(b"M4A "), "audio/mp4"),
        (ftyp(b"heic"), "image/heic"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", "video/webm"),
        (b"\x1a\x45\xdf\xa3\xa3\x42\x86\x81\x01\x42\x82\x88matroska", "video/x-matroska"),
        (b"ID3\x04\x00\x00\x00\x00\x00\x00", "audio/mpeg"),
        (b"\xff\xfb\x90\x64\x00", "audio/mpeg"),  # MPEG-1 layer III frame, no ID3 tag
        (b"\xff\xf1\x50\x80\x02", "audio/aac"),  # ADTS
        (b"OggS\x00\x02" + b"\x00" * 22 + b"OpusHead\x01\x02", "audio/ogg"),
        (b"OggS\x00\x02" + b"\x00" * 22 + b"\x01vorbis", "audio/ogg"),
        (b"fLaC\x00\x00\x00\x22", "audio/flac"),
        (b"%PDF-1.7\n%", "application/pdf"),
        (b"PK\x03\x04\x14\x00\x00\x00", "application/zip"),
        (b"\x1f\x8b\x08\x00", "application/gzip"),
        (b"7z\xbc\xaf\x27\x1c\x00\x04", "application/x-7z-compressed"),
        (b"Rar!\x1a\x07\x00\xcf", "application/vnd.rar"),
        (b"Rar!\x1a\x07\x01\x00\x33", "application/vnd.rar"),
    ],
)
def test_magic_numbers(head: bytes, mime: str) -> None:
    assert sniff_bytes(head) == mime
    # The bytes win over a wrong declaration.
    assert sniff_mime(head, "text/html") == mime


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"hello, world",
        b"\xff\xfeh\x00e\x00",  # UTF-16 LE BOM, not an MPEG frame
        b"\xff\xd8",  # too short for JPEG
        b"RIFF\x00\x00\x00\x00XXXX",
        b"\xff\xfb\xf0\x00",  # MP3 sync with the forbidden bitrate index 15
    ],
)
def test_unknown_bytes(head: bytes) -> None:
    assert sniff_bytes(head) is None


def test_fallbacks() -> None:
    assert sniff_mime(b"plain text", "Text/Plain; charset=utf-8") == "text/plain"
    assert sniff_mime(b"plain text", None) == "application/octet-stream"
    assert sniff_mime(b"plain text", "not a mime") == "application/octet-stream"
    assert sniff_mime(b"plain text", "a/b\r\nX-Evil: 1") == "application/octet-stream"


def test_zip_containers_keep_their_declared_type() -> None:
    docx = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    assert sniff_mime(b"PK\x03\x04\x14\x00", docx) == docx
    assert sniff_mime(b"PK\x03\x04\x14\x00", "application/octet-stream") == "application/zip"
    epub = b"PK\x03\x04" + b"\x00" * 26 + b"mimetypeapplication/epub+zip"
    assert sniff_bytes(epub) == "application/epub+zip"


def test_normalize_and_extensions() -> None:
    assert normalize_mime(" IMAGE/JPEG ") == "image/jpeg"
    assert normalize_mime("") is None
    assert extension_for("image/jpeg") == ".jpg"
    assert extension_for("video/quicktime; x=y") == ".mov"
    assert extension_for("application/x-unknown") is None
    assert extension_for(None) is None
