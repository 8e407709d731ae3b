"""File API: upload slots (`POST /s2s/v2.0/file[/{slug}]`) and the signed PUT storage URL."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from . import ids, responses
from ._common import (
    Reject,
    base_url,
    check_slug,
    json_object,
    key_state,
    missing,
    registry,
    wrong_type,
)
from .gate import KEY
from .state import StoredFile

router = APIRouter()

CONTENT_TYPES = ("image/jpg", "image/jpeg", "image/png")
MAX_IMAGE_BYTES = 10 * 1024 * 1024
_FIELDS = (("content_type", "string"), ("file_name", "string"), ("file_size", "integer"))


def _check_item(item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise wrong_type(item, "object", "files[]")
    for name, kind in _FIELDS:
        if name not in item:
            raise Reject(responses.invalid(
                f"{name} is required but wasn't included in your request."))
        value = item[name]
        ok = isinstance(value, str) if kind == "string" else (
            isinstance(value, int) and not isinstance(value, bool))
        if not ok:
            raise wrong_type(value, kind, name)
    if item["content_type"] not in CONTENT_TYPES:
        raise Reject(responses.invalid(
            f"content_type {item['content_type']} is not supported "
            f"(allowed: {', '.join(CONTENT_TYPES)})"))
    if item["file_size"] <= 0:
        raise Reject(responses.invalid("file_size must be greater than 0"))
    if item["file_size"] > MAX_IMAGE_BYTES:
        raise Reject(responses.invalid(
            f"file_size {item['file_size']} exceeds the limit of {MAX_IMAGE_BYTES} bytes"))
    return item


async def _file_slots(request: Request) -> Response:
    body = await json_object(request)
    if "files" not in body:
        raise missing("files")
    files = body["files"]
    if not isinstance(files, list):
        raise wrong_type(files, "array", "files")
    if not files:
        raise Reject(responses.invalid(
            "files: array is too short: must have at least 1 elements but instance has 0 elements"))
    items = [_check_item(item) for item in files]
    reg, st = registry(request), key_state(request)
    cfg = st.config
    if len(items) > 1 and cfg.file_batch == "refuse":  # a vendor that takes one file per request
        raise Reject(responses.invalid(
            "files: array is too long: must have at most 1 elements but instance has "
            f"{len(items)} elements"))
    if len(items) > 1 and cfg.file_batch == "fewer_slots":
        items = items[:1]
    out = []
    for item in items:
        token = ids.token()
        stored = StoredFile(ids.file_id(), item["file_name"], item["content_type"],
                            item["file_size"], token, st.root / f"upload-{token}")
        with st.lock:
            st.files[stored.file_id] = stored
        with reg.lock:
            reg.upload_tokens[token] = (st.key, stored.file_id)
        path = f"/_storage/upload/{token}"
        query = ids.signed_query(reg.settings.signing_secret.get_secret_value(), "PUT", path,
                                 cfg.real(cfg.upload_url_ttl_s))
        headers: Any = {"Content-Length": str(stored.file_size),
                        "Content-Type": stored.content_type}
        if cfg.upload_headers_shape == "list":
            headers = [{"name": k, "value": v} for k, v in headers.items()]
        out.append({
            "content_type": stored.content_type, "file_name": stored.file_name,
            "file_id": stored.file_id,
            "requests": [{"method": "PUT", "url": f"{base_url(request)}{path}?{query}",
                          "headers": headers}],
        })
    if cfg.file_batch == "reversed":
        out.reverse()
    return responses.ok({"files": out})


@router.post("/s2s/v2.0/file")
async def file_universal(request: Request) -> Response:
    return await _file_slots(request)


@router.post("/s2s/v2.0/file/{slug}")
async def file_for_feature(slug: str, request: Request) -> Response:
    check_slug(slug)
    return await _file_slots(request)


@router.put("/_storage/upload/{token}")
async def upload(token: str, request: Request) -> Response:
    """S3-like presigned PUT: no auth header (one is refused, as S3 refuses a second auth mechanism); the
    signature, expiry and size must hold."""
    reg = registry(request)
    if "authorization" in request.headers:
        return responses.s3_error(403, "AccessDenied", "Only one auth mechanism allowed: the presigned URL's "
                                  "signature or an Authorization header, not both.")
    problem = ids.check_signature(
        reg.settings.signing_secret.get_secret_value(), "PUT", request.url.path,
        request.query_params.get("expires"), request.query_params.get("signature"))
    if problem == "SignatureDoesNotMatch":
        return responses.s3_error(403, problem, "The request signature we calculated does not "
                                  "match the signature you provided.")
    if problem:
        return responses.s3_error(403, "AccessDenied", "Request has expired")
    with reg.lock:
        owner = reg.upload_tokens.get(token)
    st = reg.state(owner[0]) if owner else None
    stored = st.files.get(owner[1]) if st and owner else None
    if st is None or stored is None:
        return responses.s3_error(404, "NoSuchUpload", "The specified upload does not exist.")
    request.scope[KEY] = st.key
    if request.headers.get("content-type", "").split(";")[0].strip() != stored.content_type:
        return responses.s3_error(403, "SignatureDoesNotMatch",
                                  "Content-Type does not match the signed upload slot.")
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > stored.file_size:
            break
    if len(data) != stored.file_size:
        return responses.s3_error(400, "IncompleteBody", "The request body size does not match "
                                  f"the signed Content-Length of {stored.file_size} bytes.")
    stored.path.write_bytes(bytes(data))
    stored.uploaded = True
    return Response(status_code=200, headers={"ETag": f'"{ids.token()[:16]}"'})
