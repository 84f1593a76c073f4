"""Raw ADS clients for tests (SotW and Delta): send requests, read responses with deadlines."""

from __future__ import annotations

import asyncio

import grpc
from envoy_data_plane.envoy.config.core.v3 import Node
from envoy_data_plane.envoy.service.discovery.v3 import (
    DeltaDiscoveryRequest,
    DeltaDiscoveryResponse,
    DiscoveryRequest,
    DiscoveryResponse,
)
from envoy_data_plane.google.rpc import Status

SOTW = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"


class AdsClient:
    """One SotW ADS stream to a server on ``target``."""

    def __init__(self, target: str) -> None:
        self.channel = grpc.aio.insecure_channel(target)
        self.call = self.channel.stream_stream(
            SOTW,
            request_serializer=DiscoveryRequest.SerializeToString,
            response_deserializer=DiscoveryResponse.FromString,
        )()
        self.responses: asyncio.Queue[DiscoveryResponse | BaseException] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        # grpc aio cancels the whole RPC when a pending read() is cancelled, so one task
        # reads for the stream's lifetime and tests wait on the queue instead.
        try:
            while True:
                resp = await self.call.read()
                if not isinstance(resp, DiscoveryResponse):
                    self.responses.put_nowait(EOFError("stream ended"))
                    return
                self.responses.put_nowait(resp)
        except BaseException as exc:
            self.responses.put_nowait(exc)

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

    async def recv(self, timeout: float = 5.0) -> DiscoveryResponse:
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

    async def ack(self, resp: DiscoveryResponse, names: list[str] | None = None) -> None:
        await self.send(resp.type_url, names, version=resp.version_info, nonce=resp.nonce)

    async def close(self) -> None:
        self.call.cancel()
        self._reader.cancel()
        await self.channel.close()


DELTA = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"


class DeltaAdsClient:
    """One Delta ADS stream to a server on ``target``."""

    def __init__(self, target: str) -> None:
        self.channel = grpc.aio.insecure_channel(target)
        self.call = self.channel.stream_stream(
            DELTA,
            request_serializer=DeltaDiscoveryRequest.SerializeToString,
            response_deserializer=DeltaDiscoveryResponse.FromString,
        )()
        self.responses: asyncio.Queue[DeltaDiscoveryResponse | BaseException] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            while True:
                resp = await self.call.read()
                if not isinstance(resp, DeltaDiscoveryResponse):
                    self.responses.put_nowait(EOFError("stream ended"))
                    return
                self.responses.put_nowait(resp)
        except BaseException as exc:
            self.responses.put_nowait(exc)

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

    async def recv(self, timeout: float = 5.0) -> DeltaDiscoveryResponse:
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

    async def ack(self, resp: DeltaDiscoveryResponse) -> None:
        await self.send(resp.type_url, nonce=resp.nonce)

    async def close(self) -> None:
        self.call.cancel()
        self._reader.cancel()
        await self.channel.close()
