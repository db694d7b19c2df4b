"""What a command reads and where it writes, checked before any work, as `train` checks its run folder (rundir.py).

`check_run(dir, command)`: a run folder that export, predict, evaluate or report reads exists, holds a completed
result.json, is not held by a running run (run.lock), and has its delta (delta.safetensors + delta.json; not for
report, which reads records only).
`check_out(out, command, overwrite)`: the folder export or report writes is not inside a run folder (a run folder
holds one run's files), is not a file, is new or empty unless `overwrite` (a report may also replace its own earlier
report), and can be written.
`staged(out)`: the files are written in a temporary folder beside `out` and moved into place only when all are
written, so a failure or a kill leaves no half-written output.
Each refusal is one `UserError` line.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import UserError
from ..record import read_record
from .rundir import CHECKPOINT, LOCK, alive, read_lock

DELTA = ("delta.safetensors", "delta.json")  # = delta.DELTA_FILE, META_FILE (not imported: delta.py loads torch)
RUN_MARKS = ("result.json", LOCK)  # a folder holding either is a run folder


def check_run(run_dir: Path, command: str, delta: bool = True) -> None:
    """One line if `run_dir` is not a finished run that `command` may read (see the module doc); `delta=False`: the
    record is all it reads (report; committed results keep no delta)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{command}: run folder {run_dir} does not exist: give the out= folder of a finished training "
                        "run")
    lock = read_lock(run_dir)
    if lock is not None and alive(lock) is not False:  # alive here, or another host's (which cannot be checked)
        holder = f"pid {lock.get('pid', '?')} on host {lock.get('host', '?')}"
        raise UserError(f"{command}: {run_dir} is in use by a running run ({holder}): wait for it to end"
                        + ("" if alive(lock) else f"; if that run is dead, delete {run_dir / LOCK}"))
    rec = read_record(run_dir / "result.json")
    if rec is None:
        what = "a damaged result.json" if (run_dir / "result.json").exists() else "no result.json"
        raise UserError(f"{command}: {run_dir} has {what}, so it is not a finished run folder: give the out= folder "
                        "of a completed training run (copy its result.json along with its delta)")
    if rec.get("status") != "completed":
        error = f": {rec['error']}" if rec.get("error") else ""
        todo = ("resume it (the same command with resume=true)" if (run_dir / CHECKPOINT).is_file()
                else "train it again")
        raise UserError(f"{command}: {run_dir} holds an unfinished run (status {rec.get('status')}{error}): {todo} "
                        "first")
    missing = [f for f in DELTA if delta and not (run_dir / f).is_file()]
    if missing:
        raise UserError(f"{command}: {run_dir} has no {' or '.join(missing)} although its run completed: copy the "
                        "whole run folder again, or train the run again")


def _run_folder(path: Path) -> Path | None:
    """The run folder `path` is in (or is), if any."""
    for folder in [path, *path.parents]:
        if any((folder / mark).is_file() for mark in RUN_MARKS):
            return folder
    return None


def check_out(out: Path, command: str, overwrite: bool = False, replaces: str | None = None) -> None:
    """One line if `command` may not write the folder `out` (see the module doc). `replaces`: a file whose presence
    marks the folder as this command's own earlier output (report.md), which it may replace without `overwrite`."""
    out = Path(out)
    flag = "--out" if command in ("export", "report") else "out="
    where = _run_folder(out.resolve())
    if where is not None:
        raise UserError(f"{command} {flag} {out} is inside the run folder {where}, which holds one run's files only: "
                        "write it elsewhere")
    if out.exists() and not out.is_dir():
        raise UserError(f"{command} {flag} {out} is a file: give a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite and not (replaces and (out / replaces).is_file()):
        raise UserError(f"{command} {flag} {out} exists and is not empty: give a new folder, or add --overwrite to "
                        "replace it")
    parent = next((p for p in [out.parent, *out.parent.parents] if p.exists()), Path("."))
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK) or (out.is_dir() and not os.access(out, os.W_OK)):
        raise UserError(f"{command} {flag} {out} cannot be written ({parent} is not a writable folder): pick another "
                        "folder")


@contextmanager
def staged(out: Path, whole: bool = True) -> Iterator[Path]:
    """A temporary folder beside `out` to write into; when the block ends without error its files land in `out`:
    the whole folder replaced (`whole`), or file by file over what is there (a report beside the user's notes).
    On an error the temporary folder goes and `out` is as it was."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    mask = os.umask(0)
    os.umask(mask)
    tmp.chmod(0o777 & ~mask)  # a folder as mkdir makes it, not mkdtemp's owner-only one
    try:
        yield tmp
        if whole:
            old = out.with_name(f"{tmp.name}.old")
            if out.exists():
                out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            out.mkdir(exist_ok=True)
            for f in tmp.iterdir():  # each replace is atomic: a file is the old one or the new one, never half
                os.replace(f, out / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
