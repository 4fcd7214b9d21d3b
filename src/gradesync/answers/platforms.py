"""An LTI 1.3 platform registration as `GET /platforms/{id}` answers it and `gradesync
platforms show --json` prints it, with gradesync's URLs to paste into the LMS."""

from __future__ import annotations

from typing import Any

from gradesync.domain.model import Destination
from gradesync.lti import registration as reg
from gradesync.runtime import Runtime


def platform_view(d: Destination, rt: Runtime) -> dict[str, Any]:
    """A registration as the API shows it; a timed pause that has run out is not shown."""
    base_url = rt.settings.base_url
    d = d.as_of(rt.clock.now())
    return {
        **reg.spec_of(d),
        "paused_until": d.paused_until.isoformat() if d.paused_until else None,
        "pause_reason": d.pause_reason,
        "tool": reg.tool_urls(base_url),
    }
