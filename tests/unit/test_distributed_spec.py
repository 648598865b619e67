"""The `distributed` field of a training spec, checked up front, and the launcher's pure parts: the
ranks' shares of a step, the launcher's exit code from the ranks', the worker's command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tuneyard.settings import Settings
from tuneyard.spec.distributed import Distributed
from tuneyard.spec.parse import check_spec
from tuneyard.training.launch import exit_code_of, torchrun_args
from tuneyard.training.ranks import Ranks
from tuneyard.worker.command import rank_threads, runner_argv, spec_processes


def _spec(distributed: Any, method: str = "lora") -> dict[str, Any]:
    return {"type": "finetune", "base_model": "tiny-llama", "method": method,
            "datasets": [{"path": "train.jsonl"}], "distributed": distributed}


@pytest.mark.parametrize(("distributed", "method", "fields"), [
    pytest.param({"strategy": "fsdp", "num_processes": 2}, "lora", ["distributed.strategy"], id="fsdp-adapter"),
    pytest.param({"strategy": "fsdp", "num_processes": 2}, "qlora", ["distributed.strategy"], id="fsdp-qlora"),
    pytest.param({"strategy": "zero3"}, "lora", ["distributed.strategy"], id="unknown-strategy"),
    pytest.param({"num_processes": 0}, "lora", ["distributed.num_processes"], id="no-processes"),
    pytest.param({"num_processes": 100_000}, "lora", ["distributed.num_processes"], id="too-many"),
    pytest.param({"num_processes": "two"}, "lora", ["distributed.num_processes"], id="a-word"),
    pytest.param({"num_nodes": 0}, "lora", ["distributed.num_nodes"], id="no-nodes"),
    pytest.param({"num_processes": 2, "gpus": 2}, "lora", ["distributed.gpus"], id="unknown-field"),
    pytest.param({"num_processes": 2}, "dpo", ["distributed.num_processes"], id="dpo-alone"),
    pytest.param(True, "lora", ["distributed"], id="a-bool"),
])
def test_bad_distributed_values_are_refused_naming_the_field(distributed: Any, method: str,
                                                             fields: list[str]) -> None:
    spec, problems = check_spec(_spec(distributed, method))
    assert spec is None
    assert sorted({p["field"] for p in problems}) == fields, problems


def test_good_values_pass_and_one_process_is_the_default() -> None:
    spec, problems = check_spec(_spec({"num_processes": 4}))
    assert problems == [] and spec is not None
    assert spec.processes() == Distributed(strategy="ddp", num_processes=4, num_nodes=1)  # type: ignore[attr-defined]
    plain, _ = check_spec({k: v for k, v in _spec(None).items() if k != "distributed"})
    assert plain.processes().world_size == 1  # type: ignore[union-attr]
    assert check_spec(_spec({"num_processes": 2}, "dpo"))[1] and not check_spec(_spec({"num_processes": 1}, "dpo"))[1]
    sharded, problems = check_spec(_spec({"strategy": "fsdp", "num_processes": 2}, "full"))
    assert problems == [] and sharded.processes().strategy == "fsdp"  # type: ignore[union-attr]


def test_more_than_one_node_is_refused_on_the_local_executor_only() -> None:
    two_nodes = Distributed(num_processes=2, num_nodes=2)
    assert [p["field"] for p in two_nodes.executor_problems("local")] == ["distributed.num_nodes"]
    assert two_nodes.executor_problems("some-cluster") == []
    assert Distributed(num_processes=8).executor_problems("local") == []


@pytest.mark.parametrize(("items", "world", "shares"), [
    (list(range(8)), 2, [[0, 1, 2, 3], [4, 5, 6, 7]]),
    (list(range(5)), 2, [[0, 1, 2], [3, 4]]),
    (list(range(3)), 4, [[0], [1], [2], []]),
    (list(range(4)), 1, [[0, 1, 2, 3]]),
])
def test_each_rank_takes_a_contiguous_share_and_together_they_take_all(items: list[int], world: int,
                                                                       shares: list[list[int]]) -> None:
    assert [Ranks(rank, rank, world).shard(items) for rank in range(world)] == shares


def test_ranks_come_from_torchruns_variables() -> None:
    assert Ranks.from_launcher({}) == Ranks(0, 0, 1)
    assert Ranks.from_launcher({"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4"}) == Ranks(3, 1, 4)


@pytest.mark.parametrize(("codes", "expected"), [
    ({0: 75, 1: 75}, (75, None)),
    ({1: 75}, (75, None)),
    ({0: 3}, (3, None)),
    ({0: 1, 1: 3}, (3, None)),
    ({0: -15, 1: -15}, (-15, None)),
    ({1: -2}, (-2, None)),
    ({1: -9}, (1, "rank 1 of the distributed run was killed by SIGKILL; every rank was stopped")),
    ({0: 1, 1: -9}, (1, "rank 1 of the distributed run was killed by SIGKILL; every rank was stopped")),
    ({0: 1}, (1, "rank 0 of the distributed run exited 1; every rank was stopped")),
    ({0: 75, 1: 1}, (1, "rank 0 of the distributed run exited 75; every rank was stopped")),
])
def test_the_launcher_exits_as_the_ranks_did(codes: dict[int, int], expected: tuple[int, str | None]) -> None:
    assert exit_code_of(codes) == expected


def test_the_worker_launches_several_ranks_through_torchrun(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, runner_nice=0)
    run_dir = tmp_path / "runs" / "job-1"
    assert runner_argv(settings, run_dir, "latest", processes=2) == [
        sys.executable, "-m", "tuneyard.training.launch", "--nproc-per-node", "2", "--run-dir", str(run_dir),
        str(run_dir / "spec.json"), "--model-cache-dir", str(tmp_path / "cache" / "models"), "--resume", "latest",
    ]  # fmt: skip
    assert runner_argv(settings, run_dir, processes=1)[:3] == [sys.executable, "-m", "tuneyard.training"]
    assert torchrun_args(2, ["spec.json"])[:2] == ["--standalone", "--nproc-per-node"]
    assert spec_processes({"distributed": {"num_processes": 3}}) == 3 and spec_processes({}) == 1
    assert rank_threads({"OMP_NUM_THREADS": "4"}, 2) == {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    assert rank_threads({"OMP_NUM_THREADS": "1"}, 2)["OMP_NUM_THREADS"] == "1"
    assert rank_threads({"OMP_NUM_THREADS": "4"}, 1) == {}
