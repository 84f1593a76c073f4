"""Raw ADS clients for tests (SotW and Delta): send requests, read responses with deadlines."""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

import grpc
from envoy_data_plane.envoy.config.core.v3 import Node
from envoy_data_plane.envoy.service.discovery.v3 import (
    DeltaDiscoveryRequest,
    DeltaDiscoveryResponse,
    DiscoveryRequest,
    DiscoveryResponse,
)
from envoy_data_plane.google.rpc import Status

DELTA = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
SOTW = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"


R = TypeVar("R", DiscoveryResponse, DeltaDiscoveryResponse)


class _Stream(Generic[R]):
    """One ADS stream and a reader task that queues every response (or the error)."""

    def __init__(self, target: str, method: str, request_type: type, response_type: type[R]):
        self.channel = grpc.aio.insecure_channel(target)
        self.call = self.channel.stream_stream(
            method,
            request_serializer=request_type.SerializeToString,
            response_deserializer=response_type.FromString,
        )()
        self._response_type = response_type
        self.responses: asyncio.Queue[R | BaseException] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        # grpc aio cancels the whole RPC when a pending read() is cancelled, so one task
        # reads for the stream's lifetime and tests wait on the queue instead.
        try:
            while True:
                resp = await self.call.read()
                if not isinstance(resp, self._response_type):
                    self.responses.put_nowait(EOFError("stream ended"))
                    return
                self.responses.put_nowait(resp)
        except BaseException as exc:
            self.responses.put_nowait(exc)

    async def recv(self, timeout: float = 5.0) -> R:
        item = await asyncio.wait_for(self.responses.get(), timeout)
        if isinstance(item, BaseException):
            raise item
        return item

    async def expect_silence(self, within: float = 0.3) -> None:
        """Assert no response arrives within ``within`` seconds."""
        try:
            item = await asyncio.wait_for(self.responses.get(), within)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected response or end of stream: {item!r}")

    async def close(self) -> None:
        self.call.cancel()
        self._reader.cancel()
        await self.channel.close()


class AdsClient(_Stream[DiscoveryResponse]):
    """One SotW ADS stream to a server on ``target``."""

    def __init__(self, target: str) -> None:
        super().__init__(target, SOTW, DiscoveryRequest, DiscoveryResponse)

    async def send(
        self,
        type_url: str,
        names: list[str] | None = None,
        *,
        version: str = "",
        nonce: str = "",
        node_id: str | None = None,
        error: str | None = None,
    ) -> None:
        req = DiscoveryRequest(
            type_url=type_url,
            resource_names=names or [],
            version_info=version,
            response_nonce=nonce,
        )
        if node_id is not None:
            req.node = Node(id=node_id, cluster="test")
        if error is not None:
            req.error_detail = Status(code=3, message=error)
        await self.call.write(req)

    async def ack(self, resp: DiscoveryResponse, names: list[str] | None = None) -> None:
        await self.send(resp.type_url, names, version=resp.version_info, nonce=resp.nonce)


class DeltaAdsClient(_Stream[DeltaDiscoveryResponse]):
    """One Delta ADS stream to a server on ``target``."""

    def __init__(self, target: str) -> None:
        super().__init__(target, DELTA, DeltaDiscoveryRequest, DeltaDiscoveryResponse)

    async def send(
        self,
        type_url: str,
        subscribe: list[str] | None = None,
        unsubscribe: list[str] | None = None,
        *,
        nonce: str = "",
        node_id: str | None = None,
        initial: dict[str, str] | None = None,
        error: str | None = None,
    ) -> None:
        req = DeltaDiscoveryRequest(
            type_url=type_url,
            resource_names_subscribe=subscribe or [],
            resource_names_unsubscribe=unsubscribe or [],
            initial_resource_versions=initial or {},
            response_nonce=nonce,
        )
        if node_id is not None:
            req.node = Node(id=node_id, cluster="test")
        if error is not None:
            req.error_detail = Status(code=3, message=error)
        await self.call.write(req)

    async def ack(self, resp: DeltaDiscoveryResponse) -> None:
        await self.send(resp.type_url, nonce=resp.nonce)
