"""Build the blob store that ``VAULT_STORAGE_URL`` names."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from storage.blobs.base import BlobStore
from storage.blobs.local import LocalBlobStore


def blob_store_from_url(
    url: str,
    *,
    endpoint_url: str | None = None,
    access_key: Any = None,
    secret_key: Any = None,
    region: str | None = None,
    **s3_options: Any,
) -> BlobStore:
    """The blob store for ``url``.

    * ``file:///abs/path`` or a plain path (``./data/vault``, ``/srv/vault``) → ``LocalBlobStore``
    * ``s3://bucket`` or ``s3://bucket/prefix`` → ``S3BlobStore``, with ``endpoint_url``,
      ``access_key``, ``secret_key`` and ``region`` from the caller's settings
      (``VAULT_S3_ENDPOINT_URL``, ``VAULT_S3_ACCESS_KEY_ID``, ``VAULT_S3_SECRET_ACCESS_KEY``,
      ``VAULT_S3_REGION``); secrets may be given as pydantic ``SecretStr``. Further keyword
      arguments (``part_size``, ``addressing_style``, …) go to ``S3BlobStore``.

    The S3 options are ignored for a local store, so a caller can always pass its settings.
    Raises ``ValueError`` for a URL it cannot use.
    """
    if not url or not url.strip():
        raise ValueError("the blob storage URL is empty")
    url = url.strip()
    parts = urlsplit(url)
    scheme = parts.scheme.lower()

    if scheme == "s3":
        if not parts.netloc:
            raise ValueError(f"no bucket in {url!r}: expected s3://bucket/prefix")
        if parts.query or parts.fragment:
            raise ValueError(f"unexpected query or fragment in {url!r}")
        from storage.blobs.s3 import S3BlobStore  # botocore loads only when used

        return S3BlobStore(
            endpoint_url=endpoint_url or None,
            bucket=parts.netloc,
            prefix=unquote(parts.path),
            access_key=_reveal(access_key),
            secret_key=_reveal(secret_key),
            region=region or None,
            **s3_options,
        )
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"file URLs must be local: {url!r}")
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise ValueError(f"file URLs need an absolute path (file:///…): {url!r}")
        return LocalBlobStore(Path(path))
    # A single letter is a Windows drive ("C:\vault"), not a scheme.
    if scheme and len(scheme) > 1:
        raise ValueError(f"unsupported blob storage URL scheme {scheme!r} in {url!r}")
    return LocalBlobStore(Path(url).expanduser())


def _reveal(secret: Any) -> str | None:
    if secret is None:
        return None
    reveal = getattr(secret, "get_secret_value", None)
    value = reveal() if callable(reveal) else secret
    return str(value) or None
