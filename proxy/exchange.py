"""One request's context, carried through the phases of `proxy.handlers`."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from proxy.client_channel import ClientChannel
from proxy.core.dialects import Dialect
from proxy.core.endings import Ending
from proxy.core.runtime import Route, Runtime
from proxy.core.stats import RequestRecord
from proxy.services import Services


@dataclass(slots=True)
class Exchange:
    """The request, the snapshot and services it uses, what it learns (`record`) and how it
    ended (`ending`, fixed once)."""

    request: web.Request
    runtime: Runtime  # the snapshot taken when the request started
    services: Services
    record: RequestRecord
    dialect: Dialect  # guessed from the request until a route is chosen
    client_stall_s: float  # how long the client may take nothing we write (the route's, once known)
    channel: ClientChannel | None = None  # the event stream, once one is wanted
    ending: Ending | None = None

    @property
    def committed(self) -> bool:
        """A 200 event stream is on its way to the client: errors can only go in-band now."""
        return self.channel is not None and self.channel.committed

    def end(self, ending: Ending) -> None:
        """Fix how the request ended. The first call wins: it comes from the code that knew
        most (a client leaving while its error event is written keeps the real failure)."""
        if self.ending is None:
            self.ending = ending

    def open_channel(self, route: Route) -> ClientChannel:
        """The client's event stream for this request (not committed yet)."""
        self.channel = ClientChannel(self.request, route.dialect, route.relay, self.record)
        return self.channel


@dataclass(slots=True)
class ClientBody:
    """The client's request body and what routing needs from it. The bytes are given away once
    (`take`) to the upstream attempts, so they do not live as long as the stream."""

    data: bytes
    model: str | None
    stream: bool

    def take(self) -> bytes:
        data, self.data = self.data, b""
        return data
