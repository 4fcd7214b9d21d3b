"""LTI 1.1 Basic Outcomes "POX" envelopes: built with ElementTree, parsed with defusedxml.

Requests are small and fixed in shape, so they are built element by element (never by string
formatting, so a sourcedId holding `<` or `&` cannot break the XML). Responses come from
platforms we do not control: they are parsed with defusedxml (no entities, no DTDs), bounded in
size, and read leniently (namespace or not, surrounding whitespace) because LMSs differ.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from enum import StrEnum

from defusedxml import ElementTree as SafeET

NS = "http://www.imsglobal.org/services/ltiv1p1/xsd/imsoms_v1p0"
MAX_RESPONSE_BYTES = 256 * 1024  # a POX response is a few hundred bytes; refuse floods


class Operation(StrEnum):
    REPLACE = "replaceResult"
    READ = "readResult"
    DELETE = "deleteResult"


class PoxError(ValueError):
    """A response that is not a readable POX envelope."""


def format_score(fraction: float) -> str:
    """A score as LTI 1.1 wants it: a plain decimal from 0.0 to 1.0, no exponent.

    Eight decimals keep every score policy can produce (rounded to 6) while avoiding
    float noise such as 0.30000000000000004, which some LMSs refuse."""
    if not math.isfinite(fraction) or not 0.0 <= fraction <= 1.0:
        raise ValueError(f"resultScore must be from 0.0 to 1.0, got {fraction!r}")
    text = f"{fraction:.8f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    el = ET.SubElement(parent, f"{{{NS}}}{tag}")
    if text is not None:
        el.text = text
    return el


def build_request(
    operation: Operation,
    sourcedid: str,
    message_id: str,
    *,
    score: str | None = None,
    comment: str | None = None,
    language: str = "en",
) -> bytes:
    """The request envelope for one operation on one result, as UTF-8 bytes.

    `score` (already formatted) is required for replaceResult and refused otherwise;
    `comment` goes in the widely supported `resultData/text` extension (replace only)."""
    if not sourcedid:
        raise ValueError("sourcedId is required")
    if (score is None) == (operation is Operation.REPLACE):
        raise ValueError("a score is required for replaceResult and only for it")
    if comment is not None and operation is not Operation.REPLACE:
        raise ValueError("a comment can only accompany replaceResult")
    root = ET.Element(f"{{{NS}}}imsx_POXEnvelopeRequest")
    info = _sub(_sub(root, "imsx_POXHeader"), "imsx_POXRequestHeaderInfo")
    _sub(info, "imsx_version", "V1.0")
    _sub(info, "imsx_messageIdentifier", message_id)
    body = _sub(root, "imsx_POXBody")
    record = _sub(_sub(body, f"{operation.value}Request"), "resultRecord")
    _sub(_sub(record, "sourcedGUID"), "sourcedId", sourcedid)
    if score is not None:
        result = _sub(record, "result")
        result_score = _sub(result, "resultScore")
        _sub(result_score, "language", language)
        _sub(result_score, "textString", score)
        if comment is not None:
            _sub(_sub(result, "resultData"), "text", comment)
    # The declaration is written by hand: ElementTree's single-quoted one trips some LMSs.
    body_xml: bytes = ET.tostring(
        root, encoding="utf-8", xml_declaration=False, default_namespace=NS
    )
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + body_xml


@dataclass(frozen=True, slots=True)
class PoxResponse:
    code_major: str  # success | processing | failure | unsupported (lower-cased)
    severity: str | None
    description: str
    code_minor: tuple[str, ...]  # imsx_codeMinorFieldValue values, when the platform sends any
    message_ref: str | None
    operation: str | None
    score_text: str | None  # readResult: resultScore/textString ("" when no grade)

    @property
    def ok(self) -> bool:
        return self.code_major in ("success", "processing")


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _find(root: ET.Element, name: str) -> ET.Element | None:
    """The first descendant with this local name, in any namespace (or none)."""
    for el in root.iter():
        if _local(el.tag) == name:
            return el
    return None


def _text(root: ET.Element, name: str) -> str | None:
    el = _find(root, name)
    if el is None:
        return None
    return (el.text or "").strip()


def parse_response(data: bytes) -> PoxResponse:
    """Read a response envelope. Raises PoxError when it is not one (HTML error page, empty
    body, malformed or hostile XML)."""
    if not data or not data.strip():
        raise PoxError("empty response body")
    if len(data) > MAX_RESPONSE_BYTES:
        raise PoxError(f"response body larger than {MAX_RESPONSE_BYTES} bytes")
    try:
        root = SafeET.fromstring(data)
    except Exception as exc:  # ParseError and defusedxml's refusals (entities, DTDs)
        raise PoxError(f"not a readable XML envelope ({type(exc).__name__}: {exc})") from exc
    if _local(root.tag) != "imsx_POXEnvelopeResponse":
        raise PoxError(f"expected imsx_POXEnvelopeResponse, got {_local(root.tag) or '?'}")
    major = _text(root, "imsx_codeMajor")
    if not major:
        raise PoxError("imsx_codeMajor is missing")
    minors = tuple(
        (el.text or "").strip()
        for el in root.iter()
        if _local(el.tag) == "imsx_codeMinorFieldValue" and (el.text or "").strip()
    )
    score_text: str | None = None
    result_score = _find(root, "resultScore")
    if result_score is not None:
        score_text = _text(result_score, "textString") or ""
    return PoxResponse(
        code_major=major.lower(),
        severity=_text(root, "imsx_severity"),
        description=_text(root, "imsx_description") or "",
        code_minor=minors,
        message_ref=_text(root, "imsx_messageRefIdentifier"),
        operation=_text(root, "imsx_operationRefIdentifier"),
        score_text=score_text,
    )
