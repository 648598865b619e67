"""A dataset repo on the Hugging Face Hub (or a mirror), named the way `datasets.load_dataset` users name it.

Document 002's `dataset_path` is "path/or/hf-dataset-id". A hub id here is `owner/name` (the train
split), `owner/name:split`, or `owner/name:config:split`: the repo id `load_dataset` takes, then its
`name` (config) and `split` arguments, joined by colons, which no repo id, config or split name contains.

Which files make a split follows the hub's own conventions, so a repo the hub's viewer shows as
splits gives the same files here: the README's YAML `configs` (the hub answers it as `cardData`:
`data_files` per split, or a `data_dir`), else split names in the file paths (`data/train-00000-of-
00001.parquet`, `test.jsonl`, `valid/part.csv`), else every data file is the train split. Only the
formats tuneyard's dataset reader reads are taken (JSONL, JSON, CSV/TSV, Parquet), so nothing is converted.

The fetch is huggingface_hub's (`dataset_info`, then `hf_hub_download` of each file pinned to the
commit the info answered), so HF_ENDPOINT, a mirror and the hub's error codes work as they do for
any of its users. It runs in the API process, before anything is stored: every failure is a
HubDatasetError saying why, and the caller names its field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from typing import Any

from tuneyard.errors import UserError

DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")
"""What tuneyard.training.data.reading reads, by the extension it reads them by."""

SPLIT_WORDS: dict[str, tuple[str, ...]] = {
    "train": ("train", "training"),
    "validation": ("validation", "valid", "val", "dev"),
    "test": ("test", "testing", "eval", "evaluation"),
}
"""The words the hub takes a file's split from (its "split name keywords"); another split is its own name."""

_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?"
_REF = re.compile(rf"^(?P<repo>{_NAME}/{_NAME})(?::(?P<first>[A-Za-z0-9_.-]+))?(?::(?P<second>[A-Za-z0-9_.-]+))?$")


class HubDatasetError(UserError):
    """The dataset cannot be had from the hub."""


@dataclass(frozen=True)
class HubDatasetRef:
    """Which files of which repo: `repo_id`, a config (None: the default) and a split."""

    repo_id: str
    config: str | None = None
    split: str = "train"

    def __str__(self) -> str:
        return ":".join(part for part in (self.repo_id, self.config, self.split) if part)


def parse_ref(raw: str) -> HubDatasetRef | None:
    """The hub dataset `raw` names, or None when it is not of that form (a path, say)."""
    found = _REF.match(raw)
    if found is None or ".." in raw or "--" in found["repo"]:  # the hub refuses both in repo ids
        return None
    first, second = found["first"], found["second"]
    if second is not None:
        return HubDatasetRef(found["repo"], first, second)
    return HubDatasetRef(found["repo"], None, first or "train")


@dataclass(frozen=True)
class HubAccess:
    """Where the hub is and how it is asked: `endpoint` None is huggingface_hub's own default
    (HF_ENDPOINT, else https://huggingface.co); `token` None sends none (never the server's own)."""

    endpoint: str | None
    token: str | None
    timeout_s: float
    max_bytes: int

    @property
    def shown_endpoint(self) -> str:
        if self.endpoint:
            return self.endpoint
        try:
            from huggingface_hub import constants
        except ImportError:
            return "the Hugging Face Hub"
        return str(constants.ENDPOINT)


@dataclass(frozen=True)
class Fetched:
    """The split's files, downloaded: (their path in the repo, where they are now), and the commit."""

    files: list[tuple[str, Path]]
    commit: str | None


def fetch(ref: HubDatasetRef, access: HubAccess, into: Path) -> Fetched:
    """Download the files of `ref`'s split into the folder `into`; HubDatasetError when they cannot be had."""
    try:
        from huggingface_hub import HfApi, hf_hub_download
    except ImportError:
        raise HubDatasetError("this server cannot fetch from a hub: huggingface_hub is not installed "
                              "(it comes with tuneyard[train])") from None
    token: str | bool = access.token or False  # False: not the token of the server's own login
    try:
        info = HfApi(endpoint=access.endpoint).dataset_info(
            ref.repo_id, files_metadata=True, timeout=access.timeout_s, token=token)
        siblings = {s.rfilename: s.size for s in info.siblings or []}
        chosen = select_files(ref, list(siblings), _configs(info.card_data))
        _check_size(ref, {name: siblings[name] for name in chosen}, access.max_bytes)
        files = [(name, Path(str(hf_hub_download(
            ref.repo_id, name, repo_type="dataset", revision=info.sha, cache_dir=into, endpoint=access.endpoint,
            token=token, etag_timeout=access.timeout_s)))) for name in chosen]
    except HubDatasetError:
        raise
    except Exception as exc:
        raise HubDatasetError(_why(ref, access, exc)) from None
    return Fetched(files, info.sha)


def _why(ref: HubDatasetRef, access: HubAccess, exc: Exception) -> str:
    """The hub's refusal in the user's words (never with the token: huggingface_hub's messages hold none)."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = access.shown_endpoint
    if isinstance(exc, GatedRepoError):
        if access.token:
            return f"the dataset {ref.repo_id} on {where} is gated and hf_token has not been granted access to it"
        return f"the dataset {ref.repo_id} on {where} is gated: give hf_token, a token granted access to it"
    if isinstance(exc, RepositoryNotFoundError):
        private = "" if access.token else " (or it is private: give hf_token)"
        return f"{where} has no dataset {ref.repo_id}{private}"
    if isinstance(exc, RevisionNotFoundError | RemoteEntryNotFoundError):
        return f"the dataset {ref.repo_id} on {where} changed while it was read; try again"
    status = exc.response.status_code if isinstance(exc, HfHubHTTPError) and exc.response is not None else None
    if status == 401:
        return f"{where} refused hf_token (it does not know it)"
    if status is not None:
        return f"{where} answered HTTP {status} for the dataset {ref.repo_id}"
    return f"the hub at {where} could not be reached ({type(exc).__name__}: {exc})"


def _configs(card_data: Any) -> list[dict[str, Any]]:
    """The README's `configs` (the hub's answer carries the README's YAML as cardData)."""
    configs = card_data.to_dict().get("configs") if card_data is not None else None
    return [c for c in configs if isinstance(c, dict)] if isinstance(configs, list) else []


def _check_size(ref: HubDatasetRef, sizes: Mapping[str, int | None], limit: int) -> None:
    """Refused before any download when the hub says the split is over the upload limit."""
    total = sum(size or 0 for size in sizes.values())
    if total > limit:
        raise HubDatasetError(f"the split {ref.split!r} of {ref.repo_id} is {total} bytes, over this server's "
                              f"upload limit of {limit} bytes")


def select_files(ref: HubDatasetRef, names: Sequence[str], configs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The repo's data files that make `ref`'s split, by the hub's conventions (see the module's doc)."""
    data = sorted(n for n in names if _is_data(n))
    if not data:
        shown = ", ".join(sorted(names)[:10]) or "nothing"
        raise HubDatasetError(f"the dataset {ref.repo_id} holds no data file tuneyard reads "
                              f"({', '.join(DATA_SUFFIXES)}); it holds {shown}")
    if configs:
        return _from_config(ref, data, configs)
    if ref.config is not None:
        data = [n for n in data if n.startswith(ref.config + "/")]
        if not data:
            raise HubDatasetError(f"the dataset {ref.repo_id} has no config {ref.config!r} (no README configs, "
                                  f"and no folder of that name)")
    return _by_split_name(ref, data)


def _is_data(name: str) -> bool:
    path = PurePosixPath(name)
    return path.suffix.lower() in DATA_SUFFIXES and not any(part.startswith(".") for part in path.parts)


def _from_config(ref: HubDatasetRef, data: list[str], configs: Sequence[Mapping[str, Any]]) -> list[str]:
    config = _chosen_config(ref, configs)
    files = config.get("data_files")
    if files is None:  # a config by folder: the split from the file names under it, as without configs
        folder = str(config.get("data_dir") or "").strip("/")
        return _by_split_name(ref, [n for n in data if not folder or n.startswith(folder + "/")])
    patterns = _split_patterns(files)
    if ref.split not in patterns:
        raise HubDatasetError(f"the config {config.get('config_name')!r} of {ref.repo_id} has no split "
                              f"{ref.split!r}; it has {', '.join(sorted(patterns))}")
    chosen = [n for n in data if any(fnmatchcase(n, p) for p in patterns[ref.split])]
    if not chosen:
        raise HubDatasetError(f"the split {ref.split!r} of {ref.repo_id} holds no data file tuneyard reads "
                              f"({', '.join(DATA_SUFFIXES)})")
    return chosen


def _chosen_config(ref: HubDatasetRef, configs: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    names = [str(c.get("config_name", "default")) for c in configs]
    if ref.config is not None:
        if ref.config not in names:
            raise HubDatasetError(f"the dataset {ref.repo_id} has no config {ref.config!r}; it has {', '.join(names)}")
        return configs[names.index(ref.config)]
    default = [c for c in configs if c.get("default") is True]
    default = default or [c for c in configs if c.get("config_name") == "default"]
    if default or len(configs) == 1:
        return (default or configs)[0]
    raise HubDatasetError(f"the dataset {ref.repo_id} has configs {', '.join(names)} and none is the default: "
                          f"name one as {ref.repo_id}:CONFIG:{ref.split}")


def _split_patterns(files: Any) -> dict[str, list[str]]:
    """`data_files` as split -> patterns: a pattern or a list of them is the train split."""
    if isinstance(files, str):
        return {"train": [files]}
    patterns: dict[str, list[str]] = {}
    for entry in files if isinstance(files, list) else []:
        if isinstance(entry, str):
            patterns.setdefault("train", []).append(entry)
        elif isinstance(entry, dict) and "split" in entry:
            path = entry.get("path")
            patterns.setdefault(str(entry["split"]), []).extend([path] if isinstance(path, str) else list(path or []))
    return patterns


def _by_split_name(ref: HubDatasetRef, data: list[str]) -> list[str]:
    """The files whose path names the split; when no file names any split, all of them are train."""
    named = {split: [n for n in data if _names(n, words)] for split, words in SPLIT_WORDS.items()}
    if ref.split not in named:
        named[ref.split] = [n for n in data if _names(n, (ref.split,))]
    if not any(named.values()):
        if ref.split == "train":
            return data
        raise HubDatasetError(f"the dataset {ref.repo_id} has one split, train (no file names a split)")
    if not named[ref.split]:
        have = ", ".join(split for split, found in named.items() if found)
        raise HubDatasetError(f"the dataset {ref.repo_id} has no split {ref.split!r}; it has {have}")
    return named[ref.split]


def _names(path: str, words: Sequence[str]) -> bool:
    """Whether a word stands alone in the path, as a folder or between separators (`-`, `_`, `.`, space)."""
    return any(re.search(rf"(?<![A-Za-z0-9]){re.escape(w)}(?![A-Za-z0-9])", path.lower()) for w in words)
