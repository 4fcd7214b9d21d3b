"""The sandbox LMS's client-side storage for tools (1EdTech "LTI Client Side postMessages"):
a course page that shows a tool in a frame, next to a storage frame that answers
`lti.put_data` / `lti.get_data` (and `lti.capabilities`) for that tool.

GET /lti/course?client_id&user&course&resource_link_id  the course page; the tool's login
    gets `lti_storage_target=lti_storage_frame`
GET /lti/storage?tool_origin=...                     the storage frame

The frame answers only messages from the tool's origin (its registered login URL), keeps
values per origin, and answers to that origin only. `forge=1` on the course page makes the
frame answer `lti.get_data` with a value that is not the one stored: a platform frame (or a
page posing as one) lying to the tool, for tests.
"""

from __future__ import annotations

import html
import json
from typing import Any
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from .common import json_response
from .context import Sandbox
from .lti13 import start_launch
from .state import SeedError

COURSE_PATH = "/lti/course"
STORAGE_PATH = "/lti/storage"
FRAME_NAME = "lti_storage_frame"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _data(values: dict[str, Any]) -> str:
    return json.dumps(values).replace("<", "\\u003c")


async def course_page(request: Request) -> Response:
    sb: Sandbox = request.app.state.sandbox
    spec: dict[str, Any] = dict(request.query_params)
    forge = spec.pop("forge", None) in ("1", "true")
    try:
        started = start_launch(sb, request, spec)
    except SeedError as exc:
        return json_response({"error": "invalid_request", "error_description": str(exc)}, 400)
    login = f"{started['url']}&{urlencode({'lti_storage_target': FRAME_NAME})}"
    storage = (
        STORAGE_PATH
        + "?"
        + urlencode({"tool_origin": _origin(started["url"]), **({"forge": "1"} if forge else {})})
    )
    # The tool's login starts once the storage frame can answer it: from the frame's own
    # onload attribute, which is there before the frame loads (a listener added by a later
    # script can come after the load on a busy machine, and the tool never starts).
    page = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Course</title>"
        f"<script type='application/json' id='launch'>{_data({'login': login})}</script>"
        "<script>function startTool() { const tool = document.getElementById('tool'); "
        "if (!tool.src) tool.src = "
        "JSON.parse(document.getElementById('launch').textContent).login; }</script>"
        "</head><body><h1>Course</h1>"
        "<iframe id='tool' title='Tool' width='900' height='600'></iframe>"
        f"<iframe name='{FRAME_NAME}' src='{html.escape(storage)}' hidden "
        "onload='startTool()'></iframe>"
        "</body></html>"
    )
    return HTMLResponse(page)


_FRAME_SCRIPT = """
const cfg = JSON.parse(document.getElementById('cfg').textContent);
const store = new Map();
window.addEventListener('message', (event) => {
  const d = event.data;
  if (event.origin !== cfg.tool_origin || !d || typeof d.subject !== 'string') return;
  const reply = (m) => event.source.postMessage(
    Object.assign({message_id: d.message_id, subject: d.subject + '.response'}, m),
    event.origin);
  const slot = event.origin + ' ' + d.key;
  if (d.subject === 'lti.capabilities') {
    reply({supported_messages: [{subject: 'lti.put_data', frame: cfg.frame},
                                {subject: 'lti.get_data', frame: cfg.frame}]});
  } else if (d.subject === 'lti.put_data' && typeof d.key === 'string') {
    store.set(slot, d.value);
    reply({key: d.key, value: d.value});
  } else if (d.subject === 'lti.get_data' && typeof d.key === 'string') {
    if (!store.has(slot)) {
      reply({key: d.key, error: {code: 'bad_request', message: 'no value for this key'}});
    } else {
      reply({key: d.key, value: cfg.forge ? 'forged-' + store.get(slot) : store.get(slot)});
    }
  } else {
    reply({error: {code: 'unsupported_subject', message: 'not supported: ' + d.subject}});
  }
});
"""


async def storage_frame(request: Request) -> Response:
    tool_origin = request.query_params.get("tool_origin", "")
    cfg = {
        "tool_origin": tool_origin,
        "forge": request.query_params.get("forge") == "1",
        "frame": FRAME_NAME,
    }
    return HTMLResponse(
        "<!doctype html><html><head><meta charset='utf-8'><title>Storage</title></head><body>"
        f"<script type='application/json' id='cfg'>{_data(cfg)}</script>"
        f"<script>{_FRAME_SCRIPT}</script></body></html>"
    )


routes = [
    Route(COURSE_PATH, course_page, methods=["GET"]),
    Route(STORAGE_PATH, storage_frame, methods=["GET"]),
]
