"""The Ollama import talks to loopback only, decided before any connection, and follows no redirect."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.ollama_standin import OllamaStandIn, ollama_standin
from tuneyard.errors import SpecError
from tuneyard.export import ollama


@pytest.fixture
def standin() -> Iterator[OllamaStandIn]:
    with ollama_standin() as server:
        yield server


def refused_urls(port: int) -> list[str]:
    """Forms that are not, or not unambiguously, loopback; many of them name the stand-in's port, so a
    connection that slipped through would reach it and be counted."""
    return [
        f"http://2130706433:{port}",  # decimal 127.0.0.1
        f"http://0x7f000001:{port}",  # hex
        f"http://0x7f.0.0.1:{port}",
        f"http://0177.0.0.1:{port}",  # octal
        f"http://017700000001:{port}",
        f"http://127.1:{port}",  # short forms
        f"http://127.0.1:{port}",
        f"http://127.000.000.001:{port}",  # zero-padded
        f"http://%31%32%37.0.0.1:{port}",  # percent-encoded
        f"http://[::ffff:127.0.0.1]:{port}",  # IPv4-mapped IPv6
        f"http://[::ffff:7f00:1]:{port}",
        f"http://[0:0:0:0:0:ffff:127.0.0.1]:{port}",
        f"http://[::127.0.0.1]:{port}",  # IPv4-compatible
        f"http://[::1%25lo]:{port}",  # a zone id
        f"http://0.0.0.0:{port}",
        f"http://127.0.0.300:{port}",  # a part past 255
        f"http://0:{port}",
        f"http://[::]:{port}",
        f"http://user@127.0.0.1:{port}",  # user-info
        f"http://user:secret@localhost:{port}",
        f"http://evil.example@127.0.0.1:{port}",
        f"http://127.0.0.1:{port}@evil.example",
        f"http://127.0.0.1\\@evil.example:{port}",
        "http://10.0.0.1:11434",
        "http://192.168.1.10:11434",
        "http://169.254.169.254/latest/meta-data",
        "http://8.8.8.8:11434",
        "http://example.com:11434",
        f"http://localhost.example.com:{port}",
        f"http://127.0.0.1.nip.io:{port}",
        f"http://localhost.:{port}",
        "http://[fe80::1]:11434",
        "http://[::2]:11434",
        "http://[2001:db8::1]:11434",
        f"ftp://127.0.0.1:{port}",
        "file:///etc/passwd",
        f"gopher://127.0.0.1:{port}",
        f"127.0.0.1:{port}",  # no scheme
        f"//127.0.0.1:{port}",
        "http:///api",
        f"http://127.0.0.1:{port}/redirect?to=http://evil.example",  # a path and query
        f"http://127.0.0.1:{port}#@evil.example",
        "http://127.0.0.1:99999",
        "http://127.0.0.1:0",
    ]


def test_non_loopback_urls_are_refused_before_any_connection(standin: OllamaStandIn,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    connects: list[Any] = []
    real_connect = socket.socket.connect
    monkeypatch.setattr(socket.socket, "connect", lambda self, address: (connects.append(address),
                                                                         real_connect(self, address))[1])
    urls = refused_urls(standin.port)
    assert len(urls) >= 30
    accepted = []
    for url in urls:
        try:
            target = ollama.check_loopback_url(url)
        except SpecError as exc:
            assert exc.problems[0]["field"] == "ollama_url"
            continue
        accepted.append((url, target))
    assert not accepted
    assert connects == [] and standin.connections == 0 and standin.requests == []


@pytest.mark.parametrize("url,address", [
    ("http://127.0.0.1:11434", "127.0.0.1"), ("http://127.0.0.2:11434", "127.0.0.2"),
    ("http://[::1]:11434", "::1"), ("https://127.0.0.1", "127.0.0.1"), ("http://LOCALHOST:11434/", None),
])
def test_loopback_urls_are_accepted(url: str, address: str | None) -> None:
    target = ollama.check_loopback_url(url)
    if address is not None:
        assert target.address == address
    else:  # localhost: connected to the loopback address it resolved to, not looked up again
        import ipaddress

        assert ipaddress.ip_address(target.address).is_loopback


def test_localhost_resolving_elsewhere_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 0)),
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", 0))])
    with pytest.raises(SpecError, match="not only to loopback"):
        ollama.check_loopback_url("http://localhost:11434")


def test_import_pushes_the_blob_and_creates_the_model(standin: OllamaStandIn, tmp_path: Path) -> None:
    gguf = tmp_path / "model_x.q8_0.gguf"
    gguf.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    sha = hashlib.sha256(gguf.read_bytes()).hexdigest()
    recipe = {"template": "{{ .Prompt }}", "stop": ["<|im_end|>"], "parameters": {"temperature": 0.7}}
    target = ollama.check_loopback_url(standin.url)
    ollama.import_gguf(target, gguf, sha, "tuned-tiny", recipe)
    assert standin.blobs == {f"sha256:{sha}": gguf.read_bytes()}
    assert standin.created == [{"model": "tuned-tiny", "files": {gguf.name: f"sha256:{sha}"}, "stream": False,
                                "template": "{{ .Prompt }}",
                                "parameters": {"temperature": 0.7, "stop": ["<|im_end|>"]}}]
    assert [r[0] for r in standin.requests] == ["HEAD", "POST", "POST"]
    ollama.import_gguf(target, gguf, sha, "tuned-tiny-2", recipe)  # the blob is there: not sent again
    assert [r[0] for r in standin.requests[3:]] == ["HEAD", "POST"]


def test_a_wrong_digest_is_refused_by_the_server(standin: OllamaStandIn, tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF-bytes")
    with pytest.raises(ollama.OllamaError, match="refused the blob"):
        ollama.import_gguf(ollama.check_loopback_url(standin.url), gguf, "0" * 64, "m", {})
    assert standin.created == []


def test_a_redirect_is_not_followed(standin: OllamaStandIn, tmp_path: Path) -> None:
    with ollama_standin() as elsewhere:
        standin.redirect_to = f"http://127.0.0.1:{elsewhere.port}/api/blobs"
        gguf = tmp_path / "m.gguf"
        gguf.write_bytes(b"GGUF-bytes")
        with pytest.raises(ollama.OllamaError, match="redirect"):
            ollama.import_gguf(ollama.check_loopback_url(standin.url), gguf,
                               hashlib.sha256(b"GGUF-bytes").hexdigest(), "m", {})
        assert standin.requests == [("HEAD", f"/api/blobs/sha256:{hashlib.sha256(b'GGUF-bytes').hexdigest()}")]
        assert elsewhere.connections == 0


def test_model_names_are_checked() -> None:
    assert ollama.check_model_name("tuned-tiny:v1") == "tuned-tiny:v1"
    for bad in ("", "../x", "a b", "x" * 65, "-x", "a:b:c"):
        with pytest.raises(SpecError):
            ollama.check_model_name(bad)


NOT_OLLAMA = [b"SSH-2.0-OpenSSH_9.2\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nnot json!"]


@pytest.mark.parametrize("answer", NOT_OLLAMA, ids=["not-http", "not-json"])
def test_something_else_on_the_port_is_an_ollama_error(tmp_path: Path, answer: bytes) -> None:
    """Whatever listens there, the import ends with OllamaError naming it, never a bare exception."""
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()  # the create's one connection
        with conn:
            conn.recv(65536)
            conn.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    client = ollama.OllamaClient(ollama.check_loopback_url(f"http://127.0.0.1:{port}"))
    with pytest.raises(ollama.OllamaError):
        client.create({"model": "m", "files": {}, "stream": False})
    listener.close()
