"""Shared fixtures: the offline data root, GLUE-format fixture files, and a quiet default for tracking."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PEFTBENCH_SHARED", REPO.parent / "shared")) / "data"

# Fixture rows in GLUE's real layouts: MRPC with a BOM and quotes, RTE with string labels.
SST2 = "sentence\tlabel\n" + "".join(
    f"{t} \t{l}\n" for t, l in [("a great , moving film", 1), ("dull and lifeless", 0), ("he said \"wow\" , loved it", 1),
                                ("boring mess", 0), ("warm and witty", 1), ("it 's awful", 0)] * 4)
MRPC = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n" + "".join(
    f"{l}\t{i}\t{i + 1}\tHe said \"yes\" to {i}.\tHe agreed to {i if l else i + 7}.\n" for i, l in
    zip(range(100, 124), [1, 0, 1, 1, 0, 1] * 4))
RTE = "index\tsentence1\tsentence2\tlabel\n" + "".join(
    f"{i}\tThe cat sat on mat {i}.\tA cat {'sat' if i % 2 else 'flew'}.\t{'entailment' if i % 2 else 'not_entailment'}\n"
    for i in range(24))


# Methods whose defaults do not fit the tiny models' 32-wide layers: C3A's block and RoAd's group must divide them.
TINY_METHOD_ARGS = {"c3a": ["method.peft_args.block_size=16"], "road": ["method.peft_args.group_size=16"]}


def fast_sample(values: list, every: int = 4, offset: int = 0) -> list:
    """`values` as pytest params of which the fast tier (`-m "not slow"`) keeps every `every`-th from `offset` and
    the full suite keeps all: a per-method matrix checks every method in CI and a spread of them in the edit loop."""
    return [pytest.param(v, marks=() if (i - offset) % every == 0 else pytest.mark.slow) for i, v in enumerate(values)]


def write_glue(root: Path) -> Path:
    for name, text in [("SST-2", SST2), ("MRPC", MRPC), ("RTE", RTE)]:
        d = root / "glue" / name
        d.mkdir(parents=True, exist_ok=True)
        for split in ("train", "dev"):
            (d / f"{split}.tsv").write_text(text, encoding="utf-8")
    return root


def cut_glue(shared: Path, root: Path, folder: str, n_dev: int) -> Path:
    """root/glue/<folder>: the real train.tsv (linked) and the first n_dev rows of its dev.tsv, in GLUE's layout: an
    integration test that needs the real rows to train but not the whole dev set to score."""
    d = root / "glue" / folder
    d.mkdir(parents=True)
    (d / "train.tsv").symlink_to(shared / "glue" / folder / "train.tsv")
    lines = (shared / "glue" / folder / "dev.tsv").read_text(encoding="utf-8-sig").splitlines(keepends=True)
    (d / "dev.tsv").write_text("".join(lines[: n_dev + 1]), encoding="utf-8")
    return root


@pytest.fixture
def glue_dir(tmp_path: Path) -> Path:
    return write_glue(tmp_path / "data")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data (integration tests). A clone without it skips them; CI sets PEFTBENCH_REQUIRE_DATA=1 to fail."""
    if not SHARED_DATA.is_dir():
        how = (f"{SHARED_DATA} missing: write it with `peftbench data {SHARED_DATA}` (network once), or set "
               "PEFTBENCH_SHARED to the folder holding data/")
        if os.environ.get("PEFTBENCH_REQUIRE_DATA") == "1":
            pytest.fail(how)
        pytest.skip(how)
    return SHARED_DATA


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray instance on loopback for the Ray tests ("127.0.0.1:PORT"): they share an xdist group, so one
    worker starts it once (10-20 s) and `ray stop --force` ends it after the session."""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray = [sys.executable, "-m", "ray.scripts.scripts"]
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # Ray binds the machine's address unless told
    subprocess.run([*ray, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                    "--disable-usage-stats"], check=True, capture_output=True, timeout=180, env=env)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([*ray, "stop", "--force"], capture_output=True, timeout=120, env=env)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("PEFTBENCH_CACHE", "off")  # `params` tables are computed, never read from ~/.cache


def pytest_configure(config):
    """Under pytest-xdist (the README's `-n 2`) each worker trains with one thread, and so do the processes its tests
    start: two workers with torch's default of one thread per core would oversubscribe the cores several times over."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        import torch

        torch.set_num_threads(1)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the xdist_group marks to schedule
def pytest_collection_modifyitems(config, items):
    """Integration tests are slow by nature (the real MiniLM, ../shared/data): the fast tier (`-m "not slow"`) leaves
    them out with the unit tests marked slow. Ray's tests end with `ray stop --force`, which stops every Ray on the
    machine: they share one xdist group, so they never run at once. The tests that share a module-scoped fixture (a
    run trained once, every method exported once) share one group too: split over two workers, each worker would
    build the fixture again. Tests marked `first` (the README's quickstart, minutes on one core) go to the front, so
    one worker trains them while the other runs the rest, and they do not end the suite alone."""
    items.sort(key=lambda item: item.get_closest_marker("first") is None)  # stable: the rest keep their order
    for item in items:
        if item.get_closest_marker("integration"):
            item.add_marker(pytest.mark.slow)
        if "ray" in item.name.split("[")[0].split("_"):
            item.add_marker(pytest.mark.xdist_group("ray"))
        elif any(d.scope == "module" for defs in item._fixtureinfo.name2fixturedefs.values() for d in defs):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
