"""Hub dataset ids as 002's `dataset_path` gives them, and which files of a repo make a split."""

from __future__ import annotations

from typing import Any

import pytest

from tuneyard.services.hub_datasets import HubDatasetError, HubDatasetRef, parse_ref, select_files


@pytest.mark.parametrize(("raw", "ref"), [
    ("tatsu-lab/alpaca", HubDatasetRef("tatsu-lab/alpaca", None, "train")),
    ("HuggingFaceH4/ultrachat_200k:test_sft", HubDatasetRef("HuggingFaceH4/ultrachat_200k", None, "test_sft")),
    ("openai/gsm8k:main:test", HubDatasetRef("openai/gsm8k", "main", "test")),
    ("a.b/c_d.v2", HubDatasetRef("a.b/c_d.v2", None, "train")),
])
def test_hub_ids_as_load_dataset_users_write_them(raw: str, ref: HubDatasetRef) -> None:
    assert parse_ref(raw) == ref
    assert str(ref) == (raw if ":" in raw else f"{raw}:train")


@pytest.mark.parametrize("raw", [
    "alpaca.jsonl", "../owner/name", "./owner/name", "/owner/name", "~/owner/name", "owner/../name",
    "owner/name/file.jsonl", "owner/name:a:b:c", "owner/name:", "owner--x/name", "-owner/name", "owner/name.",
    "owner/na me", "owner\\name",
])
def test_paths_and_what_the_hub_refuses_are_no_hub_ids(raw: str) -> None:
    assert parse_ref(raw) is None


SHARDED = ["README.md", ".gitattributes", "data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet",
           "data/test-00000-of-00001.parquet", "data/validation-00000-of-00001.parquet"]


@pytest.mark.parametrize(("raw", "names", "configs", "files"), [
    ("o/n", SHARDED, [], ["data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"]),
    ("o/n:validation", SHARDED, [], ["data/validation-00000-of-00001.parquet"]),
    ("o/n:valid", ["dev.jsonl", "train.jsonl"], [], []),  # not a split of this repo: refused below
    ("o/n:validation", ["dev.jsonl", "train.jsonl", "latest_notes.json"], [], ["dev.jsonl"]),
    ("o/n", ["alpaca_data.json", "notes.txt"], [], ["alpaca_data.json"]),  # no split named: all is train
    ("o/n:en:train", ["en/train.csv", "fr/train.csv", "en/test.csv"], [], ["en/train.csv"]),
    ("o/n:test", ["a/x.jsonl", "b/y.jsonl"],
     [{"config_name": "default", "data_files": [{"split": "train", "path": "a/*"}, {"split": "test", "path": "b/*"}]}],
     ["b/y.jsonl"]),
    ("o/n", ["main/train-0.parquet", "socratic/train-0.parquet"],
     [{"config_name": "main", "data_files": [{"split": "train", "path": "main/train-*"}]},
      {"config_name": "socratic", "data_files": [{"split": "train", "path": "socratic/train-*"}], "default": True}],
     ["socratic/train-0.parquet"]),
    ("o/n:main:train", ["main/train-0.parquet", "socratic/train-0.parquet"],
     [{"config_name": "main", "data_files": "main/*"}, {"config_name": "socratic", "data_dir": "socratic"}],
     ["main/train-0.parquet"]),
    ("o/n:socratic:train", ["main/train-0.parquet", "socratic/train-0.parquet"],
     [{"config_name": "main", "data_files": "main/*"}, {"config_name": "socratic", "data_dir": "socratic"}],
     ["socratic/train-0.parquet"]),
])
def test_a_split_is_the_files_the_hub_would_show_for_it(raw: str, names: list[str], configs: list[dict[str, Any]],
                                                        files: list[str]) -> None:
    ref = parse_ref(raw)
    assert ref is not None
    if not files:
        with pytest.raises(HubDatasetError, match="no split 'valid'; it has train, validation"):
            select_files(ref, names, configs)
        return
    assert select_files(ref, names, configs) == files


@pytest.mark.parametrize(("raw", "names", "configs", "message"), [
    ("o/n", ["README.md", "data.txt", "data/train.jsonl.gz"], [], "holds no data file tuneyard reads"),
    ("o/n:test", ["alpaca.json"], [], "has one split, train"),
    ("o/n:xx:train", ["en/train.csv"], [], "no config 'xx' .no README configs"),
    ("o/n:xx:train", ["en/train.csv"], [{"config_name": "en", "data_files": "en/*"}], "no config 'xx'; it has en"),
    ("o/n", ["a/t.csv", "b/t.csv"],
     [{"config_name": "a", "data_files": "a/*"}, {"config_name": "b", "data_files": "b/*"}],
     "configs a, b and none is the default: name one as o/n:CONFIG:train"),
    ("o/n:test", ["a/t.csv"], [{"config_name": "a", "data_files": "a/*"}], "config 'a' of o/n has no split 'test'"),
])
def test_what_cannot_be_a_split_says_what_the_repo_has(raw: str, names: list[str], configs: list[dict[str, Any]],
                                                        message: str) -> None:
    ref = parse_ref(raw)
    assert ref is not None
    with pytest.raises(HubDatasetError, match=message):
        select_files(ref, names, configs)
