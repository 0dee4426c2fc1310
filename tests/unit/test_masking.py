"""One masking function for every URL that is shown or logged (core/masking.py)."""

from __future__ import annotations

import logging

import pytest

from bot.logs import RedactingFilter
from core.masking import MASK, mask_urls


@pytest.mark.parametrize(
    ("url", "shown", "secret"),
    [
        ("s3://user:pass@bucket/prefix", f"s3://user:{MASK}@bucket/prefix", "pass"),
        ("http://minio:S3passw0rd@minio:9000", f"http://minio:{MASK}@minio:9000", "S3passw0rd"),
        (
            "https://uploader:Up%40load!@media.example.com/upload",
            f"https://uploader:{MASK}@media.example.com/upload",
            "Up%40load!",
        ),
        (
            "postgresql+asyncpg://u:p@db:5432/opsdeck",
            f"postgresql+asyncpg://u:{MASK}@db:5432/opsdeck",
            "u:p@",
        ),
        # a password with "@" in it: masked up to the host
        ("postgresql://ops:p@ss@db/x", f"postgresql://ops:{MASK}@db/x", "p@ss"),
        # userinfo without a colon is a token
        ("https://ghp_abcdef123456@example.com/x", f"https://{MASK}@example.com/x", "ghp_"),
        ("https://h/x?token=abc123&page=2", f"https://h/x?token={MASK}&page=2", "abc123"),
        (
            "https://b.s3.amazonaws.com/k?X-Amz-Signature=deadbeef",
            f"https://b.s3.amazonaws.com/k?X-Amz-Signature={MASK}",
            "deadbeef",
        ),
    ],
)
def test_passwords_inside_urls_are_masked(url: str, shown: str, secret: str) -> None:
    assert mask_urls(url) == shown
    assert secret not in mask_urls(url)


@pytest.mark.parametrize(
    "text",
    [
        "https://api.telegram.org",
        "sqlite+aiosqlite:////data/opsdeck.db",
        "s3://opsdeck-vault/vault",
        "write to ops@example.com about http://host:8080/path?page=2",
        "",
    ],
)
def test_text_without_credentials_is_unchanged(text: str) -> None:
    assert mask_urls(text) == text


def test_urls_inside_free_text_are_masked() -> None:
    text = (
        "upload failed: POST http://minio:S3passw0rd@minio:9000/x (503); "
        "then postgresql+asyncpg://u:p@db/opsdeck refused"
    )
    masked = mask_urls(text)
    assert "S3passw0rd" not in masked and "u:p@" not in masked
    assert "http://minio:" in masked and "(503)" in masked


def test_log_records_have_url_passwords_masked() -> None:
    record = logging.LogRecord(
        "t", logging.ERROR, __file__, 1, "cannot reach %s", ("s3://key:SeCrEt@bucket/p",), None
    )
    RedactingFilter().filter(record)
    assert "SeCrEt" not in record.getMessage()
    assert f"s3://key:{MASK}@bucket/p" in record.getMessage()
