"""Load the vendored OpenAPI bundles and turn their parts into JSON Schemas for `jsonschema`.

Only `vendor/openapi/` is read (never /work/shared). OpenAPI 3.0 is JSON Schema with a few
extras: `nullable` becomes a null-allowing type, local `$ref`s are inlined, and the bundles'
known breakages are repaired where they are used (see `vendor/openapi/README.md`).
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

VENDOR = Path(__file__).resolve().parents[2] / "vendor" / "openapi"
BG_CHANGE = "perfect-corp-ai_photo_background_change.json"
FILE_API = "perfect-corp-file-openapi.yml"
UNITS = "perfect-corp-unit_system-openapi.yml"
TASKS = "perfect-corp-task_management-openapi.yml"


@cache
def _load(name: str) -> dict[str, Any]:
    text = (VENDOR / name).read_text()
    doc: dict[str, Any] = json.loads(text) if name.endswith(".json") else yaml.safe_load(text)
    return doc


def bundle(name: str) -> dict[str, Any]:
    return copy.deepcopy(_load(name))


def _pointer(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"only local refs are expected, got {ref}"
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def to_schema(doc: dict[str, Any], node: Any) -> Any:
    """Inline `$ref`s and translate `nullable`; refuse a `$ref` with siblings (a bundle bug)."""
    if isinstance(node, list):
        return [to_schema(doc, n) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        if len(node) > 1:
            raise ValueError(f"$ref beside other keys: {sorted(node)} (repair it first)")
        return to_schema(doc, _pointer(doc, node["$ref"]))
    out = {k: to_schema(doc, v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def nullable_next_token(schema: Any) -> Any:
    """Every `next_token` typed `string` also allows null.

    A bundle quirk: the unit-system prose says "`null` when there are no more pages", the live
    API sends null (contract section 8), yet the schemas type it as a plain string.
    """
    if isinstance(schema, list):
        return [nullable_next_token(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: nullable_next_token(v) for k, v in schema.items()}
    token = out.get("properties", {}).get("next_token")
    if isinstance(token, dict) and token.get("type") == "string":
        out["properties"]["next_token"] = {**token, "type": ["string", "null"]}
    return out


def response_schema(name: str, path: str, method: str, status: int,
                    doc: dict[str, Any] | None = None) -> dict[str, Any]:
    doc = doc or bundle(name)
    resp = doc["paths"][path][method]["responses"][str(status)]
    if "$ref" in resp:
        resp = _pointer(doc, resp["$ref"])
    schema: dict[str, Any] = nullable_next_token(
        to_schema(doc, resp["content"]["application/json"]["schema"]))
    return schema


def request_schema(name: str, path: str, method: str) -> dict[str, Any]:
    doc = bundle(name)
    body = doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
    schema: dict[str, Any] = to_schema(doc, body)
    return schema


def closed(schema: Any) -> Any:
    """The same schema with `additionalProperties: false` on every object that lists properties,
    so an answer with a field the vendor does not document fails."""
    if isinstance(schema, list):
        return [closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: closed(v) for k, v in schema.items()}
    if "properties" in out:
        out.setdefault("additionalProperties", False)
    return out


def validate(instance: Any, schema: dict[str, Any]) -> None:
    jsonschema.Draft4Validator.check_schema(schema)
    jsonschema.Draft4Validator(schema).validate(instance)


def is_valid(instance: Any, schema: dict[str, Any]) -> bool:
    return jsonschema.Draft4Validator(schema).is_valid(instance)


def task_status_schema() -> dict[str, Any]:
    """`TaskStatusResponseV2`, repaired.

    Broken as published: `data.results` is `null` (not a schema) and a `$ref` to
    `TaskStatusResponseBodySingleUrlResultsV2` sits beside `properties`. Nearest sound reading
    (the prose and the single-URL schema's name): `data.results` is that object, or null.
    """
    doc = bundle(BG_CHANGE)
    raw = doc["components"]["schemas"]["TaskStatusResponseV2"]
    single = raw.pop("$ref")
    raw["properties"]["data"]["properties"]["results"] = {
        "anyOf": [{"$ref": single}, {"type": "null"}]}
    schema: dict[str, Any] = to_schema(doc, raw)
    return schema


def file_response_schema() -> dict[str, Any]:
    """`FileResponseV2`, repaired: `data: null` with a `$ref` beside it means data is a
    `BasicFileResponse`. Validated against the nearest sound part: that object under `data`."""
    doc = bundle(FILE_API)
    raw = doc["components"]["schemas"]["FileResponseV2"]
    raw["properties"]["data"] = {"$ref": raw.pop("$ref")}
    schema: dict[str, Any] = to_schema(doc, {"allOf": [raw]})
    return schema
