"""Single-user mode (`auth: none`) only behind loopback: what counts as loopback, and the refusal."""

from __future__ import annotations

import pytest

from tuneyard.errors import SettingsError
from tuneyard.settings import Settings, is_loopback


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("LOCALHOST", True), ("0.0.0.0", False), ("::", False), ("", False), ("10.0.0.1", False),
    ("localhost.evil.invalid", False),
])
def test_what_counts_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    if not loopback:
        with pytest.raises(SettingsError, match="loopback"):
            Settings(auth="none", host=host)


def test_keys_are_the_default_and_an_unknown_mode_is_refused() -> None:
    assert Settings().auth == "key" and Settings(auth="none").auth == "none"
    assert Settings.from_env({"TUNEYARD_AUTH": "none", "TUNEYARD_HOST": "::1"}).auth == "none"
    with pytest.raises(SettingsError, match="TUNEYARD_AUTH: 'open' is not one of key, none"):
        Settings(auth="open")
