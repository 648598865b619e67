"""Pushing an exported GGUF into an Ollama server on this machine, through its HTTP API.

`POST /api/blobs/sha256:<digest>` (after `HEAD` says it is not there yet) uploads the file;
`POST /api/create` names the model, the blob (`files`), its template and parameters.

The server must be on loopback, and that is decided before any connection: the URL's scheme is
http(s); it has no user-info, query or fragment; its host is `localhost` or a loopback address
written the one unambiguous way (dotted-quad 127.x.y.z, or ::1) — decimal, hex, octal and short
IPv4 forms, IPv4-mapped IPv6 and `0.0.0.0` are refused even where some parser would read them as
loopback, because another parser would not; `localhost` must resolve to loopback addresses only,
and the connection goes to the address checked, not to a second lookup. Redirects are never
followed: a 3xx is an error.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tuneyard.errors import PlatformError, SpecError

DEFAULT_OLLAMA_URL = "http://127.0.0.1:11434"
TIMEOUT_S = 30.0
UPLOAD_TIMEOUT_S = 600.0
_DOTTED_QUAD = re.compile(r"(?:0|[1-9][0-9]{0,2})(?:\.(?:0|[1-9][0-9]{0,2})){3}")
MODEL_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}(?::[A-Za-z0-9][A-Za-z0-9._-]{0,63})?"
"""An Ollama model name, with an optional `:tag`; the API's schema documents the same pattern."""
_MODEL_NAME = re.compile(MODEL_NAME_PATTERN)


class OllamaError(PlatformError):
    """The Ollama server refused or failed the import."""


@dataclass(frozen=True)
class LoopbackTarget:
    """A checked Ollama URL: where to connect (an address, never a name) and what to call it."""

    scheme: str
    address: str
    port: int
    host_header: str


def refuse(field: str, message: str) -> SpecError:
    return SpecError([{"field": field, "message": message}])


def check_loopback_url(url: str, field: str = "ollama_url") -> LoopbackTarget:
    """The URL as a `LoopbackTarget`, or SpecError naming `field`; never connects anywhere."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise refuse(field, f"is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise refuse(field, "must be an http or https URL")
    if "@" in parts.netloc or parts.username is not None:
        raise refuse(field, "must not carry user-info (user@host)")
    if parts.query or parts.fragment or parts.path not in ("", "/"):
        raise refuse(field, "must be the server's base URL, without a path, query or fragment")
    host = (parts.hostname or "").lower()
    if not host:
        raise refuse(field, "names no host")
    if port == 0:
        raise refuse(field, "port 0 is not a port")
    address = _loopback_address(host, field)
    return LoopbackTarget(parts.scheme, address, port or (443 if parts.scheme == "https" else 80), parts.netloc)


def _loopback_address(host: str, field: str) -> str:
    if host == "localhost":
        return _resolve_localhost(field)
    if ":" in host:  # an IPv6 literal ([...] in the URL)
        try:
            v6 = ipaddress.IPv6Address(host)
        except ValueError:
            raise refuse(field, f"{host!r} is not an IPv6 address") from None
        if v6 != ipaddress.IPv6Address("::1"):
            raise refuse(field, f"{host} is not a loopback address (only ::1 among IPv6 addresses)")
        return str(v6)
    if not _DOTTED_QUAD.fullmatch(host):
        raise refuse(field, f"host {host!r} must be localhost, a dotted-quad 127.x.y.z address or [::1]")
    try:
        v4 = ipaddress.IPv4Address(host)
    except ValueError:  # a part past 255: 127.0.0.300
        raise refuse(field, f"{host!r} is not an IPv4 address") from None
    if not v4.is_loopback:
        raise refuse(field, f"{host} is not a loopback address")
    return str(v4)


def _resolve_localhost(field: str) -> str:
    try:
        infos = socket.getaddrinfo("localhost", None, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise refuse(field, f"localhost does not resolve here ({exc})") from None
    addresses = [str(info[4][0]).split("%")[0] for info in infos]
    if not addresses or not all(ipaddress.ip_address(a).is_loopback for a in addresses):
        raise refuse(field, f"localhost resolves to {sorted(set(addresses))}, not only to loopback")
    return addresses[0]


class OllamaClient:
    """The two calls an import needs, to one checked loopback target."""

    def __init__(self, target: LoopbackTarget) -> None:
        self.target = target

    def blob_exists(self, digest: str) -> bool:
        status, _ = self._call("HEAD", f"/api/blobs/{digest}")
        return status == http.client.OK

    def push_blob(self, path: Path, digest: str) -> None:
        with open(path, "rb") as handle:
            status, body = self._call("POST", f"/api/blobs/{digest}", handle, path.stat().st_size,
                                      "application/octet-stream", timeout=UPLOAD_TIMEOUT_S)
        if status not in (http.client.OK, http.client.CREATED):
            raise OllamaError(f"Ollama refused the blob {digest} ({status}): {body[:300]!r}")

    def create(self, request: dict[str, Any]) -> dict[str, Any]:
        payload = json.dumps(request).encode()
        status, body = self._call("POST", "/api/create", payload, len(payload), "application/json",
                                  timeout=UPLOAD_TIMEOUT_S)
        if status != http.client.OK:
            raise OllamaError(f"Ollama refused to create the model ({status}): {body[:300]!r}")
        # without stream=false Ollama answers a stream of JSON lines; the last one holds the outcome
        lines = [line for line in body.decode("utf-8", "replace").splitlines() if line.strip()]
        try:
            last = json.loads(lines[-1]) if lines else {}
        except ValueError:
            raise OllamaError(f"Ollama's answer to /api/create is not JSON: {lines[-1][:300]!r}") from None
        if not isinstance(last, dict) or last.get("error") or last.get("status") != "success":
            raise OllamaError(f"Ollama did not create the model: {last}")
        return last

    def _call(self, method: str, path: str, body: Any = None, length: int | None = None,
              content_type: str | None = None, timeout: float = TIMEOUT_S) -> tuple[int, bytes]:
        t = self.target
        connection_type = http.client.HTTPSConnection if t.scheme == "https" else http.client.HTTPConnection
        connection = connection_type(t.address, t.port, timeout=timeout)
        headers = {"Host": t.host_header}
        if length is not None:
            headers["Content-Length"] = str(length)
        if content_type:
            headers["Content-Type"] = content_type
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except OSError as exc:
            raise OllamaError(f"cannot reach Ollama at {t.host_header} ({exc})") from None
        except http.client.HTTPException as exc:  # something on that port that does not speak HTTP
            raise OllamaError(f"what answers at {t.host_header} does not speak HTTP like Ollama "
                              f"({type(exc).__name__}: {exc})") from None
        finally:
            connection.close()
        if 300 <= response.status < 400:
            raise OllamaError(f"Ollama answered {method} {path} with a redirect ({response.status} to "
                              f"{response.getheader('Location')!r}); redirects are not followed")
        return response.status, data


def check_model_name(name: str, field: str = "model_name") -> str:
    if not _MODEL_NAME.fullmatch(name):
        raise refuse(field, "must be letters, digits, '.', '_' or '-' (an optional ':tag' too), at most 64 each")
    return name


def import_gguf(target: LoopbackTarget, gguf_file: Path, sha256: str, model_name: str,
                recipe: dict[str, Any]) -> dict[str, Any]:
    """Push the blob (unless Ollama has it) and create `model_name` from it; what Ollama said."""
    client = OllamaClient(target)
    digest = f"sha256:{sha256}"
    if not client.blob_exists(digest):
        client.push_blob(gguf_file, digest)
    request: dict[str, Any] = {"model": model_name, "files": {gguf_file.name: digest}, "stream": False}
    if recipe.get("template"):
        request["template"] = recipe["template"]
    parameters = {**recipe.get("parameters", {}), **({"stop": recipe["stop"]} if recipe.get("stop") else {})}
    if parameters:
        request["parameters"] = parameters
    return client.create(request)
