"""Why a run failed, by cause: the request's fault (a user error, never retried) or tuneyard's.

Libraries report a user's mistake in their own words and types: peft raises a ValueError for a
target module that matches nothing, safetensors its own error for a truncated weights file. The
runner cannot tell those from a bug by type alone, so this module keeps one table of the library
exceptions known to mean "the request cannot be used", each with the field it blames. Whatever
is not in the table stays what a human reading it would assume: a platform error, retried.

Every user error the runner reports names a field of the job (`blamed_field`), so a user knows
what to change; tuneyard's own UserErrors are blamed by type when they do not say themselves.
"""

from __future__ import annotations

import re
import traceback
from dataclasses import dataclass

from tuneyard.errors import CheckpointError, DataError, ModelNotFoundError, SpecError, UnsupportedError, UserError

MODELS = "tuneyard.training.models"
"""Finding and loading the base model: its files are the request's (a local folder, a GGUF, a hub id)."""
METHODS = "tuneyard.training.methods"
"""Preparing the model for its method (peft's adapters)."""
SESSION = "tuneyard.training.session"


@dataclass(frozen=True)
class KnownFailure:
    """One library exception that means the request cannot be used."""

    exception: str
    """Qualified name of the exception class, matched against the raised one's MRO."""
    pattern: str
    """A regex searched in the exception's message."""
    where: str
    """The tuneyard module (or package) whose call raised it: the same exception elsewhere (restoring
    the runner's own checkpoint, say) is not the request's fault."""
    field: str
    """The job field the user should change."""
    explanation: str
    """What is wrong, in the user's words; the library's message follows it."""

    def matches(self, exc: BaseException, raised_in: str | None) -> bool:
        names = {f"{c.__module__}.{c.__qualname__}" for c in type(exc).__mro__}
        return (
            self.exception in names
            and raised_in is not None
            and (raised_in == self.where or raised_in.startswith(self.where + "."))
            and re.search(self.pattern, str(exc)) is not None
        )


TARGET_MODULES = "hyperparams.lora_target_modules"

KNOWN_FAILURES: tuple[KnownFailure, ...] = (
    KnownFailure("peft.utils.error.NoMatchingPeftModuleError", "", METHODS, TARGET_MODULES,
                 "no module of the base model has any of these names"),
    KnownFailure("builtins.ValueError", r"^Target modules? .* not found in the base model", METHODS, TARGET_MODULES,
                 "no module of the base model has any of these names"),
    KnownFailure("builtins.ValueError", r"^Target module .* is not supported", METHODS, TARGET_MODULES,
                 "a name matches a module LoRA cannot adapt (a block, norm or activation, not a linear "
                 "or embedding layer)"),
    KnownFailure("safetensors._safetensors_rust.SafetensorError", "", MODELS, "base_model",
                 "a weights file of the base model is not valid safetensors (truncated or corrupt)"),
    KnownFailure("builtins.RuntimeError", r"ignore_mismatched_sizes|size mismatch", MODELS, "base_model",
                 "the base model's weights do not have the shapes its config.json declares"),
    KnownFailure("builtins.RuntimeError", r"Error\(s\) in loading state_dict", MODELS, "base_model",
                 "the base model's weights do not fit its architecture"),
    KnownFailure("builtins.Exception", r"data did not match any variant of untagged enum", MODELS, "base_model",
                 "the base model's tokenizer.json is not a tokenizer the tokenizers library can read"),
    KnownFailure("builtins.KeyError", "", f"{MODELS}.loading", "base_model",
                 "a file of the base model (config or tokenizer) lacks an entry transformers needs"),
    KnownFailure("builtins.UnicodeDecodeError", "", MODELS, "base_model",
                 "a file of the base model is not text where text was expected"),
    KnownFailure("json.decoder.JSONDecodeError", "", MODELS, "base_model",
                 "a JSON file of the base model is not valid JSON"),
    KnownFailure("builtins.ValueError", r"does not support (gradient|activation) checkpointing", SESSION,
                 "hyperparams.gradient_checkpointing",
                 "this base model's architecture cannot checkpoint activations; set it to false"),
)


def raised_in(exc: BaseException) -> str | None:
    """The tuneyard module of the innermost frame the exception passed through: whose call raised it."""
    modules = [frame.f_globals.get("__name__", "") for frame, _ in traceback.walk_tb(exc.__traceback__)]
    ours = [m for m in modules if m == "tuneyard" or m.startswith("tuneyard.")]
    return ours[-1] if ours else None


def classify(exc: BaseException, where: str | None = None) -> UserError | None:
    """The user error `exc` means, or None for an exception that is (as far as anyone knows) ours.

    `where` is the tuneyard module that raised it; by default read from the traceback.
    """
    if isinstance(exc, UserError):
        return exc
    where = raised_in(exc) if where is None else where
    for known in KNOWN_FAILURES:
        if known.matches(exc, where):
            message = f"{known.field}: {known.explanation} ({type(exc).__name__}: {_first_line(exc)})"
            return UserError(message, field=known.field, cause=type(exc).__name__)
    return None


def blamed_field(exc: UserError) -> str:
    """The job field a user error is about: the one it names, or the one its type implies."""
    named = exc.details.get("field")
    if isinstance(named, str) and named:
        return named
    if isinstance(exc, SpecError) and exc.problems:
        return str(exc.problems[0].get("field", "(spec)"))
    if isinstance(exc, DataError):
        return _data_field(exc.message)
    if isinstance(exc, ModelNotFoundError):
        return "base_model"
    if isinstance(exc, UnsupportedError):
        return "type" if "type" in exc.details else "method"
    if isinstance(exc, CheckpointError):
        return "checkpoint"
    return "(spec)"


def _data_field(message: str) -> str:
    # tuneyard.training.data raises DataError without naming a field; these are the causes whose
    # fix lies outside the data files themselves.
    if "lost all its loss tokens to truncation" in message:
        return "hyperparams.max_seq_length"
    if "chat template" in message:
        return "base_model"
    return "datasets"


def user_message(exc: UserError) -> str:
    """The error's message, led by the field it blames unless it names that field already."""
    field = blamed_field(exc)
    return exc.message if field in exc.message else f"{field}: {exc.message}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= 300 else line[:297] + "..."
