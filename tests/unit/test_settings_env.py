"""Settings from TUNEYARD_ variables: each parsed by its field's annotation, a bad one named."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tuneyard.cli.common import EXIT_USAGE
from tuneyard.cli.main import app
from tuneyard.errors import SettingsError
from tuneyard.settings import Settings
from tuneyard.training.__main__ import main as runner_main


def test_every_field_type_is_parsed_from_its_variable(tmp_path: Path) -> None:
    settings = Settings.from_env({
        "TUNEYARD_DATA_DIR": str(tmp_path / "data"),  # Path
        "TUNEYARD_MODEL_CACHE_DIR": str(tmp_path / "cache"),  # Path | None
        "TUNEYARD_PORT": "9000",  # int
        "TUNEYARD_LEASE_SECONDS": "2.5",  # float
        "TUNEYARD_HOST": "0.0.0.0",  # str
        "TUNEYARD_RUNNER_PYTHON": "python3",  # str | None
        "TUNEYARD_MODEL_ROOTS": os.pathsep.join([str(tmp_path / "a"), "", str(tmp_path / "b")]),  # tuple[Path, ...]
    })
    assert settings.data_dir == tmp_path / "data"
    assert settings.model_cache_dir == tmp_path / "cache"
    assert settings.port == 9000 and isinstance(settings.port, int)
    assert settings.lease_seconds == 2.5
    assert settings.host == "0.0.0.0"
    assert settings.runner_python == "python3"
    assert settings.model_roots == (tmp_path / "a", tmp_path / "b")


def test_settings_as_environment_read_back_are_the_same(tmp_path: Path) -> None:
    """How serve hands its settings (CLI flags included) to its API processes: every field survives."""
    given = Settings(data_dir=tmp_path / "data", port=9001, auth="none", workers=0, api_processes=3,
                     lease_seconds=0.1, metrics_org_labels=True, model_roots=(tmp_path / "a", tmp_path / "b"),
                     worker_memory_bytes=12345, judge_base_url="http://judge", judge_model="j")
    for settings in (Settings(), given):
        environment = settings.as_environment()
        assert Settings.from_env(environment) == settings
        assert set(environment) == {"TUNEYARD_" + name.upper() for name in vars(settings)}


def test_unset_variables_keep_the_defaults() -> None:
    assert Settings.from_env({}) == Settings()
    assert Settings.from_env({"TUNEYARD_UNRELATED": "x", "PORT": "1"}) == Settings()


def test_an_empty_optional_variable_means_the_default_none() -> None:
    settings = Settings.from_env({"TUNEYARD_DATABASE_URL": "", "TUNEYARD_MODEL_CACHE_DIR": " ",
                                  "TUNEYARD_RUNNER_PYTHON": ""})
    assert (settings.database_url, settings.model_cache_dir, settings.runner_python) == (None, None, None)


@dataclass(frozen=True)
class WithFlag(Settings):
    """Settings as they will be with a bool field: none has one yet."""

    debug: bool = False


@pytest.mark.parametrize(("raw", "expected"), [
    ("true", True), ("false", False), ("1", True), ("0", False), ("yes", True), ("no", False),
    ("TRUE", True), (" No ", False),
])
def test_a_bool_is_read_as_a_bool_not_a_string(raw: str, expected: bool) -> None:
    assert WithFlag.from_env({"TUNEYARD_DEBUG": raw}).debug is expected


@pytest.mark.parametrize(("variable", "raw", "message"), [
    ("TUNEYARD_PORT", "abc", "TUNEYARD_PORT: 'abc' is not an integer"),
    ("TUNEYARD_WORKERS", "1.5", "TUNEYARD_WORKERS: '1.5' is not an integer"),
    ("TUNEYARD_LEASE_SECONDS", "soon", "TUNEYARD_LEASE_SECONDS: 'soon' is not a finite number"),
    ("TUNEYARD_POLL_SECONDS", "inf", "TUNEYARD_POLL_SECONDS: 'inf' is not a finite number"),
    ("TUNEYARD_DATA_DIR", "", "TUNEYARD_DATA_DIR: '' is not a path"),
    ("TUNEYARD_HUB_ENDPOINT", "hub.lan", "TUNEYARD_HUB_ENDPOINT: 'hub.lan' is not an http:// or https:// URL"),
])
def test_a_bad_value_is_refused_naming_its_variable(variable: str, raw: str, message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: raw})
    assert str(caught.value) == message
    assert caught.value.variable == variable
    assert isinstance(caught.value, ValueError)  # what a bad value raised before it had a type


def test_a_bad_bool_is_refused_naming_its_variable() -> None:
    with pytest.raises(SettingsError, match=r"^TUNEYARD_DEBUG: 'maybe' is not a boolean \(true/false, yes/no, 1/0\)$"):
        WithFlag.from_env({"TUNEYARD_DEBUG": "maybe"})


def test_a_str_field_needs_nothing_but_its_annotation() -> None:
    @dataclass(frozen=True)
    class WithExecutor(Settings):
        executor: str = "local"

    assert WithExecutor.from_env({"TUNEYARD_EXECUTOR": "ray"}).executor == "ray"
    assert WithExecutor.from_env({}).executor == "local"


def test_a_field_of_a_type_without_a_parser_fails_at_once_not_when_set() -> None:
    @dataclass(frozen=True)
    class WithList(Settings):
        tags: list[str] | None = None

    with pytest.raises(TypeError, match="no parser"):
        WithList.from_env({})


# -- the command lines ------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["jobs", "list"], ["keys", "list"], ["worker"], ["serve"]])
def test_the_cli_refuses_a_bad_variable_in_one_line(args: list[str], tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["--data-dir", str(tmp_path), *args], env={"TUNEYARD_PORT": "abc"})
    assert result.exit_code == EXIT_USAGE
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stderr == "error: TUNEYARD_PORT: 'abc' is not an integer\n"
    assert list(tmp_path.iterdir()) == []  # refused before anything was opened or made


def test_the_runner_refuses_a_bad_variable_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TUNEYARD_PORT", "abc")
    with pytest.raises(SystemExit) as exited:
        runner_main([str(tmp_path / "spec.json"), "--run-dir", str(tmp_path / "run")])
    assert exited.value.code == 2
    assert capsys.readouterr().err == "python -m tuneyard.training: error: TUNEYARD_PORT: 'abc' is not an integer\n"
    assert list(tmp_path.iterdir()) == []
