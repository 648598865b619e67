"""Benchmark data that every machine has and no one here wrote: the Python standard library.

Two sets, both deterministic for a given Python version:

* ``docstring_chats``: instruction → docstring chats ("Write the docstring for
  `json.dumps(obj, *, skipkeys=False, ...)`" → the function's own docstring), whose lengths
  vary the way real SFT data does: from one line to a page.
* ``text_chunks``: the same docstrings as plain text, cut into pieces that each tokenize to
  at least ``length`` tokens, so every row is exactly ``max_seq_length`` tokens after
  truncation and packing has nothing to gain.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# A fixed list, not sys.stdlib_module_names: importing everything would pull in GUIs and
# modules with side effects, and the set would change with the platform.
_MODULE_NAMES = """
abc argparse ast asyncio base64 bisect calendar collections colorsys concurrent.futures
configparser contextlib copy csv dataclasses datetime decimal difflib dis email.message
enum filecmp fnmatch fractions ftplib functools getopt gettext glob gzip hashlib heapq hmac
html.parser http.client http.server imaplib inspect io ipaddress itertools json logging
lzma mailbox mimetypes operator optparse os pathlib pickle pickletools pkgutil platform
plistlib poplib pprint queue quopri random re reprlib sched secrets selectors shelve shlex
shutil smtplib socket socketserver sqlite3 ssl statistics string struct subprocess
sysconfig tarfile tempfile textwrap threading timeit tokenize tomllib trace traceback
turtle types typing unittest urllib.parse urllib.request uuid warnings wave weakref
xml.dom.minidom xml.etree.ElementTree zipfile zipimport
"""
MODULES = tuple(_MODULE_NAMES.split())

MAX_DOC_CHARS = 2000  # a page; longer docstrings are module essays, not SFT answers
MIN_DOC_CHARS = 40


def _public_callables(module: Any) -> Iterator[tuple[str, Any]]:
    for name in sorted(vars(module)):
        obj = vars(module)[name]
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(obj) or inspect.isclass(obj):
            yield name, obj
        if inspect.isclass(obj):
            for meth_name in sorted(vars(obj)):
                meth = vars(obj)[meth_name]
                if not meth_name.startswith("_") and inspect.isfunction(meth):
                    yield f"{name}.{meth_name}", meth


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _signature(obj: Any) -> str:
    """The signature as text, without the memory addresses some defaults print with (configparser's
    `<object object at 0x7f…>` sentinel): those differ per process, and the name, signature included,
    decides the held-out split (`_held_out`) and the prompt, so the data was not the same twice."""
    try:
        return _ADDRESS.sub("", str(inspect.signature(obj)))
    except (TypeError, ValueError):
        return "(...)"


def stdlib_docstrings() -> list[tuple[str, str]]:
    """(qualified name with signature, cleaned docstring), in a fixed order, duplicates dropped."""
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated modules and members warn on import
        for module_name in MODULES:
            try:
                module = importlib.import_module(module_name)
            except ImportError:  # turtle without tkinter, ssl without OpenSSL, ...
                continue
            for name, obj in _public_callables(module):
                doc = inspect.getdoc(obj) or ""
                if not MIN_DOC_CHARS <= len(doc) <= MAX_DOC_CHARS or doc in seen:
                    continue
                seen.add(doc)
                pairs.append((f"{module_name}.{name}{_signature(obj)}", doc))
    return pairs


def _held_out(key: str, eval_fraction: float) -> bool:
    """Split by a hash of the name: stable when the module list or the Python version changes."""
    digest = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)
    return digest / 0xFFFFFFFF < eval_fraction


def docstring_chats(limit: int | None = None, eval_fraction: float = 0.05) -> tuple[list[Any], list[Any]]:
    """(train, eval) chat records: instruction → docstring."""
    train: list[Any] = []
    held: list[Any] = []
    for name, doc in stdlib_docstrings():
        record = {
            "messages": [
                {"role": "user", "content": f"Write the docstring for `{name}`."},
                {"role": "assistant", "content": doc},
            ]
        }
        (held if _held_out(name, eval_fraction) else train).append(record)
    return (train[:limit] if limit else train), held


def text_chunks(
    count_tokens: Callable[[str], int], length: int, limit: int, eval_count: int
) -> tuple[list[Any], list[Any]]:
    """(train, eval) plain-text records, each at least ``length`` tokens (trainers cut to it)."""
    records: list[Any] = []
    buffer = ""
    for name, doc in stdlib_docstrings():
        buffer += f"{name}\n{doc}\n\n"
        # a cheap char estimate first: tokenizing the growing buffer each time is quadratic
        if len(buffer) >= 3 * length and count_tokens(buffer) >= length + 8:
            records.append({"text": buffer})
            buffer = ""
            if len(records) >= limit + eval_count:
                break
    return records[eval_count:], records[:eval_count]


def write_jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path
