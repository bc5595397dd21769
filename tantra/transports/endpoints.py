"""Listen backlog for the hub's stream endpoints.

Why: Twisted's endpoints listen with a backlog of 50. When a hub restarts or
a network blip ends, every dashboard reconnects at once; past 50 pending
connections the kernel drops SYNs and clients wait for the 1 s (then 3 s)
SYN retransmit. ``--backlog`` (4096 by default, Linux's default
``net.core.somaxconn`` since 5.4, which also caps it) goes into every
endpoint description that does not name its own ``backlog=``.

Owns: that string rewrite and nothing else.
"""

from __future__ import annotations

import re

#: Endpoint kinds of Twisted that take ``backlog=`` (others are left alone).
_TAKES_BACKLOG = ("tcp", "tcp6", "ssl", "unix")
_HAS_BACKLOG = re.compile(r"(?<!\\):backlog=")


def with_backlog(description: str, backlog: int) -> str:
    """``description`` with ``:backlog=N`` added, unless it has one or cannot take one."""
    kind = description.split(":", 1)[0].strip().lower()
    if kind not in _TAKES_BACKLOG or _HAS_BACKLOG.search(description):
        return description
    return f"{description}:backlog={backlog}"
