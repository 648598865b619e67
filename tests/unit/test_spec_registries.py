"""The vocabularies: one registry each, held to what implements them; the spec as their union."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import pytest

from tuneyard.spec import FORMATS, JOB_TYPES, METHODS, check_spec, model_output, parse_spec, resolve_hyperparams
from tuneyard.spec.registry import Registry
from tuneyard.training import contract
from tuneyard.training import methods as implemented_methods
from tuneyard.training.data.formats import PARSERS, detect
from tuneyard.training.models.catalog import list_builtins
from tuneyard.training.models.chat_template import CHATML_TEMPLATE, chatml_turn
from tuneyard.training.recipes import RECIPES


@dataclass(frozen=True)
class Entry:
    name: str


def test_a_name_is_registered_once() -> None:
    registry: Registry[Entry] = Registry("thing")
    registry.register(Entry("a"))
    with pytest.raises(ValueError, match="thing 'a' is already registered"):
        registry.register(Entry("a"))
    with pytest.raises(KeyError, match="unknown thing 'b'; known: a"):
        registry.get("b")


def test_builtin_registries_refuse_duplicates() -> None:
    for registry in (JOB_TYPES, METHODS, FORMATS):
        first = next(iter(registry))
        with pytest.raises(ValueError, match="already registered"):
            registry.register(first)  # type: ignore[arg-type]


# ---- the registries equal their implementations --------------------------------------------

def test_runnable_job_types_are_the_runners_recipes() -> None:
    assert {t.name for t in JOB_TYPES if t.runnable} == set(RECIPES.names())


def test_runnable_job_types_announce_only_contract_phases() -> None:
    for entry in JOB_TYPES:
        if entry.runnable:
            assert set(entry.phases) <= set(contract.PHASES), entry.name


def test_methods_are_the_implemented_ones() -> None:
    assert implemented_methods.registered() == METHODS.names()


def test_formats_are_the_parsers() -> None:
    assert tuple(PARSERS) == FORMATS.names()


def test_each_format_is_detected_by_its_key() -> None:
    for entry in FORMATS:
        assert detect({entry.key: "x"}) == entry.name


def test_catalog_methods_are_registered() -> None:
    for model in list_builtins():
        assert set(model.methods) <= set(METHODS.names()), model.id
        assert set(model.defaults) == {"*", *METHODS.names()}, model.id


def test_spec_package_imports_no_torch() -> None:
    code = ("import sys, tuneyard.spec as s; s.parse_spec({'base_model': 'm', 'datasets': [{'path': 'x'}]}); "
            "print(sorted({'torch', 'transformers', 'peft'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---- JobSpec: a union by type, then by method ----------------------------------------------

DATA = [{"path": "train.jsonl"}]


def test_type_and_method_default_to_finetune_and_lora() -> None:
    spec = parse_spec({"base_model": "m", "datasets": DATA})
    assert (spec.type, getattr(spec, "method", None)) == ("finetune", "lora")


def test_flat_lora_params_in_hyperparams_are_still_accepted() -> None:
    spec = parse_spec({"base_model": "m", "datasets": DATA, "hyperparams": {"lora_rank": 8, "epochs": 2}})
    hp, origins = resolve_hyperparams(spec)  # type: ignore[arg-type]
    assert hp.model_dump()["lora_rank"] == 8 and hp.epochs == 2
    assert origins["lora_rank"] == "user" and origins["lora_alpha"] == "default"


def test_a_methods_params_belong_to_it_alone() -> None:
    spec, problems = check_spec({"base_model": "m", "datasets": DATA, "method": "full",
                                 "hyperparams": {"lora_rank": 8}})
    assert spec is None
    assert problems == [{"field": "hyperparams.lora_rank",
                         "message": "not a parameter of this method; lora, qlora, dpo take it"}]


def test_method_defaults_come_from_the_method() -> None:
    spec = parse_spec({"base_model": "m", "datasets": DATA, "method": "full"})
    hp, origins = resolve_hyperparams(spec)  # type: ignore[arg-type]
    assert hp.learning_rate == METHODS.get("full").defaults["learning_rate"]
    assert origins["learning_rate"] == "method"


def test_unknown_type_and_method_are_named_with_every_other_problem() -> None:
    _, problems = check_spec({"type": "distill", "base_model": "", "datasets": DATA})
    assert {"field": "type", "message": f"expected one of {', '.join(JOB_TYPES.names())}"} in problems
    assert "base_model" in {p["field"] for p in problems}
    _, problems = check_spec({"base_model": "m", "datasets": DATA, "method": "kto", "hyperparams": {"epochs": 0}})
    assert {p["field"] for p in problems} == {"method", "hyperparams.epochs"}


def test_data_is_required_where_the_type_says_so() -> None:
    for entry in JOB_TYPES:
        body = {"type": entry.name, "base_model": "m"}
        spec, problems = check_spec(body)
        if entry.needs_data:
            assert problems == [{"field": "datasets", "message": f"a {entry.name} job needs at least one "
                                 "training dataset"}]
        elif entry.name == "evaluate":  # held-out text, which an eval-split dataset alone may be
            assert spec is None and [p["field"] for p in problems] == ["datasets"]
        else:
            assert spec is not None and spec.type == entry.name


def test_unknown_data_format_is_refused() -> None:
    _, problems = check_spec({"base_model": "m", "datasets": [{"path": "x", "format": "csv"}]})
    assert problems == [{"field": "datasets.0.format",
                         "message": f"expected one of auto, {', '.join(FORMATS.names())}"}]


def test_model_output_follows_the_method() -> None:
    assert model_output("finetune", "lora") == "adapter"
    assert model_output("finetune", "qlora") == "adapter"
    assert model_output("finetune", "full") == "full"
    assert model_output("merge", None) == "full"


def test_model_output_is_what_the_type_declares(monkeypatch: pytest.MonkeyPatch) -> None:
    from tuneyard.spec import jobtypes
    from tuneyard.spec.job import FinetuneSpec, JobSpecBase, MergeSpec

    cases: list[tuple[str, type[JobSpecBase], tuple[jobtypes.Output, ...]]] = [
        ("score", FinetuneSpec, ("evaluation",)), ("noop", MergeSpec, ("none",)),
        ("export", MergeSpec, ("gguf", "evaluation")),
    ]
    declared: Registry[jobtypes.JobTypeEntry] = Registry("job type")
    for name, spec, outputs in cases:
        declared.register(jobtypes.JobTypeEntry(name=name, description=name, spec=spec, needs_data=False,
                                                input="trained_model", outputs=outputs, phases=("done",)))
    monkeypatch.setattr(jobtypes, "JOB_TYPES", declared)
    assert model_output("score", "lora") is None  # takes a method, but declares no model
    assert model_output("noop", None) is None
    assert model_output("export", None) == "gguf"


def test_qlora_declares_its_kernels() -> None:
    assert "cuda" in METHODS.get("qlora").requires
    assert "the device is 'cpu'" in METHODS.get("qlora").unavailable("cpu")[0]
    assert METHODS.get("lora").unavailable("cpu") == []


# ---- ChatML: one layout, rendered two ways -------------------------------------------------

def test_chatml_template_and_python_layout_agree() -> None:
    from tests.fixtures.data.tiny_tokenizer import make_tokenizer

    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"x": "é"}}}
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "content": "r"}, {"role": "assistant", "content": "yo"}]
    tokenizer = make_tokenizer(chat_template=False)
    text = tokenizer.apply_chat_template(messages, chat_template=CHATML_TEMPLATE, tokenize=False)
    laid_out = "".join("".join(chatml_turn(m["role"], m["content"] or "", m.get("tool_calls"))) for m in messages)
    assert text == laid_out
