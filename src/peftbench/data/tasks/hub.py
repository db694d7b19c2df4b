"""The one call every hub branch makes: `datasets.load_dataset(repo[, config], split=...)`, its failures one line.

GLUE reads `nyu-mll/glue` (config cola | sst2 | mrpc | qqp | stsb | mnli | qnli | rte | wnli), SQuAD `rajpurkar/squad`; a task config's `hub` names them, so
a local copy in the hub's layout works the same (`task.hub=[/path/to/glue,rte]`), which is how the tests run it.
"""

from __future__ import annotations

from ...errors import UserError


def load_split(hub, split: str):
    """`split` ("train" | "dev", the dev split being the hub's "validation", or the hub's own split name, e.g. MNLI's
    "validation_matched") of the dataset `hub` names."""
    from datasets import load_dataset

    args = [hub] if isinstance(hub, str) else list(hub)
    try:
        return load_dataset(*args, split={"dev": "validation"}.get(split, split))
    except Exception as e:  # offline, a typo, no such config: datasets raises many kinds, all mean "not here"
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot load the hub dataset {'/'.join(map(str, args))} ({type(e).__name__}: {why}): set "
                        "data_dir=DIR to local files (`peftbench data DIR` writes them once, with network)") from None
