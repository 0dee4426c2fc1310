"""Blob stores for vault files: a local directory (default) and S3-compatible buckets.

The S3 store lives in ``storage.blobs.s3`` and is imported only when used, so a local-only
deployment never loads botocore.
"""

from storage.blobs.base import DEFAULT_CHUNK_SIZE, BlobReader, BlobStore, StoredBlob
from storage.blobs.errors import (
    BlobNotFound,
    BlobSizeMismatch,
    BlobStoreError,
    BlobTooLarge,
    InvalidBlobKey,
    InvalidRange,
)
from storage.blobs.factory import blob_store_from_url
from storage.blobs.local import LocalBlobStore

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "BlobNotFound",
    "BlobReader",
    "BlobSizeMismatch",
    "BlobStore",
    "BlobStoreError",
    "BlobTooLarge",
    "InvalidBlobKey",
    "InvalidRange",
    "LocalBlobStore",
    "StoredBlob",
    "blob_store_from_url",
]
