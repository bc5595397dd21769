"""Request options Autobahn's message parser drops, kept for the router.

Owns: ``disclose_me`` on PUBLISH and CALL. Autobahn 26's ``Publish.parse`` and
``Call.parse`` no longer read it (Autobahn leaves disclosure to Crossbar's
configuration), but autobahn-js still sends it and the WAMP spec defines it.
:func:`keeping_disclosure` gives one connection's serializer a message map
whose PUBLISH and CALL parsers run Autobahn's own parser and then note the
option in the ``_router_internal`` slot Autobahn reserves on every message
for routers. :func:`disclose_requested` reads it back.

Does not own: decoding (Autobahn's serializers), any other option. The
override is per serializer *instance*; Autobahn's classes are not touched,
so clients in the same process are unaffected.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from autobahn.wamp import message

if TYPE_CHECKING:  # importing it at run time would bind txaio before Twisted is chosen
    from autobahn.wamp.serializer import Serializer

DISCLOSE_ME = "disclose_me"


class _KeepDisclosure:
    """Stands in for a message class in a serializer's type map: parse, then note the option."""

    def __init__(self, klass: type[message.Message]):
        self._klass = klass

    def parse(self, wmsg: list[Any]) -> message.Message:
        msg = self._klass.parse(wmsg)
        options = wmsg[2]  # PUBLISH and CALL: [type, request, options, uri, ...]
        if isinstance(options, dict) and options.get(DISCLOSE_ME) is True:
            msg._router_internal = {DISCLOSE_ME: True}
        return msg


def keeping_disclosure(serializer: Serializer) -> Serializer:
    """A copy of ``serializer`` whose PUBLISH and CALL keep ``disclose_me``."""
    ours = copy.copy(serializer)
    type_map: dict[int, Any] = dict(serializer.MESSAGE_TYPE_MAP)
    for klass in (message.Publish, message.Call):
        type_map[klass.MESSAGE_TYPE] = _KeepDisclosure(klass)
    ours.MESSAGE_TYPE_MAP = type_map
    return ours


def disclose_requested(msg: message.Message) -> bool:
    internal = msg._router_internal
    return isinstance(internal, dict) and internal.get(DISCLOSE_ME) is True
