"""The API's side of serving: start the serving process, talk to it on loopback, restart it.

The process runs in its own session (a signal to the API's process group does not reach it, and
stopping it reaches every thread and child it has), at `nice` and with its thread count capped, so
a model answering does not take the cores training runs on. It is started on first use. When it
dies, the request in flight gets `ServingProcessGone` (the API answers 503) and the next request
starts a new one, which loads its model again on demand. Stopping it escalates: SIGTERM to its
process group, a grace period, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import secrets
import select
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tuneyard.serving.backends import Chunk, Event, Finish, ModelToLoad, Prompt, Sampling
from tuneyard.serving.process import TOKEN_HEADER

log = logging.getLogger(__name__)


class ServingProcessGone(Exception):
    """The serving process died (or could not be started) while it was asked something."""


class ServingRefused(Exception):
    """The serving process refused a request: `user` when the request (or its model) is at fault."""

    def __init__(self, message: str, *, user: bool, field: str | None) -> None:
        super().__init__(message)
        self.user = user
        self.field = field


@dataclass(frozen=True)
class ServingConfig:
    python: str
    threads: int
    nice: int
    idle_seconds: float
    log_file: Path
    start_timeout: float = 60.0
    stop_grace: float = 5.0
    read_timeout: float = 600.0
    """A token (or a model's load) taking longer than this means the process is stuck."""


class ServingSupervisor:
    def __init__(self, config: ServingConfig) -> None:
        self.config = config
        self._proc: subprocess.Popen[bytes] | None = None
        self._port = 0
        self._token = ""
        self._lock = threading.Lock()
        self.starts = 0

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def _endpoint(self) -> tuple[subprocess.Popen[bytes], int, str]:
        """The running process, started (again) when there is none or it died."""
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                if self._proc is not None:
                    log.warning("the serving process %s exited with %s; starting a new one", self._proc.pid,
                                self._proc.returncode)
                self._start()
            assert self._proc is not None
            return self._proc, self._port, self._token

    def _start(self) -> None:
        cfg = self.config
        cfg.log_file.parent.mkdir(parents=True, exist_ok=True)
        argv = [cfg.python, "-m", "tuneyard.serving", "--threads", str(cfg.threads),
                "--idle-seconds", str(cfg.idle_seconds), "--nice", str(cfg.nice)]
        # Thread pools that read the environment at import (OpenMP, MKL, tokenizers) get the same cap.
        env = {**os.environ, "OMP_NUM_THREADS": str(cfg.threads), "MKL_NUM_THREADS": str(cfg.threads),
               "TOKENIZERS_PARALLELISM": "false"}
        token = secrets.token_urlsafe(24)
        with open(cfg.log_file, "ab") as log_handle:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_handle,
                                    start_new_session=True, env=env)
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(token.encode() + b"\n")
            proc.stdin.close()
            port = _read_port(proc.stdout, cfg.start_timeout)
        except (OSError, ValueError, TimeoutError) as exc:
            _terminate(proc, 0.0)
            raise ServingProcessGone(f"the serving process did not start: {exc}; see {cfg.log_file}") from exc
        finally:
            proc.stdout.close()
        self._proc, self._port, self._token = proc, port, token
        self.starts += 1
        log.info("serving process %s listening on 127.0.0.1:%s", proc.pid, port)

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> http.client.HTTPResponse:
        proc, port, token = self._endpoint()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=self.config.read_timeout)
        raw = json.dumps(body or {}).encode()
        try:
            connection.request(method, path, body=raw if method == "POST" else None,
                               headers={TOKEN_HEADER: token, "Content-Type": "application/json"})
            return connection.getresponse()
        except TimeoutError as exc:
            connection.close()
            raise self._slow() from exc
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            raise self._gone(proc, exc) from exc

    def _slow(self) -> ServingRefused:
        """No answer in read_timeout: the process may be busy with other requests to the same model
        (one answer at a time), so this request fails and the process, alive, is left alone."""
        return ServingRefused(f"the model did not answer within {self.config.read_timeout:.0f} s (busy with "
                              "other requests, or slow); retry later", user=False, field=None)

    def _gone(self, proc: subprocess.Popen[bytes], cause: BaseException | str) -> ServingProcessGone:
        """The connection broke: the process is dead or broken; make sure it is gone, to be restarted."""
        try:
            proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            log.warning("the serving process %s broke a connection (%s) but lives on; stopping it", proc.pid, cause)
            _terminate(proc, self.config.stop_grace)
        return ServingProcessGone(f"the model's serving process died (exit status {proc.returncode}): {cause}")

    def _json(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        proc = self._proc
        response = self._request(method, path, body)
        try:
            data = json.loads(response.read() or b"{}")
        except TimeoutError as exc:
            raise self._slow() from exc
        except (OSError, http.client.HTTPException, ValueError) as exc:
            assert proc is not None
            raise self._gone(proc, exc) from exc
        finally:
            response.close()
        if response.status != 200:
            raise _refusal(data)
        result: dict[str, Any] = data
        return result

    def load(self, model: ModelToLoad) -> None:
        self._json("POST", "/load", {"model": model.to_dict()})

    def unload(self, key: str) -> bool:
        """Unload `key` if a serving process runs (never starts one just to unload)."""
        if self.pid is None:
            return False
        return bool(self._json("POST", "/unload", {"key": key}).get("unloaded"))

    def status(self) -> dict[str, Any]:
        """The process and its loaded models; no process is started to answer."""
        if self.pid is None:
            return {"pid": None, "models": [], "starts": self.starts}
        return {**self._json("GET", "/status"), "starts": self.starts}

    def generate(self, model: ModelToLoad, prompt: Prompt, sampling: Sampling) -> Iterator[Event]:
        """The generation's events. Raises ServingRefused or ServingProcessGone on the first `next`
        when it cannot begin, and ServingProcessGone later when the process dies mid-answer."""
        body = {"model": model.to_dict(), "prompt": {"messages": prompt.messages, "text": prompt.text},
                "sampling": sampling.to_dict()}
        response = self._request("POST", "/generate", body)
        proc = self._proc
        assert proc is not None
        try:
            if response.status != 200:
                raise _refusal(json.loads(response.read() or b"{}"))
            while True:
                try:
                    line = response.readline()
                except TimeoutError as exc:
                    raise self._slow() from exc
                except (OSError, http.client.HTTPException) as exc:
                    raise self._gone(proc, exc) from exc
                if not line:
                    raise self._gone(proc, "the answer ended before it was complete")
                event = json.loads(line)
                if "text" in event:
                    yield Chunk(event["text"])
                elif "finish" in event:
                    yield Finish(**event["finish"])
                    return
                else:
                    raise _refusal(event)
        finally:
            response.close()

    def stop(self) -> None:
        with self._lock:
            if self._proc is not None:
                _terminate(self._proc, self.config.stop_grace)
                self._proc = None


def _refusal(data: dict[str, Any]) -> ServingRefused:
    error = data.get("error")
    if not isinstance(error, dict):
        error = {}
    return ServingRefused(str(error.get("message") or "the serving process refused the request"),
                          user=bool(error.get("user")), field=error.get("field"))


def _read_port(stdout: IO[bytes], timeout: float) -> int:
    """The port from the child's first line, `listening PORT`, within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([stdout], [], [], left)[0]:
            raise TimeoutError(f"no port announced within {timeout:.0f} s")
        byte = os.read(stdout.fileno(), 1)
        if not byte:
            raise ValueError("it exited before announcing its port")
        line += byte
    word, _, port = line.decode().strip().partition(" ")
    if word != "listening" or not port.isdigit():
        raise ValueError(f"unexpected first line {line!r}")
    return int(port)


def _terminate(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the process group, wait `grace` seconds, then SIGKILL it."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
