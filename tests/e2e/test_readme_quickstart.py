"""The README's quickstart, run as a new user runs it: `scripts/serve` on its defaults (the relative
`./tuneyard-data`), then every command of the Quickstart section exactly as printed, from the
checkout's root, then the printed Python lines in a fresh process in another folder, with the
server gone and its data folder moved away, so nothing can lean on this server's paths.

What is filled in: the ids the README shows as `JOB_ID`, `file_…`, `ds_…`, `job_…` and
`model_…`, from the answers of the commands before, and the port (a free one instead of 8000).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.runs import REPO
from tests.support.service import free_port, wait_until
from tuneyard.training.models.catalog import tiny_llama_folder_name

STAMP = REPO / ".venv" / ".tuneyard-installed"


def quickstart_blocks() -> list[tuple[str, str]]:
    """(language, code) of each fenced block in the README's Quickstart section, in order."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S)


def commands(block: str) -> list[str]:
    """One shell command a line, continuation lines joined."""
    return [line for line in block.replace("\\\n", " ").splitlines() if line.strip()]


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A fresh checkout as far as the quickstart can tell: the repo's scripts, examples and README,
    and its already-bootstrapped .venv (so `scripts/bootstrap` has nothing to install)."""
    if not STAMP.is_file():
        pytest.skip("the repo's .venv is not bootstrapped (run scripts/bootstrap first)")
    root = tmp_path / "tuneyard"
    root.mkdir()
    for name in ("scripts", "examples"):
        shutil.copytree(REPO / name, root / name)
    for name in ("README.md", "pyproject.toml", "LICENSE"):
        shutil.copy2(REPO / name, root / name)
    stamp_time = STAMP.stat().st_mtime
    os.utime(root / "pyproject.toml", (stamp_time - 1, stamp_time - 1))  # not newer than the install
    (root / ".venv").symlink_to(REPO / ".venv")
    return root


@pytest.fixture
def serve(checkout: Path) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, str]]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNEYARD_")}
    env["TUNEYARD_PORT"] = str(port)
    with open(checkout / "serve.log", "wb") as log:
        proc = subprocess.Popen(["scripts/serve"], cwd=checkout, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        wait_until(lambda: _healthy(port) or proc.poll() is not None, timeout=120)
        assert proc.poll() is None, (checkout / "serve.log").read_text()
        yield proc, env
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=90)


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def shell(command: str, cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    done = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{command}\nexit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


# peft 0.21 calls a transformers 5 property that is deprecated; nothing of ours to fix.
@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_the_quickstart_as_printed(serve: tuple[subprocess.Popen[bytes], dict[str, str]], checkout: Path,
                                   tmp_path: Path) -> None:
    proc, env = serve
    port = env["TUNEYARD_PORT"]
    (cli, curl, python) = quickstart_blocks()[:3]
    assert (cli[0], curl[0], python[0]) == ("bash", "bash", "python")

    # By CLI: upload, train with --follow, list, download, unpack.
    said: dict[str, str] = {}
    for command in commands(cli[1]):
        command = command.replace("JOB_ID", said.get("job", "JOB_ID"))
        out = shell(command, checkout, env)
        if "jobs create" in command:
            assert " completed: model model_" in out, out
            said["job"] = re.findall(r"\bjob_[0-9a-z]+", out)[0]
            said["model"] = re.findall(r"\bmodel_[0-9a-z]+", out)[0]
        if "jobs list" in command:
            assert said["job"] in out and "completed" in out
    assert (checkout / "tuneyard-data" / "tuneyard.db").is_file()  # the relative default, under the checkout
    unpacked = checkout / said["model"]
    assert (unpacked / "adapter_config.json").is_file()
    card = (unpacked / "README.md").read_text()
    assert "[More Information Needed]" not in card and said["job"] in card and "`tiny-chat`" in card
    assert hashlib.sha256((checkout / "examples" / "tiny-chat.jsonl").read_bytes()).hexdigest() in card
    assert json.loads((unpacked / "adapter_config.json").read_text())["base_model_name_or_path"] == "tiny-llama"

    # By curl: the same path over HTTP, each id taken from the answer before.
    prelude, *rest = commands(curl[1])
    prelude = prelude.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    ids: dict[str, str] = {}
    for command in rest:
        for prefix, value in ids.items():
            command = command.replace(f"{prefix}_…", value)
        out = shell(f"{prelude}\n{command}", checkout, env, timeout=300)
        if "-F file=@" in command:
            ids["file"] = json.loads(out)["id"]
        elif "$API/datasets" in command:
            dataset = json.loads(out)
            assert dataset["status"] == "ready", dataset
            ids["ds"] = dataset["id"]
        elif re.search(r"\$API/jobs\s", command):
            ids["job"] = json.loads(out)["id"]
        elif "/stream" in command:  # returned: the stream ends once the job rests
            assert "event: metric" in out and "event: log" in out, out[-2000:]
        elif "/result" in command:
            result = json.loads(out)
            assert result["ppl_final"] < result["ppl_baseline"], result
    with tarfile.open(checkout / "model.tar.gz") as archive:
        names = archive.getnames()
    job = json.loads(shell(f"{prelude}\ncurl -s -H \"$H\" $API/jobs/{ids['job']}", checkout, env))
    assert {name.split("/")[0] for name in names} == {job["output_model_id"]}  # model_…/, as the README says

    # The Python lines, in a fresh process and another folder, the server gone and its data moved away.
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=90)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copytree(unpacked, elsewhere / said["model"])
    moved = checkout.parent / "data-moved-away"
    (checkout / "tuneyard-data").rename(moved)
    code = python[1].replace("model_…", said["model"]) + (
        "\nimport torch\nwith torch.no_grad():\n"
        "    logits = model(input_ids=torch.arange(1, 17).unsqueeze(0)).logits\n"
        "torch.save(logits, 'logits.pt')\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in env.items() if not k.startswith(("TUNEYARD_", "HF_"))})
    assert done.returncode == 0, done.stderr
    assert (elsewhere / "models").is_dir()  # the base was rebuilt here, not found in the server's cache

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    trained = moved / "runs" / said["job"] / "final"
    base = AutoModelForCausalLM.from_pretrained(moved / "cache" / "models" / tiny_llama_folder_name())
    reference = PeftModel.from_pretrained(base, trained)
    with torch.no_grad():
        expected = reference(input_ids=torch.arange(1, 17).unsqueeze(0)).logits
    assert torch.allclose(torch.load(elsewhere / "logits.pt"), expected, atol=1e-6)
