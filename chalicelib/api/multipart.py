"""Minimal multipart/form-data reader for the table-list upload (API Gateway hands Lambda the raw body)."""
from __future__ import annotations

from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP

from chalicelib.errors import ValidationError


@dataclass
class UploadedFile:
    field: str
    filename: str
    data: bytes


def read_file_field(content_type: str | None, body: bytes, field: str = "file") -> UploadedFile:
    """The part named `field`; 400 when the body is not multipart or the field is absent."""
    if not content_type or not content_type.lower().startswith("multipart/form-data") \
            or "boundary=" not in content_type.lower():
        raise ValidationError("upload must be multipart/form-data with a 'file' field", invalid_params=[field])
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\nMIME-Version: 1.0\r\n\r\n" + body)
    if not message.is_multipart():
        raise ValidationError("malformed multipart body", invalid_params=[field])
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") != field:
            continue
        data = part.get_payload(decode=True) or b""
        return UploadedFile(field, part.get_filename() or "", data)
    raise ValidationError(f"missing file field '{field}'", invalid_params=[field])
