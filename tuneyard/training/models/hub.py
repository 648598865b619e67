"""Fetching a model from the Hugging Face Hub, failing fast and clearly when it cannot be had.

transformers' own loader retries an unreachable hub with backoff for half a minute and then
raises a generic OSError. We ask the hub API once, with a short timeout, pin the commit it
reports, and only then download; an unreachable hub falls back to what the local cache holds.
"""

from __future__ import annotations

from pathlib import Path

from tuneyard.errors import ModelNotFoundError

# Only what a causal LM and its tokenizer need: no ONNX/GGUF/pytorch_model.bin duplicates.
_ALLOW_PATTERNS = [
    "*.json",
    "*.safetensors",
    "*.jinja",
    "*.txt",
    "*.model",
    "*.tiktoken",
]


def download_from_hub(
    repo_id: str, cache_dir: Path, *, endpoint: str | None = None, timeout_s: float = 5.0
) -> tuple[Path, str | None]:
    """Download `repo_id`'s model files; return the local folder and the commit they came from."""
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise ModelNotFoundError(
            f"base model {repo_id!r} is not a built-in id, an existing local path or a valid hub id",
            base_model=repo_id,
        ) from None
    try:
        info = HfApi(endpoint=endpoint).model_info(repo_id, timeout=timeout_s)
    except Exception as exc:
        _raise_for_lookup(repo_id, exc)
        return _from_local_cache(repo_id, cache_dir, exc), None
    folder = snapshot_download(
        repo_id,
        revision=info.sha,
        cache_dir=cache_dir,
        endpoint=endpoint,
        etag_timeout=timeout_s,
        allow_patterns=_ALLOW_PATTERNS,
    )
    return Path(str(folder)), info.sha


def _raise_for_lookup(repo_id: str, exc: Exception) -> None:
    """Turn the hub's own answers (no such repo, gated) into user errors; let network errors pass."""
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    if isinstance(exc, GatedRepoError):
        raise ModelNotFoundError(
            f"base model {repo_id!r} is gated on the Hugging Face Hub; accept its terms and log in",
            base_model=repo_id,
        ) from None
    if isinstance(exc, RepositoryNotFoundError):
        raise ModelNotFoundError(
            f"base model {repo_id!r} is not a built-in id or a local path, and the Hugging Face Hub has "
            "no such model (or it is private)",
            base_model=repo_id,
        ) from None


def _from_local_cache(repo_id: str, cache_dir: Path, cause: Exception) -> Path:
    """The copy a previous run downloaded, if any; otherwise the hub is simply unreachable."""
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(repo_id, cache_dir=cache_dir, local_files_only=True, allow_patterns=_ALLOW_PATTERNS)
    except Exception:
        raise ModelNotFoundError(
            f"base model {repo_id!r} is not a built-in id or a local path, and the Hugging Face Hub "
            f"is unreachable to fetch it ({type(cause).__name__}: {cause})",
            base_model=repo_id,
        ) from None
    return Path(str(folder))
