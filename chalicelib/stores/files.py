"""Task files in S3 under `tasks/{task_id}/`: outputs, the table list, work files and log chunks."""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO
from urllib.parse import unquote

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from chalicelib.aws import get_s3
from chalicelib.config import get_settings
from chalicelib.errors import FileNotFound, ValidationError

INTERNAL_PREFIXES = ("work/", "logs/")
DELETE_BATCH = 1000  # keys per DeleteObjects request (S3's limit)
_CONTENT_TYPES = {
    ".json": "application/json; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".ddl": "text/plain; charset=utf-8",
    ".sql": "text/plain; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".log": "text/plain; charset=utf-8",
    ".jsonl": "application/x-ndjson; charset=utf-8",
    ".csv": "text/csv; charset=utf-8",
}
_ENCODED = re.compile(r"%[0-9a-fA-F]{2}")
# Uploads from a file object: parts of 8 MiB (S3's minimum is 5 MiB), two in flight and at most four read into
# memory at once (s3transfer copies each part of an open file object into memory), so an upload holds about
# 32 MiB whatever the file's size; files below the threshold go up in one streamed PutObject.
_PART_BYTES = 8 * 1024 * 1024


def stream_transfer_config(part_bytes: int = _PART_BYTES) -> TransferConfig:
    """The transfer settings of FileStore.put_file: bounded memory whatever the file's size."""
    config = TransferConfig(multipart_threshold=part_bytes, multipart_chunksize=part_bytes, max_concurrency=2)
    config.max_in_memory_upload_chunks = 4  # an s3transfer setting boto3's constructor does not take
    return config


def task_prefix(task_id: str) -> str:
    return f"tasks/{task_id}/"


def content_type_for(name: str) -> str:
    """Content-Type by extension; `x.json.backup` is typed like `x.json`."""
    lower = name.lower()
    if lower.endswith(".backup"):
        lower = lower[: -len(".backup")]
    for ext, content_type in _CONTENT_TYPES.items():
        if lower.endswith(ext):
            return content_type
    return "application/octet-stream"


def safe_file_name(name: str) -> str:
    """A plain file name inside the task folder, URL-decoded once.

    Refuses `..`, `/`, `\\`, control characters and the same hidden behind (repeated) percent-encoding.
    """
    if not isinstance(name, str) or not name:
        raise ValidationError("file name is empty", invalid_params=["filename"])
    decoded = unquote(name)
    candidates = [name, decoded]
    deeper = decoded
    for _ in range(3):  # double/triple encoding: %252e%252e%252f
        if not _ENCODED.search(deeper):
            break
        deeper = unquote(deeper)
        candidates.append(deeper)
    for candidate in candidates:
        if ".." in candidate or "/" in candidate or "\\" in candidate or candidate.strip() in ("", "."):
            raise ValidationError("file name must not contain path separators or '..'", invalid_params=["filename"])
        if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in candidate):
            raise ValidationError("file name contains control characters", invalid_params=["filename"])
    if len(decoded) > 255:
        raise ValidationError("file name is too long", invalid_params=["filename"])
    return decoded


def _check_relative(name: str) -> str:
    """Internal relative names (`work/tables/x.json`, `vector_bak/x.csv`): each part must be safe."""
    parts = name.split("/")
    if not name or any(part in ("", ".", "..") or "\\" in part for part in parts):
        raise ValidationError(f"invalid task file path {name!r}", invalid_params=["filename"])
    return name


class FileStore:
    """S3 adapter for task files. Give it a client and bucket (tests) or let it use the settings."""

    def __init__(self, s3: Any = None, bucket: str | None = None, transfer: TransferConfig | None = None):
        self._s3 = s3
        self._bucket = bucket
        self._transfer = transfer

    @property
    def s3(self) -> Any:
        return self._s3 or get_s3()

    @property
    def bucket(self) -> str:
        return self._bucket or get_settings().bucket

    def key(self, task_id: str, name: str) -> str:
        return task_prefix(task_id) + _check_relative(name)

    def uri(self, task_id: str, name: str) -> str:
        return f"s3://{self.bucket}/{self.key(task_id, name)}"

    def put_bytes(self, task_id: str, name: str, data: bytes, content_type: str | None = None) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=self.key(task_id, name), Body=data,
                           ContentType=content_type or content_type_for(name))

    def put_text(self, task_id: str, name: str, text: str) -> None:
        self.put_bytes(task_id, name, text.encode("utf-8"))

    def put_file(self, task_id: str, name: str, fileobj: BinaryIO, content_type: str | None = None) -> None:
        """Upload from an open binary file object, from its current position, without reading it whole: one
        streamed PutObject for small files, a multipart upload (stream_transfer_config) for large ones. The ETag
        of a multipart object is not the MD5 of its bytes."""
        self.s3.upload_fileobj(fileobj, self.bucket, self.key(task_id, name),
                               ExtraArgs={"ContentType": content_type or content_type_for(name)},
                               Config=self._transfer or stream_transfer_config())

    def open_stream(self, task_id: str, name: str) -> BinaryIO:
        """The file as a readable binary stream (S3's response body: read it in pieces, close it when done);
        FileNotFound when absent."""
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=self.key(task_id, name))["Body"]
        except ClientError as exc:
            if _missing(exc):
                raise FileNotFound(f"file {name} not found in task {task_id}") from None
            raise

    def get_bytes(self, task_id: str, name: str) -> bytes:
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=self.key(task_id, name))["Body"].read()
        except ClientError as exc:
            if _missing(exc):
                raise FileNotFound(f"file {name} not found in task {task_id}") from None
            raise

    def get_text(self, task_id: str, name: str) -> str:
        return self.get_bytes(task_id, name).decode("utf-8")

    def head(self, task_id: str, name: str) -> dict[str, Any]:
        """{name, size, last_modified, etag} of one file; FileNotFound when absent."""
        try:
            meta = self.s3.head_object(Bucket=self.bucket, Key=self.key(task_id, name))
        except ClientError as exc:
            if _missing(exc):
                raise FileNotFound(f"file {name} not found in task {task_id}") from None
            raise
        return {"name": name, "size": meta["ContentLength"], "last_modified": meta["LastModified"],
                "etag": meta.get("ETag")}

    def exists(self, task_id: str, name: str) -> bool:
        try:
            self.head(task_id, name)
        except FileNotFound:
            return False
        return True

    def delete(self, task_id: str, name: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=self.key(task_id, name))

    def delete_many(self, task_id: str, names: Iterable[str]) -> int:
        """Delete files by name, DELETE_BATCH per DeleteObjects request (names may be a generator: at most one
        batch is held); returns how many. A key S3 reports as not deleted is an error naming it."""
        count, batch = 0, []
        for name in names:
            batch.append({"Key": self.key(task_id, name)})
            if len(batch) == DELETE_BATCH:
                count += self._delete_batch(batch)
                batch = []
        if batch:
            count += self._delete_batch(batch)
        return count

    def _delete_batch(self, batch: list[dict[str, str]]) -> int:
        answer = self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        errors = answer.get("Errors") or []
        if errors:
            first = errors[0]
            raise RuntimeError(f"S3 did not delete {len(errors)} of {len(batch)} objects "
                               f"(e.g. {first.get('Key')}: {first.get('Code')} {first.get('Message')})")
        return len(batch)

    def iter_files(self, task_id: str, include_internal: bool = False, prefix: str = "", *,
                   with_etag: bool = False, top_level: bool = False) -> Iterator[dict[str, Any]]:
        """list_files one S3 page (1,000 keys) at a time, nothing sorted or kept: for listings that grow with
        the number of tables. Without `include_internal`, the work/ and logs/ trees are not listed at all (the
        task folder is listed with a delimiter, then each other sub-folder)."""
        base = task_prefix(task_id)
        if top_level or include_internal or prefix:
            yield from self._iter_pages(base, prefix, with_etag, top_level, include_internal)
            return
        folders: list[str] = []
        yield from self._iter_pages(base, "", with_etag, True, False, folders)
        for folder in folders:
            if not folder.startswith(INTERNAL_PREFIXES):
                yield from self._iter_pages(base, folder, with_etag, False, False)

    def _iter_pages(self, base: str, prefix: str, with_etag: bool, top_level: bool, include_internal: bool,
                    folders: list[str] | None = None) -> Iterator[dict[str, Any]]:
        paginator = self.s3.get_paginator("list_objects_v2")
        options = {"Delimiter": "/"} if top_level else {}
        for page in paginator.paginate(Bucket=self.bucket, Prefix=base + prefix, **options):
            if folders is not None:
                folders.extend(p["Prefix"][len(base):] for p in page.get("CommonPrefixes", []))
            for obj in page.get("Contents", []):
                name = obj["Key"][len(base):]
                if not include_internal and name.startswith(INTERNAL_PREFIXES):
                    continue
                entry = {"name": name, "size": obj["Size"], "last_modified": obj["LastModified"]}
                if with_etag:
                    entry["etag"] = obj.get("ETag", "").strip('"')
                yield entry

    def list_files(self, task_id: str, include_internal: bool = False, prefix: str = "", *,
                   with_etag: bool = False, top_level: bool = False) -> list[dict[str, Any]]:
        """[{name, size, last_modified}] relative to the task folder (plus `etag`, unquoted, when asked);
        work/ and logs/ hidden unless asked; with `top_level` only the files directly in the folder (S3 then
        does not list the work/ and logs/ trees at all)."""
        out = list(self.iter_files(task_id, include_internal, prefix, with_etag=with_etag, top_level=top_level))
        return sorted(out, key=lambda f: f["name"])

    def task_dir_exists(self, task_id: str) -> bool:
        found = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=task_prefix(task_id), MaxKeys=1)
        return bool(found.get("KeyCount") or found.get("Contents"))

    def presigned_url(self, task_id: str, name: str, expires: int = 300) -> str:
        return self.s3.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self.key(task_id, name)}, ExpiresIn=expires)


class TaskFiles:
    """The files of one task (what step code works with)."""

    def __init__(self, task_id: str, store: FileStore | None = None):
        self.task_id = task_id
        self.store = store or FileStore()

    def put_text(self, name: str, text: str) -> None:
        self.store.put_text(self.task_id, name, text)

    def put_bytes(self, name: str, data: bytes, content_type: str | None = None) -> None:
        self.store.put_bytes(self.task_id, name, data, content_type)

    def put_file(self, name: str, fileobj: BinaryIO, content_type: str | None = None) -> None:
        self.store.put_file(self.task_id, name, fileobj, content_type)

    def open_stream(self, name: str) -> BinaryIO:
        return self.store.open_stream(self.task_id, name)

    def get_text(self, name: str) -> str:
        return self.store.get_text(self.task_id, name)

    def get_bytes(self, name: str) -> bytes:
        return self.store.get_bytes(self.task_id, name)

    def exists(self, name: str) -> bool:
        return self.store.exists(self.task_id, name)

    def head(self, name: str) -> dict[str, Any]:
        return self.store.head(self.task_id, name)

    def delete(self, name: str) -> None:
        self.store.delete(self.task_id, name)

    def delete_many(self, names: Iterable[str]) -> int:
        return self.store.delete_many(self.task_id, names)

    def iter_names(self, prefix: str = "") -> Iterator[str]:
        """Names starting with `prefix` (internal files included), one S3 page at a time, in key order."""
        return (f["name"] for f in self.store.iter_files(self.task_id, include_internal=True, prefix=prefix))

    def list_names(self, prefix: str = "") -> list[str]:
        """Names (relative to the task folder) starting with `prefix`, internal files included."""
        return [f["name"] for f in self.store.list_files(self.task_id, include_internal=True, prefix=prefix)]

    def list_top_level_etags(self) -> dict[str, str]:
        """{name: ETag} of the files directly in the task folder (not work/, logs/…). The ETag of an object
        written by one PutObject without KMS encryption is the MD5 of its bytes."""
        return {f["name"]: f["etag"] for f in self.store.list_files(self.task_id, with_etag=True, top_level=True)}


def _missing(exc: ClientError) -> bool:
    code = str(exc.response.get("Error", {}).get("Code"))
    return code in ("NoSuchKey", "404", "NotFound")
