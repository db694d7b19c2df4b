"""The run identity: it hashes the device and precision a run resolves to (a CPU's fp32 and a GPU's fp16 are two
experiments), carries a version, and `python -m peftbench.record migrate` rewrites a version 1 record to today's;
result.json also says what machine ran it (CPU model and kernel ISA flags)."""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf

from peftbench import record
from peftbench.config.compose import load_config
from peftbench.engine import device
from peftbench.errors import UserError

CPU = {"device": "cpu", "precision": "fp32"}
LORA = ["model=tiny", "task=rte", "method=lora", "seed=3", "tracking.mode=disabled"]


def fake_cuda(monkeypatch, available: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    monkeypatch.setattr(device, "cuda_has_bf16", lambda: False)  # a GPU without native bf16: auto is fp16


@pytest.fixture
def no_gpu(monkeypatch):
    fake_cuda(monkeypatch, False)


def test_precision_auto_resolves_per_machine_and_the_identity_follows(monkeypatch, no_gpu):
    cfg = load_config(LORA)  # device=auto precision=auto
    assert device.runtime(cfg) == CPU
    on_cpu = record.identity(cfg, device.runtime(cfg))
    assert on_cpu == record.identity(load_config([*LORA, "precision=fp32", "device=cpu"]), device.runtime(cfg))
    fake_cuda(monkeypatch, True)
    assert device.runtime(cfg) == {"device": "cuda", "precision": "fp16"}
    assert record.identity(cfg, {"device": "cuda", "precision": "fp16"}) != on_cpu
    assert record.identity(cfg, {"device": "cuda", "precision": "fp32"}) != on_cpu  # the device alone differs too
    assert device.runtime(load_config([*LORA, "device=cpu"])) == CPU  # device=cpu on a GPU machine: fp32 on the CPU


def test_runs_trained_elsewhere_count_on_any_device_the_config_allows(no_gpu):
    cfg = load_config(LORA)
    assert device.runtimes(cfg) == [CPU]
    assert device.runtimes(cfg, here=False) == [CPU, {"device": "cuda", "precision": "fp16"},
                                                {"device": "cuda", "precision": "bf16"}]
    assert device.runtimes(load_config([*LORA, "device=cuda", "precision=bf16"]), here=False) == [
        {"device": "cuda", "precision": "bf16"}]
    assert len(record.identities(cfg, device.runtimes(cfg, here=False))) == 3


def test_the_version_is_hashed():
    cfg = load_config(LORA)
    data = record.identity_fields(OmegaConf.to_container(cfg, resolve=True), CPU)
    import hashlib

    unversioned = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
    assert record.identity(cfg, CPU) != unversioned
    assert data["device"] == "cpu" and data["precision"] == "fp32" and "out" not in data and "data_seed" not in data


def v1_record(cfg) -> dict:
    """A version 1 record of `cfg` by hand, as peftbench wrote it before the keys added since and the module roles:
    no holdout, eval_split, data_seed, model.tokenizer or model.roles in its config, LoRA's modules by BERT name."""
    config = OmegaConf.to_container(cfg, resolve=True)
    for key in ("holdout", "eval_split", "data_seed"):
        del config[key]
    del config["model"]["tokenizer"], config["model"]["roles"]
    del config["method"]["target_roles"]
    config["method"]["target_modules"] = ["query", "value"]
    return {"schema": 1, "status": "completed", "identity": "5ed1c3f48e9e0eef", "config": config, "device": "cpu",
            "precision": "no", "run": {"task": "rte", "method": "lora", "seed": 3}, "metrics": {"accuracy": 50.0}}


def test_migration_gives_a_version_1_record_todays_identity():
    cfg = load_config(LORA)
    new = record.migrate_record(v1_record(cfg))
    assert new["identity"] == record.identity(cfg, CPU) and new["identity_version"] == record.IDENTITY_VERSION == 2
    assert new["config"]["method"]["target_roles"] == ["query", "value"] and new["config"]["method"]["target_modules"] is None
    assert new["migrated"] == {"identity_version": 1, "identity": "5ed1c3f48e9e0eef",
                               "config_keys": ["holdout", "eval_split", "data_seed", "model.tokenizer", "model.roles",
                                               "method.target_roles", "method.target_modules"]}
    assert new["metrics"] == {"accuracy": 50.0}
    assert record.migrate_record(new) is None  # once is enough
    bf16 = record.migrate_record({**v1_record(cfg), "precision": "bf16"})
    assert bf16["identity"] == record.identity(cfg, {"device": "cpu", "precision": "bf16"}) != new["identity"]
    assert record.migrate_record({**v1_record(cfg), "device": None}) is None  # failed before training: no runtime


def test_a_study_over_old_records_says_to_migrate_and_migrate_fixes_it(tmp_path, glue_dir, capsys, no_gpu):
    from peftbench.cli import main
    from peftbench.studies.grid import load_study, plan

    out = tmp_path / "study"
    over = ["tasks=[rte]", "methods=[lora]", "seeds=[3]", f"out={out}", "model=tiny", f"data_dir={glue_dir}",
            "tracking.mode=disabled"]
    [(folder, run)] = plan(load_study("glue", over))
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps(v1_record(load_config(run))))
    assert main(["study", "glue", *over, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"its identity is version 1, this peftbench hashes version 2: run `python -m peftbench.record migrate {out}`" in err
    assert record.migrate([str(tmp_path)]) == 0
    assert "migrated 1 records to identity version 2; 0 already were" in capsys.readouterr().out
    assert main(["study", "glue", *over, "--dry-run"]) == 0
    assert "1 runs, 0 to run, 1 completed" in capsys.readouterr().out


def test_resume_of_an_old_record_says_to_migrate(tmp_path):
    from peftbench.engine.rundir import claim

    cfg = load_config([*LORA, f"out={tmp_path}", "resume=true"])
    (tmp_path / "result.json").write_text(json.dumps({**v1_record(cfg), "status": "running"}))
    (tmp_path / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(UserError, match="identity is version 1"):
        claim(tmp_path, cfg)


CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9454 48-Core Processor
flags\t\t: fpu sse2 avx avx2 avx512f avx512dq avx512_bf16 avx512_vnni sha_ni
bogomips\t: 5491.74

processor\t: 1
model name\t: AMD EPYC 9454 48-Core Processor
flags\t\t: fpu sse2 avx avx2 avx512f avx512dq avx512_bf16 avx512_vnni sha_ni
"""
INTEL = "model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz\nflags\t: avx2 avx512f amx_bf16 amx_tile amx_int8\n"
ARM = "processor\t: 0\nBogoMIPS\t: 243.75\nFeatures\t: fp asimd sve sve2 bf16 i8mm\nCPU implementer\t: 0x41\n"


def test_cpu_model_and_kernel_flags_from_cpuinfo():
    assert record.cpu_info(CPUINFO) == {"cpu": "AMD EPYC 9454 48-Core Processor",
                                        "cpu_flags": ["avx2", "avx512_bf16", "avx512_vnni", "avx512f"]}
    assert record.cpu_info(INTEL) == {"cpu": "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz",
                                      "cpu_flags": ["amx_bf16", "amx_int8", "amx_tile", "avx2", "avx512f"]}
    assert record.cpu_info(ARM) == {"cpu": None, "cpu_flags": ["bf16", "i8mm", "sve", "sve2"]}
    assert record.cpu_info("") == {"cpu": None, "cpu_flags": []}


def test_machine_falls_back_to_the_platform(monkeypatch):
    from pathlib import Path

    real = Path.read_text

    def no_proc(self, *a, **k):
        if str(self) == "/proc/cpuinfo":
            raise FileNotFoundError(self)
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "read_text", no_proc)
    monkeypatch.setattr(record.platform, "processor", lambda: "arm")
    assert record.machine(CPU) == {"cpu": "arm", "cpu_flags": None, "cpu_count": record.os.cpu_count(),
                                   "cpu_threads": torch.get_num_threads(),
                                   "cpu_kernels": torch.backends.cpu.get_cpu_capability(), "gpu": None}


def test_the_record_names_the_kernels_torch_picked():
    """The same CPU runs other kernels when told (ATEN_CPU_CAPABILITY), and they move a run's digits: the record says."""
    import subprocess
    import sys

    code = "from peftbench.record import machine; print(machine()['cpu_kernels'])"
    told = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**record.os.environ, "ATEN_CPU_CAPABILITY": "default"})
    assert told.stdout.strip() == "DEFAULT"
    assert record.machine()["cpu_kernels"] == torch.backends.cpu.get_cpu_capability()
