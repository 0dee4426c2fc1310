"""File names that are safe to store, show and hand back in a Content-Disposition.

What arrives is whatever a sender's client put there: paths, control characters, bidi
overrides that flip `gpj.exe` into `exe.jpg`, Windows device names, thousands of characters.
"""

from __future__ import annotations

import re
import unicodedata

MAX_NAME_CHARS = 150
MAX_NAME_BYTES = 240  # UTF-8; under the 255-byte limit of common file systems
MAX_EXTENSION_CHARS = 16
DEFAULT_STEM = "file"

# Invisible characters that change how a name reads: bidi overrides/isolates, zero-width
# space and marks, BOM. (The zero-width joiner stays: emoji sequences need it.)
_INVISIBLE = dict.fromkeys(
    [0x061C, 0x200B, 0x200C, 0x200E, 0x200F, 0xFEFF, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
)
_FORBIDDEN = re.compile(r'[<>:"|?*\\/]')
_SPACES = re.compile(r"\s+")
_EXTENSION = re.compile(rf"\.[A-Za-z0-9]{{1,{MAX_EXTENSION_CHARS}}}$")
_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"COM{i}" for i in range(10)]
    + [f"LPT{i}" for i in range(10)]
)


def split_extension(name: str) -> tuple[str, str]:
    """`("report", ".pdf")`; an extension is a dot and 1–16 letters/digits at the end."""
    match = _EXTENSION.search(name)
    if match is None or match.start() == 0:
        return name, ""
    return name[: match.start()], match.group()


def clean_text(raw: str) -> str:
    """The name part of `raw` with control/invisible characters gone and spaces collapsed."""
    text = unicodedata.normalize("NFC", raw)
    text = re.split(r"[/\\]", text)[-1]  # last path component
    text = text.translate(_INVISIBLE)
    text = "".join(
        " " if ch.isspace() else ch
        for ch in text
        if unicodedata.category(ch) != "Cc" or ch.isspace()
    )
    text = _FORBIDDEN.sub("_", text)
    text = _SPACES.sub(" ", text)
    return text.strip(" .")  # no hidden files, no Windows-trailing dots


def sanitize_name(
    raw: str | None,
    *,
    default_stem: str = DEFAULT_STEM,
    extension: str | None = None,
    max_chars: int = MAX_NAME_CHARS,
) -> str:
    """A safe, never-empty file name.

    Keeps only the last path component, drops control and invisible characters, replaces
    characters Windows forbids, defuses device names (`CON` → `_CON`), and shortens long
    names while keeping their extension. `extension` (like `".jpg"`) is appended when the
    name has none, and used with `default_stem` when nothing usable is left.
    """
    name = clean_text(raw or "")
    stem, ext = split_extension(name)
    if not stem.strip(" ._-"):
        stem = default_stem
    if not ext and extension:
        ext = extension if extension.startswith(".") else f".{extension}"
        if not _EXTENSION.fullmatch(ext):
            ext = ""
    if stem.split(".")[0].strip().upper() in _RESERVED:
        stem = f"_{stem}"
    stem = _shorten(stem, max_chars - len(ext), MAX_NAME_BYTES - len(ext.encode()))
    return f"{stem}{ext}"


def _shorten(stem: str, max_chars: int, max_bytes: int) -> str:
    stem = stem[: max(1, max_chars)]
    while len(stem.encode()) > max_bytes and len(stem) > 1:
        stem = stem[:-1]
    # Never end on a lone combining mark or a space left by the cut.
    return stem.rstrip(" .") or DEFAULT_STEM


def ascii_fallback(name: str, *, default: str = "download") -> str:
    """An ASCII-only rendering for the plain `filename=` of a Content-Disposition."""
    stem, ext = split_extension(name)  # an extension is ASCII letters and digits already
    decomposed = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    ascii_stem = re.sub(r"[^A-Za-z0-9._ ()\[\]+-]", "_", decomposed)
    ascii_stem = _SPACES.sub(" ", ascii_stem).strip(" .")
    if not ascii_stem.strip("_ "):
        ascii_stem = default
    return f"{ascii_stem}{ext}"
