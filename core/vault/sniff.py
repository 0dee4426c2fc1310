"""Mime types from the first bytes of a file (magic numbers), with the declared type as fallback.

A small table, not libmagic: the vault needs the types people send through Telegram, and the
answer decides only the Content-Type of a download and the extension of a name.
"""

from __future__ import annotations

import re

SNIFF_BYTES = 512
"""How much of the start of a file `sniff_mime` looks at."""

OCTET_STREAM = "application/octet-stream"

_MIME = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")

# (offset, magic, mime) — checked in order, first match wins.
_SIMPLE: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"II*\x00", "image/tiff"),
    (0, b"MM\x00*", "image/tiff"),
    (0, b"%PDF-", "application/pdf"),
    (0, b"fLaC", "audio/flac"),
    (0, b"\x1f\x8b", "application/gzip"),
    (0, b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"),
    (0, b"Rar!\x1a\x07\x00", "application/vnd.rar"),
    (0, b"Rar!\x1a\x07\x01\x00", "application/vnd.rar"),
    (0, b"\xfd7zXZ\x00", "application/x-xz"),
    (0, b"BZh", "application/x-bzip2"),
    (0, b"\x28\xb5\x2f\xfd", "application/zstd"),
    (0, b"ID3", "audio/mpeg"),
)

_FTYP_BRANDS = {
    b"qt  ": "video/quicktime",
    b"M4A ": "audio/mp4",
    b"M4B ": "audio/mp4",
    b"M4P ": "audio/mp4",
    b"F4A ": "audio/mp4",
    b"heic": "image/heic",
    b"heix": "image/heic",
    b"mif1": "image/heif",
    b"avif": "image/avif",
    b"3gp4": "video/3gpp",
    b"3gp5": "video/3gpp",
    b"3g2a": "video/3gpp2",
}

_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")

EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "image/tiff": ".tif",
    "image/heic": ".heic",
    "image/heif": ".heif",
    "image/avif": ".avif",
    "video/mp4": ".mp4",
    "video/quicktime": ".mov",
    "video/webm": ".webm",
    "video/x-matroska": ".mkv",
    "video/x-msvideo": ".avi",
    "video/3gpp": ".3gp",
    "video/3gpp2": ".3g2",
    "video/ogg": ".ogv",
    "audio/mpeg": ".mp3",
    "audio/mp4": ".m4a",
    "audio/aac": ".aac",
    "audio/ogg": ".ogg",
    "audio/opus": ".opus",
    "audio/flac": ".flac",
    "audio/wav": ".wav",
    "application/pdf": ".pdf",
    "application/zip": ".zip",
    "application/epub+zip": ".epub",
    "application/gzip": ".gz",
    "application/x-7z-compressed": ".7z",
    "application/vnd.rar": ".rar",
    "application/x-xz": ".xz",
    "application/x-bzip2": ".bz2",
    "application/zstd": ".zst",
    "text/plain": ".txt",
}


def normalize_mime(declared: str | None) -> str | None:
    """`"Image/JPEG; charset=x"` → `"image/jpeg"`; None for anything that is not a mime type."""
    if not declared:
        return None
    base = declared.split(";", 1)[0].strip().lower()
    return base if _MIME.fullmatch(base) else None


def sniff_bytes(head: bytes) -> str | None:
    """The type the bytes say they are, or None when the table does not know them."""
    for offset, magic, mime in _SIMPLE:
        if head.startswith(magic, offset):
            return mime
    if head[:4] == b"RIFF" and len(head) >= 12:
        return {b"WEBP": "image/webp", b"WAVE": "audio/wav", b"AVI ": "video/x-msvideo"}.get(
            head[8:12]
        )
    if head[4:8] == b"ftyp":
        return _FTYP_BRANDS.get(head[8:12], "video/mp4")
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # EBML: Matroska or its WebM profile
        return "video/webm" if b"webm" in head[:64] else "video/x-matroska"
    if head.startswith(b"OggS"):
        # Opus and Vorbis both travel in Ogg; browsers and players want audio/ogg for either.
        return "video/ogg" if b"theora" in head[:64] else "audio/ogg"
    if head.startswith(_ZIP_MAGICS):
        if head[30:38] == b"mimetype" and b"application/epub+zip" in head[38:80]:
            return "application/epub+zip"
        return "application/zip"
    return _mpeg_audio(head)


def _mpeg_audio(head: bytes) -> str | None:
    """A raw MPEG audio stream: an ADTS (AAC) or MPEG-1/2 layer II/III frame header."""
    if len(head) < 4 or head[0] != 0xFF:
        return None
    b1, b2 = head[1], head[2]
    if b1 & 0xF6 == 0xF0:  # 12-bit sync, layer 00: ADTS
        return "audio/aac"
    version, layer = (b1 >> 3) & 3, (b1 >> 1) & 3
    # Layers III (01) and II (10) only: layer I (11) would also match a UTF-16 BOM (FF FE).
    frame_ok = b2 >> 4 not in (0, 15) and (b2 >> 2) & 3 != 3  # bitrate and rate valid
    if b1 & 0xE0 == 0xE0 and version != 1 and layer in (1, 2) and frame_ok:
        return "audio/mpeg"
    return None


def sniff_mime(head: bytes, declared: str | None = None) -> str:
    """The mime type of a file that starts with `head`.

    The bytes win over what the sender declared, with one exception: ZIP is the container
    of many formats (docx, xlsx, apk, …) that only the declared type tells apart, so a
    declared `application/…` type is kept for ZIP bytes. Without a
    match, the declared type (when it is a well-formed mime type), else octet-stream.
    """
    declared_mime = normalize_mime(declared)
    sniffed = sniff_bytes(head[:SNIFF_BYTES])
    if (
        sniffed == "application/zip"
        and declared_mime
        and declared_mime.startswith("application/")
        and declared_mime != OCTET_STREAM
    ):
        return declared_mime
    return sniffed or declared_mime or OCTET_STREAM


def extension_for(mime: str | None) -> str | None:
    """A conventional extension (with the dot) for `mime`, if the table has one."""
    return EXTENSIONS.get(normalize_mime(mime) or "")
