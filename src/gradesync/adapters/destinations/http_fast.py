"""The pieces of the shared client's fast path (`http_pool._Client`): a URL parsed once, the
header lines httpx's own path would send, a JSON body as bytes, and the answer as an
`httpx.Response`."""

from __future__ import annotations

import codecs
import email.message
import json
from collections.abc import Callable, Sequence
from functools import lru_cache
from json import encoder
from typing import Any, NamedTuple

import httpx
import yarl

_MAX_TARGETS = 256
_BODY_METHODS = ("POST", "PUT", "PATCH")  # httpx sends `Content-Length: 0` when empty


class Target(NamedTuple):
    url: httpx.URL
    wire: yarl.URL  # as httpx encoded it, byte for byte
    host: str  # the Host header: the URL's host, and its port when not the default


class Targets:
    """URLs parsed once each: an adapter sends every score of a column to the same URL, and
    httpx's parser costs about as much as the rest of the fast path. An `httpx.URL` (the
    AGS adapter keeps its URLs parsed) is looked up by the object, not by its text: hashing
    one formats it as text again each time."""

    def __init__(self) -> None:
        self._parsed: dict[str, Target | None] = {}
        self._objects: dict[int, tuple[httpx.URL, Target | None]] = {}

    def get(self, url: str | httpx.URL) -> Target | None:
        """None for a URL the fast path leaves to httpx: not absolute http(s), credentials
        in it (httpx turns them into Basic auth), or one httpx refuses."""
        if isinstance(url, httpx.URL):
            held = self._objects.get(id(url))
            if held is not None and held[0] is url:  # the entry holds it: the same object
                return held[1]
            target = _parse(url)
            if len(self._objects) >= _MAX_TARGETS:
                self._objects.clear()
            self._objects[id(url)] = (url, target)
            return target
        try:
            return self._parsed[url]
        except KeyError:
            pass
        target = _parse(url)
        if len(self._parsed) >= _MAX_TARGETS:
            self._parsed.clear()
        self._parsed[url] = target
        return target


def _not_json(value: Any) -> Any:
    raise TypeError(f"Object of type {value.__class__.__name__} is not JSON serializable")


# What `json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode`
# runs, made once: that method makes its C encoder again on every call, half the cost of a
# score's body. No check for a body that holds itself (the adapters build each body afresh
# from plain values): one would end in RecursionError rather than ValueError.
_C_ENCODE = (
    encoder.c_make_encoder(  # type: ignore[attr-defined]
        None, _not_json, encoder.encode_basestring, None, ":", ",", False, False, False
    )
    if encoder.c_make_encoder is not None  # type: ignore[attr-defined]
    else None
)
# An interpreter without the C `_json` module (`c_make_encoder` is None then): the
# pure-Python encoder, the same bytes, slower.
_PY_ENCODER = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, check_circular=False
)


def json_content(body: Any) -> bytes:
    """A JSON body as sent: compact UTF-8, no NaN (the bytes httpx's `json=` sends). As
    `content=` a request keeps the fast path, which `json=` would leave."""
    if _C_ENCODE is None:
        return _PY_ENCODER.encode(body).encode()
    return "".join(_C_ENCODE(body, 0)).encode()


def _parse(url: str | httpx.URL) -> Target | None:
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    except httpx.InvalidURL:
        return None  # httpx's own path raises it
    if parsed.scheme not in ("http", "https") or not parsed.host or parsed.userinfo:
        return None
    return Target(parsed, yarl.URL(str(parsed), encoded=True), parsed.netloc.decode("ascii"))


Head = tuple[list[tuple[str, str]], bool]  # the lines but the body's length; whether it follows


def with_length(head: Head, content: bytes | None) -> list[tuple[str, str]]:
    lines, sized = head
    return [*lines, ("content-length", str(len(content or b"")))] if sized else [*lines]


def head_lines(
    defaults: list[tuple[str, str]],
    given: dict[Any, Any] | None,
    host: str,
    method: str,
    body: bool,
) -> Head | None:
    """The header lines httpx would send, in its order and its lower case, but the body's
    length, which only a body of the same length shares (`with_length` adds it): Host, its
    `Content-Length: 0` for an empty POST, PUT or PATCH, the client's `defaults` the call does
    not override, the call's `given`; and whether a `Content-Length` line follows them. None
    when a given name or value is not ASCII text: httpx's own path refuses or encodes those."""
    lines: list[tuple[str, str]] = []
    for name, value in (given or {}).items():
        if not (type(name) is str and type(value) is str and name.isascii() and value.isascii()):
            return None
        lines.append((name.lower(), value))
    names = {name for name, _ in lines}
    lines[:0] = [line for line in defaults if line[0] not in names]
    names.update(name for name, _ in defaults)
    sized = body and "content-length" not in names
    if sized:
        names.add("content-length")
    auto = [] if "host" in names else [("host", host)]
    if method in _BODY_METHODS and not names & {"content-length", "transfer-encoding"}:
        auto.append(("content-length", "0"))
    return (auto + lines if auto else lines), sized


class Heads:
    """`head_lines` kept by what they depend on: a client sends each destination the same
    headers (its defaults, a token, a content type) score after score, and putting them
    together again cost about a tenth of the fast path. A call signed on its own (any
    `Authorization` but a bearer token, e.g. LTI 1.1's OAuth 1.0a with its nonce) never
    repeats: its lines are made and not kept, so no signed value stays in memory and it
    does not push out the entries that do repeat."""

    def __init__(self) -> None:
        self._made: dict[Any, Head | None] = {}

    def get(
        self,
        defaults: httpx.Headers,
        given: dict[Any, Any] | None,
        host: str,
        method: str,
        body: bool,
    ) -> Head | None:
        try:  # the client's defaults as they are now: they may be changed between calls
            key = (tuple(defaults.raw), tuple(given.items()) if given else (), host, method, body)
            return self._made[key]
        except TypeError:  # a given value that cannot be a key is no text: httpx's path
            return None
        except KeyError:
            pass
        head = head_lines(defaults.multi_items(), given, host, method, body)
        if given and _signed(given):  # checked on a miss only: what is kept passed it
            return head
        if len(self._made) >= _MAX_TARGETS:
            self._made.clear()
        self._made[key] = head
        return head


def _signed(given: dict[Any, Any]) -> bool:
    """Whether the call's own headers hold an `Authorization` other than a bearer token."""
    for name, value in given.items():
        if (
            type(name) is str
            and name.lower() == "authorization"
            and not (type(value) is str and value.startswith("Bearer "))
        ):
            return True
    return False


_ASK = "\0ask the headers"  # a Content-Type not seen as received: `headers.get` reads it


class Response(httpx.Response):
    """A fast-path answer. Its `request`, the one httpx's own path would have built, is made
    on first use (`made`): almost no answer needs one. Its text is the one httpx's would
    read, decoded in one call by an encoding found once per Content-Type: an adapter reads
    every answer's text for the delivery log, and httpx's incremental decoder and its
    reading of the charset cost more than making the answer. Its `headers` are made from
    the lines as received on first use: an answer that succeeds is read by its status and
    text only, and httpx's `Headers` (each line's name and value normalised) were a fifth of
    the cost of the adapter's call over the pool."""

    made: Callable[[], httpx.Request] | None = None
    _lines: Sequence[tuple[bytes, bytes]] = ()  # the header lines until `headers` is read
    # the Content-Type as received (None: none), or `_ASK` for `headers.get`
    _content_type: str | None = _ASK

    @classmethod
    def received(
        cls,
        status: int,
        headers: Sequence[tuple[bytes, bytes]],
        content: bytes,
        extensions: dict[str, bytes],
    ) -> Response:
        """The answer, read: its body decoded by its Content-Encoding, as httpx's path does.
        Made as `httpx.Response(status, headers=headers, stream=..., extensions=extensions)`
        makes it, but for its headers (`headers`); a test compares the two attribute by
        attribute, so a new httpx that sets another one is seen."""
        response = cls.__new__(cls)
        response.status_code = status
        response._lines = headers
        response._request = None
        response.next_request = None
        response.extensions = dict(extensions)
        response.history = []
        response.is_closed = response.is_stream_consumed = False
        response.default_encoding = "utf-8"
        response.stream = httpx.ByteStream(content)
        response._num_bytes_downloaded = 0
        encoded = False
        content_type: str | None = None
        for name, value in headers:  # the two headers reading the answer needs, seen once
            size = len(name)
            if size == 12 and name.lower() == b"content-type":
                # kept as `headers.get` gives it when one line in ASCII, else asked there
                once = content_type is None and value.isascii()
                content_type = value.decode("ascii") if once else _ASK
            elif size == 16 and name.lower() == b"content-encoding":
                encoded = True
        response._content_type = content_type
        if encoded:
            response.read()
        else:  # the body as it came: what read() gives, without its stream machinery
            response._content = content  # read() would triple the cost of the answer
            response.is_stream_consumed = response.is_closed = True
        return response

    @property
    def headers(self) -> httpx.Headers:
        made: httpx.Headers | None = self.__dict__.get("_headers")
        if made is None:
            made = self._headers = httpx.Headers(self._lines)
            self._lines = ()
        return made

    @headers.setter
    def headers(self, value: httpx.Headers) -> None:
        self._headers = value

    @property
    def request(self) -> httpx.Request:
        if self._request is None and self.made is not None:
            self._request, self.made = self.made(), None
        return super().request

    @request.setter
    def request(self, value: httpx.Request) -> None:
        self._request = value

    @property
    def charset_encoding(self) -> str | None:
        content_type = self.headers.get("Content-Type")
        return None if content_type is None else _charset(content_type)

    @property
    def encoding(self) -> str | None:
        """httpx's: the Content-Type's charset when Python knows it, else the default."""
        found: str | None = self.__dict__.get("_encoding")
        if found is None:
            default = self.default_encoding
            if not isinstance(default, str):  # a guess from the body: httpx's own way
                return super().encoding
            content_type = self._content_type
            if content_type is _ASK:
                content_type = self.headers.get("Content-Type")
            known = _known_charset(content_type)
            found = self._encoding = known or default or "utf-8"
        return found

    @encoding.setter
    def encoding(self, value: str) -> None:
        httpx.Response.encoding.fset(self, value)  # type: ignore[attr-defined]

    @property
    def text(self) -> str:
        """httpx's: the body decoded by `encoding`, what does not decode replaced."""
        text: str | None = self.__dict__.get("_text")
        if text is None:
            content = self.content
            text = self._text = (
                content.decode(self.encoding or "utf-8", "replace") if content else ""
            )
        return text

    def raise_for_status(self) -> httpx.Response:
        _ = self.request  # httpx's check reads the attribute, not the property
        return super().raise_for_status()


@lru_cache(maxsize=64)
def _charset(content_type: str) -> str | None:
    """The charset of a Content-Type, parsed as httpx parses it (through `email.message`,
    which cost about as much as the rest of reading an answer's text) once per distinct
    value: a destination answers with the same one every time."""
    message = email.message.Message()
    message["content-type"] = content_type
    return message.get_content_charset(failobj=None)


@lru_cache(maxsize=64)
def _known_charset(content_type: str | None) -> str | None:
    """The charset of a Content-Type when Python has a codec for it (httpx's `encoding`
    takes it then, and the default otherwise)."""
    charset = None if content_type is None else _charset(content_type)
    if charset is None:
        return None
    try:
        codecs.lookup(charset)
    except LookupError:
        return None
    return charset
