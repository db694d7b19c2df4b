"""bench/gpu_check.sh, the CUDA smoke matrix, cannot run without a GPU: here it must parse and refuse a stage it does
not know before it touches anything. Its cases' CPU paths are tested where they live (docs/scale-out.md lists them)."""

from __future__ import annotations

import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.sh"


def test_the_gpu_check_parses():
    proc = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_an_unknown_stage_is_one_line_and_writes_nothing(tmp_path):
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "STAGES": "smoke nope", "OUT": str(tmp_path / "out")})
    assert (proc.returncode, proc.stdout) == (2, "unknown stage nope: pick from smoke steps trainer study squad\n")
    assert not (tmp_path / "out").exists()
