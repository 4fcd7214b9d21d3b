"""The process's limit on open files, raised at start to what the operator allows.

Every platform a server sends to is an origin of its own in the HTTP pool: the connections in
use are bounded (200), but one it is done with stays open, idle, until its keep-alive expiry
(5 s). Sending to many hundreds of platforms at once can then hold more sockets than the soft
limit most systems start a process with (1,024), and the next socket, database connection or
log file fails with "too many open files". The hard limit is the operator's ceiling; the soft
one only a default, which a process may raise up to it.
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger(__name__)

# Where the hard limit is unlimited: more than any pool here holds, well under kernel maxima.
UNLIMITED_TARGET = 65_536


def raise_open_files_limit() -> int:
    """Raise the soft limit on open files to the hard one; the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = UNLIMITED_TARGET if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:  # a container may refuse: keep the default
            log.warning(
                "open files limit left at %d (raising it to %d failed: %s)", soft, target, exc
            )
            return soft
        log.info("open files limit raised from %d to %d", soft, target)
        return target
    return soft
