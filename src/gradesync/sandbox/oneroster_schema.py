"""Validation of OneRoster 1.2 gradebook payloads against the official OpenAPI document.

The document ships with the package; its component schemas are used as they are, `$ref`s
resolved within the document. Validators are compiled once per schema name.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft7Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

SPEC_FILE = "oneroster-v1p2-gradebook-openapi.json"
SPEC_URI = "urn:oneroster-v1p2-gradebook"

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")

_checker = FormatChecker(formats=())


@_checker.checks("date-time", raises=ValueError)  # type: ignore[untyped-decorator]
def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _DATE_TIME.match(value):
        return False
    datetime.fromisoformat(value)
    return True


@_checker.checks("date", raises=ValueError)  # type: ignore[untyped-decorator]
def _is_date(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _DATE.match(value):
        return False
    date.fromisoformat(value)
    return True


# RFC 3986: only these characters, `%` only before two hexadecimal digits (a space, a
# quote or a non-ASCII letter in an href is refused, as a strict SIS's validator does)
_URI_CHARACTERS = re.compile(r"^(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*$")


@_checker.checks("uri")  # type: ignore[untyped-decorator]
def _is_uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _URI_CHARACTERS.match(value):
        return False
    parts = urlsplit(value)
    return bool(parts.scheme) and bool(parts.netloc or parts.path)


@cache
def spec() -> dict[str, Any]:
    text = resources.files(__package__).joinpath(SPEC_FILE).read_text(encoding="utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


@cache
def _registry() -> Registry:
    resource = Resource.from_contents(spec(), default_specification=DRAFT7)
    return Registry().with_resource(SPEC_URI, resource)  # type: ignore[no-any-return]


@cache
def validator(schema_name: str) -> Draft7Validator:
    if schema_name not in spec()["components"]["schemas"]:
        raise KeyError(f"no component schema {schema_name!r} in the OneRoster document")
    return Draft7Validator(
        {"$ref": f"{SPEC_URI}#/components/schemas/{schema_name}"},
        registry=_registry(),
        format_checker=_checker,
    )


def problems(schema_name: str, instance: Any) -> list[str]:
    """Every way `instance` breaks the schema, each as 'field.path: rule'."""
    found = []
    for err in sorted(validator(schema_name).iter_errors(instance), key=lambda e: list(e.path)):
        where = ".".join(str(p) for p in err.absolute_path) or "(body)"
        found.append(f"{where}: {err.message}")
    return found
