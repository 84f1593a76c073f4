"""Protobuf framing of a DiscoveryResponse from pre-serialized parts.

A response differs between streams only by its nonce and by which resources a
stream subscribed to. Serializing a betterproto2 message costs about a
millisecond (it validates through pydantic), which is far too much to pay per
stream on a thousand-sidecar failover. So resources are serialized once per
topology version (as ``google.protobuf.Any`` bytes) and a response is framed
here by concatenating length-delimited fields; protobuf explicitly allows a
message to be the concatenation of its fields. ``tests/unit/test_wire.py``
checks the result parses back with envoy-data-plane's own classes.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "delta_resource",
    "delta_response_bytes",
    "len_field",
    "sotw_body",
    "sotw_response_bytes",
    "varint",
]

# envoy.service.discovery.v3.DiscoveryResponse field numbers
_VERSION_INFO, _RESOURCES, _TYPE_URL, _NONCE = 1, 2, 4, 5
# DeltaDiscoveryResponse
_D_SYS_VERSION, _D_RESOURCES, _D_TYPE_URL, _D_NONCE, _D_REMOVED = 1, 2, 4, 5, 6
# Resource (the Delta envelope of one resource)
_R_VERSION, _R_RESOURCE, _R_NAME = 1, 2, 3
_WIRE_LEN = 2


def varint(value: int) -> bytes:
    """Unsigned LEB128, protobuf's varint."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def len_field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (strings, bytes and embedded messages)."""
    return varint((number << 3) | _WIRE_LEN) + varint(len(payload)) + payload


def sotw_body(version: str, resources: Iterable[bytes], type_url: str) -> bytes:
    """Everything of a DiscoveryResponse except the nonce; computed once per version."""
    parts = [len_field(_VERSION_INFO, version.encode())]
    parts.extend(len_field(_RESOURCES, r) for r in resources)
    parts.append(len_field(_TYPE_URL, type_url.encode()))
    return b"".join(parts)


def sotw_response_bytes(body: bytes, nonce: str) -> bytes:
    """A complete DiscoveryResponse: the shared body plus this stream's nonce."""
    return body + len_field(_NONCE, nonce.encode())


def delta_resource(name: str, version: str, packed_any: bytes) -> bytes:
    """A serialized Delta ``Resource``: name, per-resource version and the ``Any``."""
    return (
        len_field(_R_NAME, name.encode())
        + len_field(_R_VERSION, version.encode())
        + len_field(_R_RESOURCE, packed_any)
    )


def delta_response_bytes(
    system_version: str,
    resources: Iterable[bytes],
    type_url: str,
    nonce: str,
    removed: Iterable[str] = (),
) -> bytes:
    """A DeltaDiscoveryResponse from pre-serialized ``Resource`` messages."""
    parts = [len_field(_D_SYS_VERSION, system_version.encode())]
    parts.extend(len_field(_D_RESOURCES, r) for r in resources)
    parts.append(len_field(_D_TYPE_URL, type_url.encode()))
    parts.append(len_field(_D_NONCE, nonce.encode()))
    parts.extend(len_field(_D_REMOVED, name.encode()) for name in removed)
    return b"".join(parts)
