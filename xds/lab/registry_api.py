"""A minimal client for the registry HTTP API v2: push and pull images without a Docker engine.

The end-to-end test needs what ``docker push`` / ``docker pull`` do on the wire,
against real registry replicas, with every request and its status recorded so
that "zero failed registry requests" is an observation rather than a hope. The
API is small and stable (distribution's ``docs/spec/api.md``): blob uploads are
``POST /v2/<name>/blobs/uploads/`` then either one ``PUT ?digest=`` with the body
(monolithic) or ``PATCH`` chunks and a closing ``PUT``; manifests are ``PUT`` as
Docker schema 2 JSON referencing a config blob and layer blobs; pulls are
``GET``/``HEAD`` on manifests and blobs. Only the standard library is used.

An upload's ``Location`` carries its state signed with the registry's
``http.secret``; :meth:`RegistryClient.push_blob` can finish an upload on another
replica (``finish_on``), which is what a load balancer in front of replicas
sharing a secret and storage does to a client.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "CONFIG_MEDIA_TYPE",
    "LAYER_MEDIA_TYPE",
    "MANIFEST_MEDIA_TYPE",
    "Image",
    "RegistryClient",
    "RegistryError",
    "RequestLog",
    "RequestRecord",
    "digest_of",
]

MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_MEDIA_TYPE = "application/vnd.docker.container.image.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.docker.image.rootfs.diff.tar.gzip"

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def digest_of(data: bytes) -> str:
    """The content digest the registry uses: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


class RegistryError(Exception):
    """A registry request failed: transport error, unexpected status or wrong content."""

    def __init__(self, method: str, url: str, status: int | None, detail: str) -> None:
        self.method = method
        self.url = url
        self.status = status
        self.detail = detail
        super().__init__(
            f"{method} {url}: {status if status is not None else 'no answer'} {detail}"
        )


@dataclass(frozen=True)
class RequestRecord:
    """One HTTP request: when it started (monotonic), where, and how it ended."""

    started: float
    seconds: float
    replica: str
    method: str
    path: str
    status: int | None
    error: str | None  # None: the expected status and content

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class RequestLog:
    """Every request made by one or more clients; thread-safe appends."""

    records: list[RequestRecord] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, record: RequestRecord) -> None:
        with self._lock:
            self.records.append(record)

    def snapshot(self) -> list[RequestRecord]:
        with self._lock:
            return list(self.records)

    def failures(self) -> list[RequestRecord]:
        return [r for r in self.snapshot() if not r.ok]


@dataclass(frozen=True)
class Image:
    """What was pushed: enough to pull it back and compare byte for byte."""

    repo: str
    tag: str
    manifest: bytes
    manifest_digest: str
    config_digest: str
    layer_digests: tuple[str, ...]
    blobs: dict[str, bytes]

    @property
    def blob_digests(self) -> tuple[str, ...]:
        return (self.config_digest, *self.layer_digests)


def schema2_manifest(config: bytes, layers: Sequence[bytes]) -> bytes:
    """A Docker image manifest (schema 2) for a config blob and layer blobs."""
    body = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": CONFIG_MEDIA_TYPE,
            "size": len(config),
            "digest": digest_of(config),
        },
        "layers": [
            {"mediaType": LAYER_MEDIA_TYPE, "size": len(layer), "digest": digest_of(layer)}
            for layer in layers
        ],
    }
    return json.dumps(body, indent=3).encode()


class RegistryClient:
    """Talks to one registry replica at ``base_url`` and records every request in ``log``."""

    def __init__(
        self,
        base_url: str,
        name: str = "registry",
        *,
        log: RequestLog | None = None,
        timeout: float = 15.0,
    ) -> None:
        if urllib.parse.urlsplit(base_url).scheme not in ("http", "https"):
            raise ValueError(f"registry URL must be http(s)://host:port, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.name = name
        self.log = log if log is not None else RequestLog()
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"<RegistryClient {self.name} {self.base_url}>"

    # --- plumbing --------------------------------------------------------------

    def _url(self, path_or_url: str) -> str:
        """A path on this replica, or an absolute URL re-pointed at this replica."""
        parts = urllib.parse.urlsplit(path_or_url)
        base = urllib.parse.urlsplit(self.base_url)
        return urllib.parse.urlunsplit(
            (base.scheme, base.netloc, parts.path, parts.query, parts.fragment)
        )

    def _request(
        self,
        method: str,
        path_or_url: str,
        expect: int,
        *,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        check: Callable[[int, dict[str, str], bytes], str | None] | None = None,
    ) -> tuple[dict[str, str], bytes]:
        url = self._url(path_or_url)
        path = urllib.parse.urlsplit(url).path
        # S310: _url() always takes the scheme from base_url, checked to be http(s).
        request = urllib.request.Request(url, data, headers or {}, method=method)  # noqa: S310
        started = time.monotonic()
        status: int | None = None
        body = b""
        response_headers: dict[str, str] = {}
        error: str | None = None
        try:
            with _opener.open(request, timeout=self.timeout) as resp:
                status = int(resp.status)
                response_headers = {k.lower(): v for k, v in resp.headers.items()}
                body = resp.read()
        except urllib.error.HTTPError as exc:
            status = exc.code
            body = exc.read()
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc}"
        if error is None and status != expect:
            error = f"expected {expect}, got {status}: {body[:200].decode(errors='replace')}"
        if error is None and check is not None and status is not None:
            error = check(status, response_headers, body)
        self.log.add(
            RequestRecord(
                started=started,
                seconds=time.monotonic() - started,
                replica=self.name,
                method=method,
                path=path,
                status=status,
                error=error,
            )
        )
        if error is not None:
            raise RegistryError(method, url, status, error)
        return response_headers, body

    # --- blobs -----------------------------------------------------------------

    def start_upload(self, repo: str) -> str:
        """``POST /v2/<repo>/blobs/uploads/``: the upload's Location."""
        headers, _ = self._request("POST", f"/v2/{repo}/blobs/uploads/", 202)
        location = headers.get("location")
        if not location:
            raise RegistryError("POST", f"/v2/{repo}/blobs/uploads/", 202, "no Location header")
        return location

    def push_blob(
        self,
        repo: str,
        data: bytes,
        *,
        chunk_size: int | None = None,
        finish_on: RegistryClient | None = None,
    ) -> str:
        """Upload ``data`` and return its digest.

        Monolithic (one ``PUT`` with the body) unless ``chunk_size`` is given, in
        which case the body goes in ``PATCH`` chunks and the ``PUT`` only closes
        the upload. The closing request goes to ``finish_on`` if given.
        """
        digest = digest_of(data)
        location = self.start_upload(repo)
        finisher = finish_on or self
        if chunk_size:
            offset = 0
            while offset < len(data):
                chunk = data[offset : offset + chunk_size]
                headers, _ = self._request(
                    "PATCH",
                    location,
                    202,
                    data=chunk,
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                    },
                )
                location = headers.get("location", location)
                offset += len(chunk)
            body: bytes | None = b""
        else:
            body = data
        sep = "&" if "?" in location else "?"

        def same_digest(status: int, headers: dict[str, str], _: bytes) -> str | None:
            got = headers.get("docker-content-digest")
            return None if got == digest else f"Docker-Content-Digest {got!r} != {digest}"

        finisher._request(
            "PUT",
            f"{location}{sep}digest={urllib.parse.quote(digest)}",
            201,
            data=body,
            headers={"Content-Type": "application/octet-stream"},
            check=same_digest,
        )
        return digest

    def head_blob(self, repo: str, digest: str, size: int | None = None) -> None:
        """``HEAD`` a blob; with ``size``, its Content-Length must match."""

        def length(status: int, headers: dict[str, str], _: bytes) -> str | None:
            if size is None or headers.get("content-length") == str(size):
                return None
            return f"Content-Length {headers.get('content-length')!r} != {size}"

        self._request("HEAD", f"/v2/{repo}/blobs/{digest}", 200, check=length)

    def get_blob(self, repo: str, digest: str) -> bytes:
        """``GET`` a blob; its content must hash to ``digest``."""

        def content(status: int, headers: dict[str, str], body: bytes) -> str | None:
            return None if digest_of(body) == digest else "content does not match its digest"

        _, body = self._request("GET", f"/v2/{repo}/blobs/{digest}", 200, check=content)
        return body

    # --- manifests -------------------------------------------------------------

    def put_manifest(self, repo: str, reference: str, manifest: bytes) -> str:
        """``PUT`` a schema 2 manifest under a tag (or digest); return its digest."""
        digest = digest_of(manifest)

        def same_digest(status: int, headers: dict[str, str], _: bytes) -> str | None:
            got = headers.get("docker-content-digest")
            return None if got == digest else f"Docker-Content-Digest {got!r} != {digest}"

        self._request(
            "PUT",
            f"/v2/{repo}/manifests/{reference}",
            201,
            data=manifest,
            headers={"Content-Type": MANIFEST_MEDIA_TYPE},
            check=same_digest,
        )
        return digest

    def get_manifest(self, repo: str, reference: str, expected: bytes | None = None) -> bytes:
        """``GET`` a manifest (asking for schema 2); with ``expected``, bytes must match."""

        def same(status: int, headers: dict[str, str], body: bytes) -> str | None:
            return None if expected is None or body == expected else "manifest bytes differ"

        _, body = self._request(
            "GET",
            f"/v2/{repo}/manifests/{reference}",
            200,
            headers={"Accept": MANIFEST_MEDIA_TYPE},
            check=same,
        )
        return body

    # --- images ----------------------------------------------------------------

    def push_image(
        self,
        repo: str,
        tag: str,
        config: bytes,
        layers: Sequence[bytes],
        *,
        other: RegistryClient | None = None,
    ) -> Image:
        """Push a config blob, layer blobs and the manifest tying them together.

        With ``other``, the last layer is uploaded in chunks started here and
        finished on ``other`` (an upload crossing replicas, as behind a load balancer).
        """
        blobs = {digest_of(config): config}
        config_digest = self.push_blob(repo, config)
        layer_digests: list[str] = []
        for i, layer in enumerate(layers):
            crossing = other is not None and i == len(layers) - 1
            digest = self.push_blob(
                repo,
                layer,
                chunk_size=max(1, len(layer) // 2) if crossing else None,
                finish_on=other if crossing else None,
            )
            layer_digests.append(digest)
            blobs[digest] = layer
        manifest = schema2_manifest(config, layers)
        manifest_digest = self.put_manifest(repo, tag, manifest)
        return Image(
            repo=repo,
            tag=tag,
            manifest=manifest,
            manifest_digest=manifest_digest,
            config_digest=config_digest,
            layer_digests=tuple(layer_digests),
            blobs=blobs,
        )

    def pull_image(self, image: Image) -> None:
        """Pull ``image`` the way a Docker engine does and check every byte."""
        self.get_manifest(image.repo, image.tag, expected=image.manifest)
        self.get_manifest(image.repo, image.manifest_digest, expected=image.manifest)
        for digest in image.blob_digests:
            self.head_blob(image.repo, digest, size=len(image.blobs[digest]))
            self.get_blob(image.repo, digest)
