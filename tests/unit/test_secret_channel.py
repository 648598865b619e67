"""The secrets channel between an API process and the serve process (tuneyard.store.secret_channel):
the three methods of HeldSecrets answered by the serve process's holder, a channel that breaks stays
broken, and no value is ever in a repr or a log line."""

from __future__ import annotations

import logging
import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from tuneyard.store.secret_channel import ChannelSecrets, SecretsBroker, SecretsChannelError
from tuneyard.store.secrets import HeldSecrets

TOKEN = "hf_channelTestToken0123456789"


Connected = tuple[HeldSecrets, ChannelSecrets, threading.Thread]


@pytest.fixture
def connected() -> Iterator[Connected]:
    """A serve process's holder and broker, and an API process's channel to it."""
    ours, theirs = socket.socketpair()
    held = HeldSecrets()
    thread = SecretsBroker(held, ours, "API process 0").start()
    channel = ChannelSecrets(theirs, timeout=5)
    yield held, channel, thread
    channel.close()
    thread.join(timeout=5)


def test_what_an_api_process_holds_is_held_by_the_serve_process(connected: Connected) -> None:
    held, channel, thread = connected
    handle = channel.hold({"HF_TOKEN": TOKEN})
    assert held.environment(handle) == {"HF_TOKEN": TOKEN}  # where the workers read it
    assert channel.environment(handle) == {"HF_TOKEN": TOKEN}
    assert channel.hold({"HF_TOKEN": "again"}, handle) == handle
    assert held.environment(handle) == {"HF_TOKEN": "again"}
    channel.forget(handle)
    assert held.environment(handle) is None and channel.environment(handle) is None
    assert channel.environment("never-held") is None
    assert TOKEN not in repr(channel)

    channel.close()  # the API process ends: its broker thread ends with it
    thread.join(timeout=5)
    assert not thread.is_alive()
    with pytest.raises(SecretsChannelError):
        channel.hold({"HF_TOKEN": TOKEN})


def test_many_threads_of_an_api_process_share_one_channel(connected: Connected) -> None:
    held, channel, _ = connected
    handles: list[str] = []

    def submit(i: int) -> None:
        for j in range(20):
            handle = channel.hold({"HF_TOKEN": f"{i}-{j}"})
            assert channel.environment(handle) == {"HF_TOKEN": f"{i}-{j}"}
            handles.append(handle)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(handles)) == 160 and repr(held) == "HeldSecrets(160 held)"


def test_a_channel_whose_serve_process_is_gone_fails_and_stays_failed() -> None:
    ours, theirs = socket.socketpair()
    channel = ChannelSecrets(theirs, timeout=5)
    ours.close()
    for _ in range(2):
        with pytest.raises(SecretsChannelError) as failed:
            channel.environment("h")
        assert failed.value.message == "The serve process that holds the jobs' secrets did not answer."
    channel.close()


def test_a_broken_message_closes_the_channel_without_logging_it(caplog: pytest.LogCaptureFixture) -> None:
    ours, theirs = socket.socketpair()
    thread = SecretsBroker(HeldSecrets(), ours, "API process 1").start()
    body = f'{{"op": "nonsense", "handle": "{TOKEN}"}}'.encode()
    with caplog.at_level(logging.WARNING):
        theirs.sendall(struct.pack(">I", len(body)) + body)
        thread.join(timeout=5)
    assert not thread.is_alive() and theirs.recv(1) == b""  # closed
    theirs.close()
    assert "API process 1" in caplog.text and TOKEN not in caplog.text
