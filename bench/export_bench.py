"""ONNX export against PyTorch, side by side in one run: file size, agreement on the SST-2 dev set, CPU latency.

Trains (or reuses) a MiniLM run on the first N SST-2 training rows, exports it with `peftbench export --format
merged` and `--format onnx`, then on all 872 dev sentences:
  - agreement: the largest |logit difference| and the share of equal argmaxes, ONNX Runtime vs the merged PyTorch
    model (both fp32, the same padded batches);
  - latency: milliseconds per batch of B dev sentences (in dev order, padded to the batch's longest), for each B in
    --batches; PyTorch (eager, inference_mode) and ONNX Runtime (CPUExecutionProvider) alternate batch by batch
    with the same thread count, so load on the machine hits both; medians over --rounds passes.
The machine's load average is recorded before and after: ratios are comparable within one run, absolute
milliseconds only on an idle machine.

  python bench/export_bench.py --data-dir ../shared/data                 # lora, 800 rows, 1 epoch, lr 2e-3
  python bench/export_bench.py --data-dir ../shared/data --method bitfit --lr 5e-3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True, help="the folder holding glue/SST-2")
    ap.add_argument("--method", default="lora")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--rows", type=int, default=800)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default=None, help="where the run and exports go (default: a temporary folder)")
    ap.add_argument("--out", default="bench/results/export")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("WANDB_MODE", "disabled")

    import onnxruntime as ort
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from peftbench.config.compose import load_config
    from peftbench.artifacts.export import ONNX_FILE, export_run
    from peftbench.record import read_record
    from peftbench.data.tasks.glue import read_tsv
    from peftbench.engine.train import train

    work = Path(args.work or tempfile.mkdtemp(prefix="export-bench-"))
    run_dir = work / f"sst2-{args.method}"
    rec = read_record(run_dir / "result.json")
    if not rec or rec["status"] != "completed":
        rec = train(load_config(["model=minilm_l6", f"method={args.method}", "task=sst2", f"data_dir={args.data_dir}",
                                 f"train_size={args.rows}", "epochs=1", f"lr={args.lr}", f"out={run_dir}",
                                 "tracking.mode=disabled"]))
    dirs = {}
    for fmt in ("merged", "onnx"):
        dirs[fmt] = work / f"export-{fmt}"
        if not (dirs[fmt] / "README.md").is_file():
            export_run(run_dir, fmt, dirs[fmt])

    texts = read_tsv(Path(args.data_dir) / "glue/SST-2/dev.tsv", ["sentence"], "label", ["0", "1"])[0][0]
    torch.set_num_threads(args.threads)
    tok = AutoTokenizer.from_pretrained(dirs["merged"])
    model = AutoModelForSequenceClassification.from_pretrained(dirs["merged"]).eval()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = args.threads, 1
    session = ort.InferenceSession(str(dirs["onnx"] / ONNX_FILE), opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def batches(size: int):
        for i in range(0, len(texts), size):
            enc = tok(texts[i:i + size], padding=True, truncation=True, max_length=128, return_tensors="np")
            yield {k: enc[k].astype(np.int64) for k in names}

    # agreement over the whole dev set
    diffs, same = [], 0
    for feed in batches(32):
        with torch.inference_mode():
            want = model(**{k: torch.from_numpy(v) for k, v in feed.items()}).logits.numpy()
        got = session.run(["logits"], feed)[0]
        diffs.append(float(np.abs(got - want).max()))
        same += int((got.argmax(-1) == want.argmax(-1)).sum())

    load_before = os.getloadavg()
    latency = {}
    for size in args.batches:
        feeds = list(batches(size))[: max(8, 256 // size)]  # the first dev batches: 256 sentences at most
        times = {"pytorch": [], "onnxruntime": []}
        for _ in range(args.rounds):
            for feed in feeds:  # alternate per batch: noise hits both runtimes alike
                t = time.perf_counter()
                with torch.inference_mode():
                    model(**{k: torch.from_numpy(v) for k, v in feed.items()})
                times["pytorch"].append(time.perf_counter() - t)
                t = time.perf_counter()
                session.run(["logits"], feed)
                times["onnxruntime"].append(time.perf_counter() - t)
        ms = {k: round(1000 * statistics.median(v), 3) for k, v in times.items()}
        latency[str(size)] = {**{f"{k}_ms_per_batch": v for k, v in ms.items()}, "batches_timed": len(times["pytorch"]),
                              "onnx_speedup": round(ms["pytorch"] / ms["onnxruntime"], 2)}
    sizes = {"pytorch_safetensors_bytes": (dirs["merged"] / "model.safetensors").stat().st_size,
             "onnx_bytes": (dirs["onnx"] / ONNX_FILE).stat().st_size,
             "delta_bytes": (run_dir / "delta.safetensors").stat().st_size}
    result = {"model": "minilm_l6", "task": "sst2", "method": args.method, "train_rows": args.rows,
              "dev_metric": rec["metrics"], "dev_examples": len(texts),
              "agreement": {"max_abs_logit_diff": max(diffs), "argmax_equal": same, "of": len(texts)},
              "sizes": sizes, "onnx_vs_safetensors_size": round(sizes["onnx_bytes"] / sizes["pytorch_safetensors_bytes"], 4),
              "latency": latency, "threads": args.threads, "cpu_count": os.cpu_count(),
              "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
              "versions": {"torch": torch.__version__, "onnxruntime": ort.__version__}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"minilm_sst2_{args.method}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
