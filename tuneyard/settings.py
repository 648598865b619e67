"""One Settings object, built once at the edge (CLI, tests) and passed in.

Nothing below this module reads os.environ: `Settings.from_env()` is the only place that does.
"""

from __future__ import annotations

import ipaddress
import math
import os
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from tuneyard.errors import SettingsError

ENV_PREFIX = "TUNEYARD_"


@dataclass(frozen=True)
class Settings:
    """Where tuneyard keeps its data and how it runs. Every field can be set as TUNEYARD_<NAME>."""

    data_dir: Path = Path("./tuneyard-data")
    """Database (SQLite default), uploads, run folders, models and the admin key live here."""
    database_url: str | None = None
    """SQLAlchemy URL; None means SQLite at DATA_DIR/tuneyard.db."""
    host: str = "127.0.0.1"
    port: int = 8000
    auth: str = "key"
    """`key`: every request needs an API key. `none`: single-user mode for a laptop, where a request
    without a key acts as the local admin (DATA_DIR/admin.key); allowed only while `host` is loopback."""
    workers: int = 1
    """Embedded workers started by `tuneyard serve`."""
    api_processes: int = 0
    """API processes `tuneyard serve` starts beside itself, all accepting on its one listening socket,
    while the embedded workers stay in the serve process (tuneyard.api.processes). 0: the API runs in
    the serve process, sharing its interpreter (and GIL) with the workers' supervisors."""
    lease_seconds: float = 30.0
    """A claimed job is the worker's for this long after each heartbeat."""
    heartbeat_seconds: float = 5.0
    poll_seconds: float = 0.5
    """How often an idle worker looks for work."""
    telemetry_seconds: float = 1.0
    """How often a worker stores what its runners report: how stale live metrics may be. Each store
    is a database transaction on the cores the runner trains on; more often costs training time."""
    max_retries: int = 3
    """Lease expiries tolerated before a job fails."""
    stop_grace_seconds: float = 60.0
    """How long a stopping runner may take to checkpoint before it is killed."""
    cancel_grace_seconds: float = 10.0
    max_upload_bytes: int = 512 * 1024 * 1024
    job_create_rate_per_minute: int = 20
    head_read_timeout_seconds: float = 10.0
    """A request whose line and headers have not all arrived this long after it began is answered 408."""
    body_read_timeout_seconds: float = 30.0
    """A request whose next piece of body takes longer than this to arrive is answered 408."""
    body_total_timeout_seconds: float = 3600.0
    """A whole request body may take this long (an upload of max_upload_bytes at ~150 kB/s)."""
    max_concurrent_uploads_per_key: int = 4
    """Uploads one API key may have arriving at once; one more is answered 429."""
    # Quotas per organization, generous for a laptop: they stop a runaway script, not a user.
    # 0 turns a quota off. Each refusal names its quota (429; 413 for bytes).
    quota_files: int = 1000
    quota_file_bytes: int = 50 * 1024**3
    """Bytes of all the organization's uploaded files together."""
    quota_datasets: int = 500
    quota_base_models: int = 100
    """Base models the organization registered (the built-in catalog is not counted)."""
    quota_active_jobs: int = 100
    """Jobs queued or held by a worker (starting, running, finalizing, stopping, cancelling)."""
    model_roots: tuple[Path, ...] = field(default_factory=tuple)
    """Folders under which local base models may be registered."""
    model_cache_dir: Path | None = None
    """Where built-in models are made and cached; None means DATA_DIR/cache/models."""
    dataset_root: Path | None = None
    """The folder a job may name a training file in by path (document 002's dataset_path); None
    means DATA_DIR/datasets. Nothing outside it is read."""
    hub_endpoint: str | None = None
    """The Hugging Face Hub, or a mirror or self-hosted hub speaking its API, that document 002's hub
    dataset ids are fetched from (by the API process) and that runners fetch hub models from; None
    leaves it to huggingface_hub: its HF_ENDPOINT, else https://huggingface.co."""
    hub_timeout_seconds: float = 10.0
    """How long the hub's answers about a dataset (its info, each file's headers) may take while a
    request fetches it; a file's bytes wait huggingface_hub's HF_HUB_DOWNLOAD_TIMEOUT between pieces."""
    runner_python: str | None = None
    """Interpreter for runner subprocesses; None means the one running tuneyard."""
    runner_nice: int = 10
    """The nice increment runners start with (0 keeps the worker's priority). Training is throughput
    work: on cores it shares with the API and the supervisors, they must answer first."""
    metrics_org_labels: bool = False
    """/metrics adds jobs by organization (`org` labels); off, it shows service-wide figures only."""
    worker_memory_bytes: int | None = None
    """Memory this process's workers declare for admission: they claim only jobs whose memory
    estimate fits. None measures the host (the GPU's memory on CUDA, MemAvailable on CPU;
    tuneyard.scheduler.capacity)."""
    executor: str = "local"
    """Where workers run their runners, by registered name (tuneyard.worker.executors.registry):
    `local` is a subprocess on the worker's machine; `ray` an actor on the Ray cluster at
    `ray_address` (data-parallel jobs through Ray Train), which needs `pip install 'tuneyard[ray]'` and
    the data folder on a filesystem every node shares (docs/deploy.md)."""
    ray_address: str = "auto"
    """The Ray cluster the `ray` executor runs runners on: `auto` (the cluster `ray start` made on this
    machine, or RAY_ADDRESS's) or its head's GCS address, host:port (`ray start --head --port`)."""
    gguf_converter_dir: Path | None = None
    """llama.cpp's HF → GGUF converter folder; None means where scripts/llama_cpp_wheel extracts it
    (~/.cache/tuneyard/wheels/llama-cpp-converter-<version>)."""
    runner_threads: int | None = None
    """CPU threads each runner computes with (torch's intra-op pool: OMP_NUM_THREADS and MKL_NUM_THREADS
    in its environment). None: the host's cores shared by this process's workers, at least one each,
    unless the worker's own environment sets OMP_NUM_THREADS, which is passed on as it is. Runners whose
    pools together outnumber the cores wait on each other at every op: two runners of 2 threads on a
    busy 2-core host trained 3x slower than two of 1 thread (a 576x1536 MLP's steps, 126-142 s against
    38-47 s)."""
    export_threads: int = 2
    """CPU threads an export's conversion and llama.cpp verification use (it runs at runner_nice)."""
    serving_threads: int = 1
    """CPU threads a served model computes with (torch's and llama.cpp's pools, OpenMP's too). The
    serving process runs beside training: capped, it leaves the other cores to the runners. One by
    default: on a CPU busy with training, threads that wait on each other at every layer lose their
    turns (SmolLM2 on a loaded 2-core host, benchmarks/serving.py: llama.cpp 0.2 tokens/s with 2
    threads, 10.9 with 1); raise it on a host with cores to spare."""
    serving_nice: int = 10
    """The nice increment of the serving process: the runners' default, so an answer and a training
    step share a busy CPU evenly and neither starves the API."""
    serving_idle_seconds: float = 900.0
    """A served model unused this long is unloaded (its memory freed); the next request loads it again."""
    price_per_cpu_hour: float = 0.0
    """What an hour of a CPU worker costs, in USD, for estimates and results' cost_usd (0: not billed)."""
    price_per_cuda_hour: float = 0.0
    """What an hour of a CUDA GPU worker costs, in USD (0: not billed)."""
    run_storage: str | None = None
    """Where run folders are kept beyond the worker's disk, so that a job can resume on another machine:
    `s3://bucket/prefix` (S3 or an S3-compatible store; needs the `s3` extra). Runners upload each
    checkpoint and final/ there before reporting them, and a worker fetches what it lacks before it
    starts a runner (tuneyard.training.run_storage). Credentials and region come from the standard AWS
    variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION). None: run folders live on
    the worker's disk alone (share DATA_DIR between machines instead)."""
    run_storage_endpoint: str | None = None
    """The S3 endpoint of run_storage, for a store other than AWS (MinIO, Ceph, ...): an http:// or
    https:// URL. Unset, `from_env` takes AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL; None: AWS itself."""
    judge_base_url: str | None = None
    """An OpenAI-compatible endpoint (`{base_url}/chat/completions`) whose model grades evaluations'
    answers (coherence, consistency, helpfulness); None: evaluations score by reference-based measures."""
    judge_model: str | None = None
    """The judge model's name at judge_base_url (needed with it)."""
    judge_api_key: str | None = None
    """The judge's API key, if it takes one: handed to runners in their environment, stored nowhere."""

    def __post_init__(self) -> None:
        _check_auth(self.auth, self.host)
        _check_judge(self.judge_base_url, self.judge_model)
        _check_url("HUB_ENDPOINT", self.hub_endpoint)
        _check_url("RUN_STORAGE_ENDPOINT", self.run_storage_endpoint)
        _check_run_storage(self.run_storage)
        _check_ray_address(self.ray_address)
        if self.api_processes < 0:
            raise SettingsError(ENV_PREFIX + "API_PROCESSES", f"{self.api_processes} is not a count of processes")
        if self.runner_threads is not None and self.runner_threads < 1:
            raise SettingsError(ENV_PREFIX + "RUNNER_THREADS",
                                f"{self.runner_threads} is not a count of threads (1 or more)")
        # Paths are made absolute once, here, against the directory the process started in: they
        # are stored (file and model paths in the database) and handed to runners that work in
        # their run folder, where a relative path would name something else.
        absolute = _absolute_path
        object.__setattr__(self, "data_dir", absolute(self.data_dir))
        if self.model_cache_dir is not None:
            object.__setattr__(self, "model_cache_dir", absolute(self.model_cache_dir))
        if self.dataset_root is not None:
            object.__setattr__(self, "dataset_root", absolute(self.dataset_root))
        object.__setattr__(self, "model_roots", tuple(absolute(root) for root in self.model_roots))
        if self.runner_python is not None and os.sep in self.runner_python:
            object.__setattr__(self, "runner_python", str(absolute(Path(self.runner_python))))

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'tuneyard.db').resolve()}"

    @property
    def resolved_model_cache_dir(self) -> Path:
        return self.model_cache_dir or self.data_dir / "cache" / "models"

    @property
    def resolved_dataset_root(self) -> Path:
        return self.dataset_root or self.data_dir / "datasets"

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with the given non-None fields changed (CLI flags over the environment)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def as_environment(self) -> dict[str, str]:
        """Every field as the TUNEYARD_ variable `from_env` reads back into the same value: how a child
        process (an API process of `serve --api-processes`) gets these settings, CLI flags included."""
        return {ENV_PREFIX + f.name.upper(): _render(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The defaults, with each TUNEYARD_<NAME> that is set parsed by its field's annotation.

        Raises SettingsError naming the variable whose value is not of its field's type.
        """
        env = os.environ if environ is None else environ
        annotations = get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in fields(cls):
            # Every field's parser is found, set or not: a field of a type no parser knows fails
            # every call, in the first test, not when someone first sets its variable.
            parse = _parser(annotations[f.name])
            variable = ENV_PREFIX + f.name.upper()
            raw = env.get(variable)
            if raw is not None:
                values[f.name] = parse(variable, raw)
        if values.get("run_storage_endpoint") is None:
            # The AWS tools' own variables, which pyarrow's S3 client does not read by itself.
            endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
            values["run_storage_endpoint"] = endpoint or None
        return cls(**values)


AUTH_MODES = ("key", "none")


def _check_auth(auth: str, host: str) -> None:
    """`none` only behind loopback: a keyless server on a reachable address is anyone's admin."""
    if auth not in AUTH_MODES:
        raise SettingsError(ENV_PREFIX + "AUTH", f"{auth!r} is not one of {', '.join(AUTH_MODES)}")
    if auth == "none" and not is_loopback(host):
        raise SettingsError(ENV_PREFIX + "AUTH", f"auth 'none' (no API keys) is allowed only on a loopback address "
                                                 f"(127.0.0.1, ::1, localhost), and the host is {host!r}")


def _check_judge(base_url: str | None, model: str | None) -> None:
    """A judge is an endpoint and a model, both or neither: half a judge would grade nothing."""
    if bool(base_url) != bool(model):
        missing = "JUDGE_MODEL" if base_url else "JUDGE_BASE_URL"
        raise SettingsError(ENV_PREFIX + missing, "the evaluation judge needs both TUNEYARD_JUDGE_BASE_URL and "
                                                  "TUNEYARD_JUDGE_MODEL")
    _check_url("JUDGE_BASE_URL", base_url)


def _check_ray_address(address: str) -> None:
    """`auto` or host:port: a typo would otherwise surface only as a worker that cannot connect."""
    if address == "auto":
        return
    host, _, port = address.rpartition(":")
    if not host or "/" in address or not port.isdigit() or not 0 < int(port) < 65536:
        raise SettingsError(ENV_PREFIX + "RAY_ADDRESS", f"{address!r} is neither auto nor a Ray head's host:port "
                                                        "(e.g. 10.0.0.5:6379)")


def _check_url(name: str, url: str | None) -> None:
    if url and not url.startswith(("http://", "https://")):
        raise SettingsError(ENV_PREFIX + name, f"{url!r} is not an http:// or https:// URL")


def _check_run_storage(url: str | None) -> None:
    """`scheme://bucket[/prefix]`, checked for its shape here; whether tuneyard has a backend for the
    scheme, and whether the bucket is there, when a worker opens it (tuneyard.training.run_storage)."""
    if url is None:
        return
    scheme, sep, rest = url.partition("://")
    bucket = rest.split("/", 1)[0]
    if not sep or not scheme or not bucket or "?" in url or "#" in url:
        raise SettingsError(ENV_PREFIX + "RUN_STORAGE", f"{url!r} is not a storage URL: write it as "
                                                        "s3://BUCKET or s3://BUCKET/PREFIX")


def is_loopback(host: str) -> bool:
    """Whether `host` is a loopback address or `localhost`: never the wildcard 0.0.0.0 or ::."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _absolute_path(path: Path | str) -> Path:
    """`path` with `~` expanded, made absolute and normalised; symlinks are kept as the user named them."""
    return Path(os.path.abspath(Path(path).expanduser()))


Parser = Callable[[str, str], Any]
"""(variable, its raw value) -> the field's value, or SettingsError naming the variable."""


def _parser(annotation: Any) -> Parser:
    """How a variable becomes a value of the field type `annotation`."""
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    args = get_args(annotation)
    if get_origin(annotation) in (Union, types.UnionType) and len(args) == 2 and type(None) in args:
        inner = _parser(args[0] if args[1] is type(None) else args[1])
        # Set but empty means "not given": how an env file or a compose file says "the default".
        return lambda variable, raw: inner(variable, raw) if raw.strip() else None
    if get_origin(annotation) is tuple and len(args) == 2 and args[1] is Ellipsis:
        item = _parser(args[0])
        return lambda variable, raw: tuple(item(variable, part) for part in raw.split(os.pathsep) if part)
    raise TypeError(f"Settings.from_env has no parser for fields of type {annotation!r}")


def _str(variable: str, raw: str) -> str:
    return raw


def _path(variable: str, raw: str) -> Path:
    if not raw.strip():  # Path("") is the current folder: surely not what was meant
        raise SettingsError(variable, "'' is not a path")
    return Path(raw)


def _int(variable: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(variable, f"{raw!r} is not an integer") from None


def _float(variable: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise SettingsError(variable, f"{raw!r} is not a finite number")
    return value


_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _bool(variable: str, raw: str) -> bool:
    try:
        return _BOOLS[raw.strip().lower()]
    except KeyError:
        raise SettingsError(variable, f"{raw!r} is not a boolean (true/false, yes/no, 1/0)") from None


def _render(value: Any) -> str:
    """A field's value as its variable would say it (the inverse of the field's parser)."""
    if value is None:
        return ""  # set but empty: "not given", None for an optional field
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # the shortest text that parses back to the same float
    if isinstance(value, tuple):
        return os.pathsep.join(_render(item) for item in value)
    return str(value)


_SCALARS: dict[Any, Parser] = {str: _str, Path: _path, int: _int, float: _float, bool: _bool}
