"""The disk cache of `peftbench params`: asked the same question again, it prints the stored table without importing
torch, transformers or peft (those imports are most of the command's ~5 s; the meta-device build is ~1 s).

The key is everything the table is computed from: the overrides, every installed distribution and its version, and
the bytes of this package's own files (code, configs, shipped model configs). Any change to any of them is a miss,
so a stale table cannot be printed. A question that names a file or folder (a model folder, a hub id, a task file,
own data) is never cached: what is in those is not in the key.

PEFTBENCH_CACHE=DIR moves the cache (default: $XDG_CACHE_HOME/peftbench, else ~/.cache/peftbench);
PEFTBENCH_CACHE=off turns it off. Deleting the folder is always safe.
"""

from __future__ import annotations

import hashlib
import os
from importlib.metadata import distributions
from pathlib import Path
from typing import Callable

PACKAGE = Path(__file__).resolve().parents[1]  # the whole peftbench package
# keys whose value is a file, a folder or a hub id: their content is not in the key
EXTERNAL = {"name_or_path", "config_file", "tokenizer", "package", "hub", "hub_config", "train", "dev", "data_dir"}


def cache_dir() -> Path | None:
    where = os.environ.get("PEFTBENCH_CACHE")
    if where == "off":
        return None
    if where:
        return Path(where)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "peftbench"


def key(overrides: list[str]) -> str | None:
    """The cache key of a `params` question, or None when it must be answered afresh."""
    for o in overrides:
        name, _, value = o.lstrip("+~").partition("=")
        if name.rsplit(".", 1)[-1] in EXTERNAL or (value and Path(value).exists()):
            return None
    h = hashlib.sha256()
    h.update("\0".join(overrides).encode())
    h.update(repr(sorted((d.metadata["Name"] or "", d.version) for d in distributions())).encode())
    for f in sorted(PACKAGE.rglob("*")):
        if f.is_file() and f.suffix in (".py", ".yaml", ".json"):
            h.update(str(f.relative_to(PACKAGE)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def cached(overrides: list[str], compute: Callable[[list[str]], str]) -> str:
    """compute(overrides), or the table stored for the same key. A table is stored only once computed whole
    (an error is never cached), and written to a temp file then renamed, so two commands at once cannot tear it."""
    where, k = cache_dir(), key(overrides)
    if where is None or k is None:
        return compute(overrides)
    path = where / "params" / f"{k}.md"
    if path.is_file():
        return path.read_text(encoding="utf-8")
    table = compute(overrides)
    from ..record import write_atomic  # omegaconf: only on a miss, which imported torch anyway

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda f: f.write(table))
    except OSError:  # a read-only home: the answer is still right, just not remembered
        pass
    return table
