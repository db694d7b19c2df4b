"""What the forgetting measure (peftbench/forgetting.py) costs a run: the base side (built before training) and the
tuned side (after it), timed apart, on MiniLM-L6 as shipped (no MLM head: CKA only) and on the same MiniLM with an
MLM head (the package's weights saved with a seeded random head, so the masked-LM path runs at MiniLM's size).

    python bench/forgetting_cost.py                  # 3 repeats, 1 thread
    python bench/forgetting_cost.py --repeats 5 --threads 2 --device cuda

Prints wall seconds and CPU seconds (time.process_time, steadier on a shared machine), the median over repeats,
beside the time of one training-sized forward + backward of the same model on 16 sample sentences for scale.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from peftbench.engine import forgetting  # noqa: E402
from peftbench.config.compose import load_config  # noqa: E402
from peftbench.models.load import load_model, load_tokenizer, resolve_path  # noqa: E402


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    base = load_config(["model=minilm_l6", "task=sst2", "method=lora"])
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        with forgetting.quiet_load():
            from transformers import AutoModelForMaskedLM
            AutoModelForMaskedLM.from_pretrained(resolve_path(base.model)).save_pretrained(tmp)
        load_tokenizer(base.model).save_pretrained(tmp)
        headed = load_config(["model=minilm_l6", "task=sst2", "method=lora", f"model.name_or_path={tmp}",
                              "model.package=null"])
        print(f"| checkpoint | base side (s) wall / CPU | tuned side (s) wall / CPU | train step, 16 rows (s) | "
              f"threads {args.threads}, {device} |")
        print("|---|---:|---:|---:|---|")
        for name, cfg in (("minilm_l6 (no MLM head)", base), ("minilm_l6 + MLM head", headed)):
            tok = load_tokenizer(cfg.model)
            rows = {"build": [], "finish": [], "step": []}
            for _ in range(args.repeats):
                model = load_model(cfg.model, "seq_cls", 2)
                probe, w, c = timed(lambda: forgetting.Probe(cfg, tok, model, device))
                rows["build"].append((w, c))
                model.to(device)
                _, w, c = timed(lambda: probe.finish(model))
                rows["finish"].append((w, c))
                batch = {k: v.to(device) for k, v in tok(forgetting.load_sample()[:16], padding=True,
                                                         return_tensors="pt").items()}
                model.train()
                _, w, c = timed(lambda: model(**batch, labels=torch.zeros(16, dtype=torch.long, device=device))
                                .loss.backward())
                rows["step"].append((w, c))
            med = {k: (statistics.median(a for a, _ in v), statistics.median(b for _, b in v)) for k, v in rows.items()}
            print(f"| {name} | {med['build'][0]:.2f} / {med['build'][1]:.2f} | {med['finish'][0]:.2f} / "
                  f"{med['finish'][1]:.2f} | {med['step'][0]:.2f} / {med['step'][1]:.2f} | |")


if __name__ == "__main__":
    main()
