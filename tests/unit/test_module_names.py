"""LoRA target modules checked at submission against module names derived from config.json alone:
a name that matches nothing, or a block LoRA cannot adapt, is a 422 naming the field, not a job
that fails in the runner (and, before, was retried as a platform error)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.store import memory_database
from tuneyard.api.schemas.job_create import job_request
from tuneyard.services import base_models, datasets, files
from tuneyard.services.errors import InvalidRequest
from tuneyard.services.submission import plan_job
from tuneyard.settings import Settings
from tuneyard.spec.module_names import layers_to_assume, layout_for, target_problems
from tuneyard.store import tenancy
from tuneyard.store.engine import Database

LLAMA = layout_for("llama", 4)
assert LLAMA is not None

CHATS = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n' * 3


@pytest.mark.parametrize("targets", [
    "all-linear", ["q_proj"], ["q_proj", "v_proj"], ["self_attn.o_proj"], ["mlp.down_proj"],
    ["layers.3.mlp.up_proj"], ["model.layers.0.self_attn.k_proj"], ["embed_tokens"], ["lm_head"],
])
def test_names_peft_would_adapt_pass(targets: str | list[str]) -> None:
    assert target_problems(targets, LLAMA) == []


@pytest.mark.parametrize(("targets", "problem"), [
    (["nope"], "'nope' matches no module of this llama model"),
    (["q_proj", "vproj"], "'vproj' matches no module of this llama model"),
    (["proj"], "'proj' matches no module"),  # a suffix counts only from a dot, as in peft
    (["layers.4.mlp.up_proj"], "'layers.4.mlp.up_proj' matches no module"),  # 4 layers: 0..3
    (["mlp"], "'mlp' matches model.layers.0.mlp, a block of layers LoRA cannot adapt"),
    (["self_attn"], "a block of layers LoRA cannot adapt"),
    (["input_layernorm"], "a norm layer LoRA cannot adapt"),
    (["norm"], "'norm' matches model.norm, a norm layer LoRA cannot adapt"),
    (["rotary_emb"], "'rotary_emb' matches model.rotary_emb, a module without weights LoRA cannot adapt"),
    (["act_fn"], "a module without weights LoRA cannot adapt"),
])
def test_names_peft_would_refuse_are_problems(targets: list[str], problem: str) -> None:
    found = target_problems(targets, LLAMA)
    assert len(found) == 1 and problem in found[0]


def test_layouts_differ_by_model_type() -> None:
    qwen3 = layout_for("qwen3", 2)
    assert qwen3 is not None and "model.layers.1.self_attn.q_norm" in qwen3.modules
    assert "a norm layer" in target_problems(["q_norm"], qwen3)[0]
    assert "matches no module" in target_problems(["q_norm"], LLAMA)[0]
    assert layout_for("no-such-architecture", 2) is None
    assert LLAMA.adaptable_names() == ["embed_tokens", "lm_head", "q_proj", "k_proj", "v_proj", "o_proj",
                                       "gate_proj", "up_proj", "down_proj"]


def test_an_unknown_layer_count_judges_names_not_indices() -> None:
    assert layers_to_assume(["q_proj"]) == 1
    assert layers_to_assume(["layers.11.mlp.up_proj", "layers.2.self_attn.q_proj"]) == 12


# ---- at submission --------------------------------------------------------------------------


@pytest.fixture
def db() -> Database:
    return memory_database()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    (tmp_path / "models").mkdir()
    return Settings(data_dir=tmp_path / "data", model_roots=[tmp_path / "models"])


@pytest.fixture
def org_id(db: Database, settings: Settings, tmp_path: Path) -> str:
    org = tenancy.create_org(db, "acme").id
    with (tmp_path / "c.jsonl").open("wb+") as handle:
        handle.write(CHATS)
        handle.seek(0)
        stored = files.upload_file(db, settings, org, "c.jsonl", handle)
    assert datasets.create_dataset(db, org, datasets.DatasetCreate("chats", [stored.id])).status == "ready"
    return org


def submit(db: Database, settings: Settings, org_id: str, base_model: str, targets: object) -> list[dict[str, str]]:
    body = {"base_model": base_model, "datasets": [{"name": "chats"}], "hyperparams": {"lora_target_modules": targets}}
    try:
        plan_job(db, settings, org_id, job_request(body))
    except InvalidRequest as exc:
        return list(exc.problems)
    return []


def register(db: Database, settings: Settings, org_id: str, config: dict[str, object]) -> str:
    folder = settings.model_roots[0] / str(config.get("model_type", "model"))
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    return base_models.register_base_model(db, settings, org_id, base_models.BaseModelRegistration(str(folder))).id


def test_a_builtin_model_refuses_a_name_it_lacks(db: Database, settings: Settings, org_id: str) -> None:
    problems = submit(db, settings, org_id, "tiny-llama", "nope")
    assert [p["field"] for p in problems] == ["hyperparams.lora_target_modules"]
    assert problems[0]["message"].startswith("'nope' matches no module of this llama model; LoRA can adapt "
                                             "embed_tokens, lm_head, q_proj")
    assert submit(db, settings, org_id, "tiny-llama", ["q_proj", "v_proj"]) == []


def test_a_registered_folder_is_judged_by_its_config(db: Database, settings: Settings, org_id: str) -> None:
    model = register(db, settings, org_id, {"model_type": "qwen3", "num_hidden_layers": 2})
    problems = submit(db, settings, org_id, model, ["layers.5.self_attn.q_proj", "q_norm", "k_proj"])
    assert [p["message"].split(";")[0] for p in problems] == [
        "'layers.5.self_attn.q_proj' matches no module of this qwen3 model",
        "'q_norm' matches model.layers.0.self_attn.q_norm, a norm layer LoRA cannot adapt (only linear and "
        "embedding layers)",
    ]


def test_a_model_whose_names_are_unknown_is_left_to_the_runner(db: Database, settings: Settings,
                                                               org_id: str) -> None:
    model = register(db, settings, org_id, {"model_type": "some-new-arch", "num_hidden_layers": 2})
    assert submit(db, settings, org_id, model, ["nope"]) == []
