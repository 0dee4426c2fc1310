"""File-name sanitising: paths, control and invisible characters, device names, length."""

from __future__ import annotations

import pytest

from core.vault.names import (
    MAX_NAME_BYTES,
    MAX_NAME_CHARS,
    ascii_fallback,
    sanitize_name,
    split_extension,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\Desktop\\cv.docx", "cv.docx"),
        ("line\nbreak\ttab.txt", "line break tab.txt"),
        ("nul\x00byte\x07bell.txt", "nulbytebell.txt"),
        ("cv\u202efdp.exe", "cvfdp.exe"),  # right-to-left override would show "cvexe.pdf"
        ("\ufeffbom\u200b.txt", "bom.txt"),
        ('what?<>:"|*.txt', "what_______.txt"),
        ("  spaced   out  .txt", "spaced out.txt"),
        (".hidden", "hidden"),  # no hidden files
        ("trailing dots...", "trailing dots"),
        ("CON", "_CON"),
        ("con.txt", "_con.txt"),
        ("LPT1.tar.gz", "_LPT1.tar.gz"),
        ("console.txt", "console.txt"),
        ("Ünïcödé 報告.pdf", "Ünïcödé 報告.pdf"),
        ("e\u0301.txt", "\u00e9.txt"),  # NFC
        ("👨\u200d👩\u200d👧.png", "👨\u200d👩\u200d👧.png"),  # ZWJ kept for emoji
    ],
)
def test_sanitize(raw: str, expected: str) -> None:
    assert sanitize_name(raw) == expected


@pytest.mark.parametrize("raw", [None, "", "   ", "...", "/", "\\\\", "\x00\x01", "\u202e"])
def test_never_empty(raw: str | None) -> None:
    assert sanitize_name(raw) == "file"
    assert sanitize_name(raw, default_stem="photo_1", extension=".jpg") == "photo_1.jpg"


def test_extension_added_only_when_missing() -> None:
    assert sanitize_name("clip", extension=".mp4") == "clip.mp4"
    assert sanitize_name("clip.mov", extension=".mp4") == "clip.mov"
    assert sanitize_name("clip", extension="mp4") == "clip.mp4"
    assert sanitize_name("clip", extension="../x") == "clip"


def test_long_names_keep_their_extension() -> None:
    name = sanitize_name("a" * 1000 + ".pdf")
    assert name.endswith(".pdf") and len(name) == MAX_NAME_CHARS
    wide = sanitize_name("報" * 300 + ".jpeg")
    assert wide.endswith(".jpeg") and len(wide.encode()) <= MAX_NAME_BYTES


def test_split_extension() -> None:
    assert split_extension("a.tar.gz") == ("a.tar", ".gz")
    assert split_extension(".bashrc") == (".bashrc", "")
    assert split_extension("noext") == ("noext", "")
    assert split_extension("weird.ext-with-dash") == ("weird.ext-with-dash", "")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("résumé final.docx", "resume final.docx"),
        ("報告.pdf", "download.pdf"),
        ('a"b\\c.txt', "a_b_c.txt"),
        ("ﬁle.txt", "file.txt"),  # NFKD splits the ligature
        ("x;y=z.txt", "x_y_z.txt"),
    ],
)
def test_ascii_fallback(name: str, expected: str) -> None:
    assert ascii_fallback(name) == expected
    assert ascii_fallback(name).isascii()
