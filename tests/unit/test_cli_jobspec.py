"""`jobs create` builds its request from a spec file and flags; bad flags are usage errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tuneyard.cli.jobspec import SpecUsageError, build_request, dataset_ref, parse_sets, parse_value


def no_upload(path: Path, data_format: str) -> str:
    raise AssertionError(f"nothing should be uploaded, got {path}")


def build(spec_file: Path | None = None, **flags: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"base_model": None, "datasets": [], "method": None, "sets": [], "name": None,
                            "project": None, "upload": no_upload}
    return build_request(spec_file, **{**args, **flags})


@pytest.mark.parametrize(("raw", "value"), [
    ("2", 2), ("1e-3", 0.001), ("false", False), ("null", None), ("cosine", "cosine"),
    ("q_proj,v_proj", ["q_proj", "v_proj"]), ('["q_proj"]', ["q_proj"]),
])
def test_values_parse_as_json_then_comma_lists_then_strings(raw: str, value: Any) -> None:
    assert parse_value(raw) == value


def test_sets_become_typed_hyperparams() -> None:
    assert parse_sets(["epochs=1", "learning_rate=1e-3", "bf16=false", "lr_scheduler=linear"]) == {
        "epochs": 1, "learning_rate": 0.001, "bf16": False, "lr_scheduler": "linear"}


@pytest.mark.parametrize(("flag", "says"), [
    ("epochs", "expected name=value"),
    ("=3", "expected name=value"),
    ("epoch=3", "unknown hyperparameter 'epoch'"),
    ("epochs=many", "valid integer"),
    ("epochs=0", "greater than or equal to 1"),
    ("lr_scheduler=wavy", "'cosine', 'linear' or 'constant'"),
])
def test_a_bad_set_says_which_flag_and_why(flag: str, says: str) -> None:
    with pytest.raises(SpecUsageError) as caught:
        parse_sets([flag])
    assert f"--set {flag!r}" in str(caught.value) and says in str(caught.value)


def test_dataset_flags_are_ids_or_names() -> None:
    assert dataset_ref("ds_0123") == {"id": "ds_0123"}
    assert dataset_ref("my-chats") == {"name": "my-chats"}


def test_flags_alone_make_a_request() -> None:
    body = build(base_model="tiny-llama", datasets=["chats", "ds_1"], sets=["epochs=1"], name="n", project="proj_1")
    assert body == {"base_model": "tiny-llama", "datasets": [{"name": "chats"}, {"id": "ds_1"}],
                    "hyperparams": {"epochs": 1}, "name": "n", "project_id": "proj_1"}


def test_flags_override_the_spec_file_and_path_datasets_are_uploaded(tmp_path: Path) -> None:
    (tmp_path / "chats.jsonl").write_text('{"text": "hi"}\n')
    spec = tmp_path / "job.yaml"
    spec.write_text("base_model: tiny-llama\nmethod: lora\n"
                    "datasets:\n  - path: chats.jsonl\n    format: text\n"
                    "hyperparams:\n  epochs: 3\n  batch_size: 8\n")
    uploads: list[tuple[Path, str]] = []

    def upload(path: Path, data_format: str) -> str:
        uploads.append((path, data_format))
        return "ds_up"

    body = build(spec, method="full", sets=["epochs=1"], upload=upload)
    assert uploads == [((tmp_path / "chats.jsonl").resolve(), "text")]
    assert body == {"base_model": "tiny-llama", "method": "full", "datasets": [{"format": "text", "id": "ds_up"}],
                    "hyperparams": {"epochs": 1, "batch_size": 8}}
    # --dataset replaces the file's datasets, so nothing is uploaded
    assert build(spec, datasets=["chats"])["datasets"] == [{"name": "chats"}]


@pytest.mark.parametrize(("content", "says"), [
    ("- a\n- b\n", "must hold a mapping"),
    ("base_model: [unclosed\n", "not valid YAML"),
    ("datasets:\n  - path: missing.jsonl\nbase_model: x\n", "does not exist"),
    ("method: lora\n", "give a spec file or --base-model"),
])
def test_unusable_spec_files_are_usage_errors(tmp_path: Path, content: str, says: str) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text(content)
    with pytest.raises(SpecUsageError, match=says):
        build(spec)


def test_bad_sets_are_caught_before_anything_is_uploaded(tmp_path: Path) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text("base_model: tiny-llama\ndatasets:\n  - path: chats.jsonl\n")
    with pytest.raises(SpecUsageError, match="unknown hyperparameter"):
        build(spec, sets=["nope=1"])


def test_type_flag_sets_the_fields_of_a_job_type_without_a_method() -> None:
    def no_upload(path: Path, fmt: str) -> str:
        raise AssertionError("nothing to upload")

    train = build_request(None, base_model="tiny-llama", datasets=["chats"], method=None, name=None, project=None,
                          sets=["turns=2", "lr=1e-4", "train_scope=new", "target_params=5000000"],
                          upload=no_upload, job_type="train")
    assert train["type"] == "train" and train["target_params"] == 5_000_000
    assert train["hyperparams"] == {"turns": 2, "lr": 1e-4, "train_scope": "new"}
    contract = build_request(None, base_model="tiny-llama", datasets=[], method=None, name=None, project=None,
                             sets=["contraction_ratio=0.25"], upload=no_upload, job_type="contract")
    assert contract == {"type": "contract", "base_model": "tiny-llama", "contraction_ratio": 0.25}
    for job_type, flag, says in (("contract", "contraction_ratio=1.5", "less than 1"),
                                 ("train", "epochs=2", "expected name=value with a name of"),
                                 ("grow", "turns=2", "--type 'grow': expected one of")):
        with pytest.raises(SpecUsageError, match=says):
            build_request(None, base_model="tiny-llama", datasets=[], method=None, name=None, project=None,
                          sets=[flag], upload=no_upload, job_type=job_type)
