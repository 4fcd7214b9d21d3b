"""The platform's client-side storage (1EdTech "LTI Client Side postMessages" and "OIDC Login
with LTI Client Side postMessages"), for a tool whose cookies an LMS frame blocks.

At login, when the platform names a storage frame (`lti_storage_target`), the tool answers a
small page that stores the login's state and nonce in that frame (`lti.put_data`, keys
`state_<state>` and `nonce_<nonce>`) and then goes on to the platform's auth URL; the state
cookie is still set, and is the first choice. At a launch that comes without the cookie, the
tool answers a page that reads them back (`lti.get_data`) and posts them with the id token.

Messages go only to the platform's OIDC auth origin, and answers are taken only from it, so a
page that frames gradesync cannot answer in the platform's place. The proof is only taken
from gradesync's own page (the POST's Origin is gradesync's): a cross-site form can post any
value, but cannot run the page that asked the platform's frame.
"""

from __future__ import annotations

import hmac
import html
import json
from collections.abc import Mapping
from typing import Any

from gradesync.adapters.destinations.ags_urls import origin_of
from gradesync.lti.oidc import LoginState
from gradesync.services.lti.errors import LaunchRefused

# the launch form's fields the tool's own page adds
PROOF_FIELD = "lti_storage"
STATE_FIELD = "lti_storage_state"
NONCE_FIELD = "lti_storage_nonce"

# How long the page waits for the platform's frame before going on without it (the spec
# leaves the time to the tool; a frame that never answers must not stall the launch).
ANSWER_WAIT_MS = 3000


def origin(url: str) -> str:
    parsed = origin_of(url)
    if parsed is None:
        return ""
    scheme, host, port = parsed
    default = {"https": 443, "http": 80}.get(scheme)
    host = f"[{host}]" if ":" in host else host  # as a browser writes an IPv6 origin
    return f"{scheme}://{host}" + ("" if port == default else f":{port}")


def state_key(state: str) -> str:
    return f"state_{state}"


def nonce_key(nonce: str) -> str:
    return f"nonce_{nonce}"


def _data(values: dict[str, Any]) -> str:
    # JSON inside a <script> element: "<" escaped so no value can close the element
    return json.dumps(values).replace("<", "\\u003c")


# Sends one message to the platform's frame and waits for its answer from the platform's
# origin, with the same message_id; resolves to the answer (null when none came in time).
_ASK = """
const cfg = JSON.parse(document.getElementById('lti-storage').textContent);
function frame() {
  try {
    if (cfg.target === '_parent') return window.parent === window ? null : window.parent;
    return window.parent.frames[cfg.target] || null;
  } catch (e) { return null; }
}
function ask(subject, key, value) {
  return new Promise((resolve) => {
    const target = frame();
    if (!target) { resolve(null); return; }
    const id = subject + '-' + Math.random().toString(36).slice(2);
    const done = (answer) => { window.removeEventListener('message', on); resolve(answer); };
    const timer = setTimeout(() => done(null), cfg.wait);
    function on(event) {
      const d = event.data;
      if (event.origin !== cfg.origin || !d || d.message_id !== id
          || d.subject !== subject + '.response') return;
      clearTimeout(timer);
      done(d.error ? null : d);
    }
    window.addEventListener('message', on);
    const message = {subject: subject, message_id: id, key: key};
    if (value !== undefined) message.value = value;
    target.postMessage(message, cfg.origin);
  });
}
"""


def _page(title: str, body: str, data: dict[str, Any], script: str) -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head><body>{body}"
        f"<script type='application/json' id='lti-storage'>{_data(data)}</script>"
        f"<script>{_ASK}{script}</script></body></html>"
    )


def login_page(*, auth_url: str, redirect_url: str, state: str, nonce: str, target: str) -> str:
    """The login's answer when the platform offers its storage: store, then go on."""
    data = {
        "origin": origin(auth_url),
        "target": target,
        "wait": ANSWER_WAIT_MS,
        "redirect": redirect_url,
        "state": [state_key(state), state],
        "nonce": [nonce_key(nonce), nonce],
    }
    script = """
Promise.all([ask('lti.put_data', cfg.state[0], cfg.state[1]),
             ask('lti.put_data', cfg.nonce[0], cfg.nonce[1])])
  .then(() => window.location.replace(cfg.redirect));
"""
    body = (
        "<p>Starting gradesync...</p><noscript><p><a href='"
        f"{html.escape(redirect_url)}'>Continue</a></p></noscript>"
    )
    return _page("Starting gradesync", body, data, script)


def launch_page(*, action: str, auth_url: str, form: Mapping[str, str], state: LoginState) -> str:
    """The launch's answer when its state cookie is missing and the login offered the
    platform's storage: read the state and nonce back, post them with the launch."""
    raw_state = str(form.get("state") or "")
    data = {
        "origin": origin(auth_url),
        "target": state.storage_target,
        "wait": ANSWER_WAIT_MS,
        "state": state_key(raw_state),
        "nonce": nonce_key(state.nonce),
    }
    fields = "".join(
        f"<input type='hidden' name='{html.escape(name)}' value='{html.escape(str(value))}'>"
        for name, value in (
            ("id_token", form.get("id_token") or ""),
            ("state", raw_state),
            (PROOF_FIELD, "1"),
            (STATE_FIELD, ""),
            (NONCE_FIELD, ""),
        )
    )
    script = f"""
Promise.all([ask('lti.get_data', cfg.state), ask('lti.get_data', cfg.nonce)])
  .then(([s, n]) => {{
    const f = document.forms[0];
    f.elements['{STATE_FIELD}'].value = s && typeof s.value === 'string' ? s.value : '';
    f.elements['{NONCE_FIELD}'].value = n && typeof n.value === 'string' ? n.value : '';
    f.submit();
  }});
"""
    body = (
        f"<form method='post' action='{html.escape(action)}'>{fields}"
        "<noscript><button type='submit'>Continue</button></noscript></form>"
    )
    return _page("Opening gradesync", body, data, script)


def is_proof(form: Mapping[str, str]) -> bool:
    """The launch is the tool page's second post (with what the platform's storage held)."""
    return form.get(PROOF_FIELD) == "1"


def check_proof(
    form: Mapping[str, str], request_origin: str | None, base_url: str, state: LoginState
) -> bool:
    """True when the platform's storage holds this login's state and nonce (the browser that
    started the login is this one); False when the platform's frame did not answer. Refuses
    a proof not posted by gradesync's own page, or values that are not this login's."""
    who: dict[str, Any] = {"tenant_id": state.tenant_id, "destination_id": state.destination_id}
    if not request_origin or request_origin != origin(base_url):
        raise LaunchRefused(
            "storage_origin",
            f"{PROOF_FIELD}: taken only from gradesync's own page (Origin "
            f"{request_origin or 'missing'}, expected {origin(base_url)})",
            status=403,
            **who,
        )
    got_state = str(form.get(STATE_FIELD) or "")
    got_nonce = str(form.get(NONCE_FIELD) or "")
    if not got_state and not got_nonce:
        return False
    same_state = hmac.compare_digest(got_state.encode(), str(form.get("state") or "").encode())
    if not (same_state and hmac.compare_digest(got_nonce.encode(), state.nonce.encode())):
        raise LaunchRefused(
            "storage_mismatch",
            f"{STATE_FIELD}: the platform's storage does not hold this login's state and "
            "nonce (a launch started in another browser)",
            status=401,
            **who,
        )
    return True
