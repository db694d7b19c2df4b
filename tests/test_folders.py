"""Where export and report write: a new folder, an earlier report (its files replaced, the user's kept) or
--overwrite; the files are written aside and moved in only when all are there, so a failure leaves nothing half
written and the old output as it was."""

from __future__ import annotations

from pathlib import Path

import pytest

from peftbench.cli import main
from peftbench.engine.folders import staged
from peftbench.errors import UserError
from peftbench.reports import write_report

TINY = ["model=tiny", "max_steps=2", "tracking.mode=disabled", "eval_batch_size=32", "task=rte", "method=bitfit"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    from conftest import write_glue

    root = tmp_path_factory.mktemp("folders")
    write_glue(root / "data")
    assert main(["train", *TINY, f"data_dir={root / 'data'}", f"out={root / 'run'}"]) == 0
    return root / "run"


def listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_a_report_replaces_its_own_earlier_files_and_keeps_the_users(run, tmp_path):
    out = tmp_path / "report"
    assert main(["report", str(run), "--out", str(out)]) == 0
    (out / "notes.md").write_text("mine")
    (out / "report.md").write_text("stale")
    assert main(["report", str(run), "--out", str(out)]) == 0
    assert (out / "notes.md").read_text() == "mine" and (out / "report.md").read_text().startswith("# peftbench report")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]  # no temporary folder left beside it
    assert main(["report", str(run), "--out", str(out), "--overwrite"]) == 0  # the whole folder replaced
    assert not (out / "notes.md").exists() and (out / "explorer.html").is_file()


def test_a_failed_report_leaves_the_earlier_one_as_it_was(run, tmp_path, monkeypatch):
    out = tmp_path / "report"
    assert main(["report", str(run), "--out", str(out)]) == 0
    before = listing(out)
    from peftbench.reports import explorer

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(explorer, "write_explorer", broken)
    with pytest.raises(OSError, match="disk full"):
        write_report([run], out)
    assert listing(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_export_overwrite_replaces_the_folder_and_a_failure_leaves_none(run, tmp_path, monkeypatch):
    out = tmp_path / "e"
    assert main(["export", str(run), "--format", "merged", "--out", str(out)]) == 0
    (out / "extra.txt").write_text("old")
    assert main(["export", str(run), "--format", "merged", "--out", str(out)]) == 2  # not empty, no --overwrite
    assert main(["export", str(run), "--format", "merged", "--out", str(out), "--overwrite"]) == 0
    assert not (out / "extra.txt").exists() and (out / "README.md").is_file() and (out / "config.json").is_file()
    from peftbench.artifacts import export

    monkeypatch.setattr(export, "write_card", lambda *a: (_ for _ in ()).throw(RuntimeError("card failed")))
    with pytest.raises(RuntimeError, match="card failed"):
        export.export_run(run, "merged", tmp_path / "f")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e"]  # no f, no temporary folder


def test_staged_moves_a_folder_in_whole(tmp_path):
    out = tmp_path / "x"
    with staged(out) as tmp:
        (tmp / "a").write_text("1")
        assert not out.exists()  # nothing at the destination until the block ends
    assert listing(out) == {"a": b"1"} and out.stat().st_mode & 0o777 != 0o700


def test_a_report_into_a_run_folder_is_refused(run):
    with pytest.raises(UserError, match="is inside the run folder"):
        write_report([run], run / "report")
