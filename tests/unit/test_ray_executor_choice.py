"""Choosing the Ray executor: its address setting, the error without Ray installed, and nothing of Ray
imported on the default path (each in a fresh interpreter, where sys.modules starts empty)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from tests.support.runs import REPO
from tuneyard.errors import SettingsError
from tuneyard.settings import Settings


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin"},
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("address", ["auto", "10.0.0.5:6379", "head.internal:6380", "[::1]:6379"])
def test_a_ray_address_is_auto_or_a_head_host_and_port(address: str) -> None:
    assert Settings.from_env({"TUNEYARD_RAY_ADDRESS": address}).ray_address == address


@pytest.mark.parametrize("address", ["", "10.0.0.5", "ray://10.0.0.5:10001", "head:0", "head:port", ":6379"])
def test_another_ray_address_is_refused_naming_its_variable(address: str) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings(ray_address=address)
    assert refused.value.variable == "TUNEYARD_RAY_ADDRESS"
    assert "neither auto nor a Ray head's host:port" in str(refused.value)


def test_choosing_ray_without_ray_installed_says_what_to_install() -> None:
    # `None` in sys.modules makes `import ray` fail as it does where Ray is not installed.
    done = _python("import sys; sys.modules['ray'] = None\n"
                   "from tuneyard.errors import SettingsError\n"
                   "from tuneyard.settings import Settings\n"
                   "from tuneyard.worker.executors.registry import make_executor\n"
                   "try:\n    make_executor(Settings(executor='ray'))\n"
                   "except SettingsError as exc:\n    print(exc.variable); print(exc)\n")
    assert done.returncode == 0, done.stderr
    variable, message = done.stdout.splitlines()
    assert variable == "TUNEYARD_EXECUTOR"
    assert message == ("TUNEYARD_EXECUTOR: the ray executor needs Ray with Ray Train, which is not installed here: "
                       "pip install 'tuneyard[ray]'")


def test_nothing_of_ray_is_imported_on_the_default_path() -> None:
    done = _python("import sys, json\n"
                   "import tuneyard.worker.loop, tuneyard.worker.pool, tuneyard.worker.executors.registry\n"
                   "import tuneyard.api.app, tuneyard.cli.main\n"
                   "from tuneyard.settings import Settings\n"
                   "from tuneyard.worker.executors.registry import make_executor\n"
                   "make_executor(Settings())\n"
                   "print(json.dumps(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.'))))\n")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_a_ray_address_nothing_answers_at_is_refused_at_once_naming_its_variable() -> None:
    pytest.importorskip("ray", reason="the ray extra (pip install 'tuneyard[ray]') is not installed")
    from tuneyard.worker.executors.registry import make_executor

    with socket.socket() as unused:  # bound, never listening: connections to it are refused
        unused.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{unused.getsockname()[1]}"
        with pytest.raises(SettingsError) as refused:
            make_executor(Settings(executor="ray", ray_address=address))
    assert refused.value.variable == "TUNEYARD_RAY_ADDRESS"
    assert str(refused.value).startswith(f"TUNEYARD_RAY_ADDRESS: no Ray cluster answers at '{address}': ")
