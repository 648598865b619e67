"""A small HTTP server on loopback that plays the Hugging Face Hub's dataset endpoints huggingface_hub calls.

What huggingface_hub (hf_api.dataset_info, file_download.get_hf_file_metadata and http_get) asks, and
what it reads of the answers:

- `GET /api/datasets/{repo}` or `/api/datasets/{repo}/revision/{rev}` (`?blobs=true` for sizes): the
  repo's info, `sha` and `siblings` (`rfilename`, with `size` and `blobId` when blobs are asked for),
  `cardData` holding the README's YAML (its `configs`) when the repo has one.
- `HEAD` and `GET /datasets/{repo}/resolve/{rev}/{file}`: the file, with `X-Repo-Commit` (without it
  huggingface_hub refuses the answer as not a hub), `ETag` (the blob id, quoted) and `Content-Length`.
- Refusals carry `X-Error-Code` as the hub's do: `RepoNotFound` (401 without a token, as the hub hides
  whether a private repo exists; 404 with one), `GatedRepo` (401 without a token), `RevisionNotFound`,
  `EntryNotFound`; a token the hub does not know is 401 with `X-Error-Message: Invalid credentials in
  Authorization header`.

Every request is recorded with its Authorization header, so a test can say which token reached the
hub, and that no request was made at all.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.support.loopback_server import serving


@dataclass
class HubRepo:
    """A dataset repo: its files by path, whether it is gated, and the README's YAML (`cardData`)."""

    files: dict[str, bytes]
    gated: bool = False
    card_data: dict[str, Any] | None = None

    @property
    def sha(self) -> str:
        """A commit id (40 hex digits) that changes with the files, as a real commit's would."""
        digest = hashlib.sha1()
        for name in sorted(self.files):
            digest.update(name.encode() + b"\0" + self.files[name])
        return digest.hexdigest()


def blob_id(data: bytes) -> str:
    """A file's git blob id, the ETag the hub gives a file that is not in LFS."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Request:
    method: str
    path: str
    authorization: str | None


@dataclass
class HubStandIn:
    repos: dict[str, HubRepo] = field(default_factory=dict)
    granted: set[str] = field(default_factory=set)
    """Tokens that may read gated repos (any other token is unknown to the hub)."""
    requests: list[Request] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _handler(state: HubStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # huggingface_hub's client keeps connections alive

        def log_message(self, format: str, *args: Any) -> None:  # quiet in test output
            pass

        def do_GET(self) -> None:
            self._serve()

        def do_HEAD(self) -> None:
            self._serve()

        def _serve(self) -> None:
            token = self.headers.get("Authorization")
            state.requests.append(Request(self.command, self.path, token))
            url = urlsplit(self.path)
            parts = [unquote(p) for p in url.path.split("/")[1:]]
            if token is not None and token.removeprefix("Bearer ") not in state.granted:
                self._refuse(401, None, "Invalid credentials in Authorization header")
            elif parts[:2] == ["api", "datasets"] and len(parts) in (4, 6) and parts[4:5] in ([], ["revision"]):
                self._info("/".join(parts[2:4]), parts[5] if len(parts) == 6 else "main", parse_qs(url.query))
            elif parts[:1] == ["datasets"] and len(parts) >= 6 and parts[3] == "resolve":
                self._file("/".join(parts[1:3]), parts[4], "/".join(parts[5:]), token)
            else:
                self._refuse(404, None, "Not Found")

        def _repo(self, repo_id: str, revision: str, token: str | None) -> HubRepo | None:
            repo = state.repos.get(repo_id)
            if repo is None:
                self._refuse(401 if token is None else 404, "RepoNotFound", "Repository not found")
            elif revision not in ("main", repo.sha):
                self._refuse(404, "RevisionNotFound", "Invalid rev id: " + revision, repo)
            else:
                return repo
            return None

        def _info(self, repo_id: str, revision: str, query: dict[str, list[str]]) -> None:
            repo = self._repo(repo_id, revision, self.headers.get("Authorization"))
            if repo is None:
                return
            blobs = query.get("blobs", ["false"])[0].lower() == "true"
            siblings = [{"rfilename": name, **({"size": len(data), "blobId": blob_id(data)} if blobs else {})}
                        for name, data in sorted(repo.files.items())]
            owner, _name = repo_id.split("/")
            body: dict[str, Any] = {"_id": repo.sha[:24], "id": repo_id, "author": owner, "sha": repo.sha,
                                    "private": False, "gated": "manual" if repo.gated else False,
                                    "disabled": False, "tags": [], "siblings": siblings}
            if repo.card_data is not None:
                body["cardData"] = repo.card_data
            self._send(200, json.dumps(body).encode(), {"Content-Type": "application/json"}, repo)

        def _file(self, repo_id: str, revision: str, path: str, token: str | None) -> None:
            repo = self._repo(repo_id, revision, token)
            if repo is None:
                return
            if repo.gated and token is None:
                self._refuse(401, "GatedRepo", "Access to this dataset is restricted: you must be authenticated", repo)
            elif path not in repo.files:
                self._refuse(404, "EntryNotFound", "Entry not found", repo)
            else:
                data = repo.files[path]
                self._send(200, data, {"Content-Type": "application/octet-stream",
                                       "ETag": f'"{blob_id(data)}"'}, repo)

        def _refuse(self, status: int, code: str | None, message: str, repo: HubRepo | None = None) -> None:
            headers = {"Content-Type": "application/json", "X-Error-Message": message}
            if code:
                headers["X-Error-Code"] = code
            self._send(status, json.dumps({"error": message}).encode(), headers, repo)

        def _send(self, status: int, data: bytes, headers: dict[str, str], repo: HubRepo | None) -> None:
            self.send_response(status)
            if repo is not None:
                headers = {**headers, "X-Repo-Commit": repo.sha}
            for name, value in {**headers, "Content-Length": str(len(data))}.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

    return Handler


@contextmanager
def running_hub(repos: dict[str, HubRepo], granted: set[str] | None = None) -> Iterator[HubStandIn]:
    """The stand-in hub serving `repos` on a free loopback port, for the length of the block."""
    state = HubStandIn(repos=repos, granted=set(granted or ()))
    with serving(_handler(state)) as port:
        state.port = port
        yield state
