"""`peftbench data DIR`: the whole GLUE (nine tasks) and SQuAD v1.1 from the hub, written in the layout data_dir expects.

Each task is read through the task's own hub branch (`load_dataset(*task.hub)`, the call a run with no data_dir
makes) and written as the local readers read it, in GLUE's own layout (download_glue_data.py's):
  DIR/glue/<Task>/{train,dev}.tsv   UTF-8, tab-separated, a header with the task's text and label columns (labels as
                                    the local files write them: "0"/"1", RTE/QNLI/MNLI's strings, STS-B's scores);
                                    CoLA with NO header (source, label, mark "*" for unacceptable, sentence), MNLI's
                                    dev as dev_matched.tsv and dev_mismatched.tsv
  DIR/squad/{train,dev}-v1.1.json   the official v1.1 layout: data[].{title, paragraphs[].{context, qas[]}}
Files already there are kept (named), unless overwrite=true; every file is written to a temp file, then renamed.
Options: tasks=[cola,sst2,...,squad] overwrite=true, and task.* / other run keys (e.g. task.hub=...) for one task.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..config.compose import load_config
from ..errors import UserError
from ..record import write_atomic

SPLITS = ("train", "dev")
GLUE_TASKS = ["cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"]  # `peftbench data`'s default


def _clean(text: str) -> tuple[str, bool]:
    """A TSV field: tabs and line breaks would split the row (the reader does no quoting), so they become spaces."""
    fixed = text.replace("\t", " ").replace("\r", " ").replace("\n", " ")
    return fixed, fixed != text


def glue_files(cfg, root: Path) -> dict[Path, Callable]:
    from .tasks import glue

    task = cfg.task
    files = {}
    for split in SPLITS:
        for stem, hub_split, _ in glue.parts(task, split):
            def write(f, stem=stem, hub_split=hub_split):
                texts, labels = glue.read_part(cfg, stem, hub_split)  # the hub branch: cfg.data_dir is None
                # a file with no header (CoLA) holds every column of task.columns; the others stay empty, but
                # CoLA's mark column says what the label says: "*" for unacceptable
                header = list(task.columns) if task.get("columns") else [*task.text_fields, task.label_field]
                where = {c: j for j, c in enumerate(task.text_fields)}
                if not task.get("columns"):
                    f.write("\t".join(header) + "\n")
                names = None if glue.regression(task) else [str(x) for x in task.labels]  # plain strings: fast
                fixed = 0
                for i, label in enumerate(labels):
                    row = []
                    for c in header:
                        if c in where:
                            value, changed = _clean(texts[where[c]][i])
                            fixed += changed
                        elif c == task.label_field:
                            value = f"{label:g}" if names is None else names[label]
                        elif c == "original_label":
                            value = "*" if names is not None and label == 0 else ""
                        else:
                            value = "nyu-mll/glue" if c == "source" else ""
                        row.append(value)
                    f.write("\t".join(row) + "\n")
                return len(labels), fixed
            files[Path(root) / task.dir / f"{stem}.tsv"] = write
    return files


def squad_files(cfg, root: Path) -> dict[Path, Callable]:
    from .tasks.hub import load_split
    from .tasks.squad import FILES

    files = {}
    for split in SPLITS:
        def write(f, split=split):
            ds = load_split(cfg.task.hub, split)  # the call squad's hub branch makes
            articles: dict[str, dict[str, list]] = {}
            for r in ds:
                paragraphs = articles.setdefault(r["title"], {})
                paragraphs.setdefault(r["context"], []).append(
                    {"id": r["id"], "question": r["question"],
                     "answers": [{"text": t, "answer_start": int(s)}
                                 for t, s in zip(r["answers"]["text"], r["answers"]["answer_start"])]})
            data = [{"title": title, "paragraphs": [{"context": c, "qas": qas} for c, qas in paragraphs.items()]}
                    for title, paragraphs in articles.items()]
            json.dump({"version": "1.1", "data": data}, f, ensure_ascii=False)
            return len(ds), 0
        files[Path(root) / "squad" / FILES[split]] = write
    return files


def write_data(root: str, overrides: list[str] | None = None) -> int:
    """Write every asked task's files under `root`; print one line per file; 0 when all are there."""
    if Path(root).exists() and not Path(root).is_dir():
        raise UserError(f"data: {root} is a file, not a folder: give a folder (new or existing) to write glue/ and "
                        "squad/ into, e.g. peftbench data data/")
    tasks, overwrite, rest = [*GLUE_TASKS, "squad"], False, []
    for o in overrides or []:
        key, _, value = o.partition("=")
        if key in ("tasks", "overwrite"):
            try:
                parsed = OmegaConf.from_dotlist([o])[key]
            except OmegaConfBaseException as e:
                raise UserError(f"data: cannot parse '{o}': {str(e).splitlines()[0]}") from None
            if key == "overwrite":
                if not isinstance(parsed, bool):
                    raise UserError(f"overwrite={value!r}: write overwrite=true or overwrite=false")
                overwrite = parsed
            else:
                tasks = [str(t) for t in (parsed if OmegaConf.is_list(parsed) else [parsed])]
        else:
            rest.append(o)
    unknown = [t for t in tasks if t not in [*GLUE_TASKS, "squad"]]
    if unknown or not tasks:
        raise UserError(f"tasks={tasks}: unknown task {unknown}; pick from {', '.join([*GLUE_TASKS, 'squad'])}")
    if len(tasks) > 1 and any(o.split("=", 1)[0].lstrip("+~").startswith("task.") for o in rest):
        raise UserError("task.* settings apply to one task: add tasks=[NAME]")
    plan = {}
    for name in tasks:  # every config composed before anything is fetched or written
        cfg = load_config([f"task={name}", *rest, "data_dir=null", "task.data_dir=null"] if name == "squad"
                          else [f"task={name}", *rest, "data_dir=null"])
        plan.update((squad_files if cfg.task.kind == "squad" else glue_files)(cfg, Path(root)))
    for path, write in plan.items():
        if path.exists() and not overwrite:
            print(f"kept {path} (already there; overwrite=true replaces it)")
            continue
        counts = {}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # a file where a folder of the layout goes (DIR/glue a file, ...)
            raise UserError(f"data: cannot make the folder {path.parent} ({e.strerror}): give another DIR") from None
        write_atomic(path, lambda f, write=write: counts.update(n=write(f)))
        n, fixed = counts["n"]
        print(f"wrote {path} ({n:,} rows{f'; {fixed} fields had tabs or line breaks, now spaces' if fixed else ''})")
    print(f"data_dir={Path(root)} now holds {', '.join(tasks)}")
    return 0
