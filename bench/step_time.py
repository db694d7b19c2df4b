"""Step time of peftbench's training step on bert-base shapes, per method: random weights, fixed batch shapes.

The step is train.py's: autocast (fp16 with GradScaler, or bf16), backward, unscale, clip to 1.0, fused AdamW,
scheduler, zero_grad; the model is bert-base-uncased built from the shipped config (no download; step time does not
depend on the weights' values) with each method applied by peftbench. Shapes: GLUE 16 x 128 and SQuAD windows 16 x 384.
Each cell: `--warmup` untimed steps, then `--steps` timed ones between two device synchronisations (so the time is
the GPU's, with the host queueing ahead), reported as ms per step.

    python bench/step_time.py --device cuda                      # fp16, all five methods, both shapes
    python bench/step_time.py --device cuda --precision bf16 --compile
    python bench/step_time.py --device cpu --model tiny --steps 3  # a smoke run of the script itself

Writes OUT/step_time.json and OUT/step_time.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from transformers import get_linear_schedule_with_warmup

from peftbench.config.compose import load_config
from peftbench.models.methods import apply_method
from peftbench.models.load import load_model
from peftbench.engine.run import param_groups

METHODS = ["full", "bitfit", "bitfit_subset", "lora", "prompt"]
SHAPES = {"glue 16x128": ("seq_cls", 16, 128), "squad 16x384": ("qa", 16, 384)}


def batch(head: str, rows: int, length: int, vocab: int, device: torch.device) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    out = {"input_ids": torch.randint(vocab // 10, vocab, (rows, length), generator=g),
           "token_type_ids": torch.zeros(rows, length, dtype=torch.long),
           "attention_mask": torch.ones(rows, length, dtype=torch.long)}
    if head == "seq_cls":
        out["labels"] = torch.randint(0, 2, (rows,), generator=g)
    else:
        out["start_positions"] = torch.randint(0, length, (rows,), generator=g)
        out["end_positions"] = torch.randint(0, length, (rows,), generator=g)
    return {k: v.to(device) for k, v in out.items()}


def time_step(model_name: str, method: str, head: str, rows: int, length: int, device: torch.device,
              precision: str, compile_mode: str | None, warmup: int, steps: int) -> float:
    cfg = load_config([f"model={model_name}", f"method={method}"])
    torch.manual_seed(0)
    base = load_model(cfg.model, head, 2, random_init=True)
    vocab = base.config.vocab_size
    model = apply_method(base, cfg.method, cfg.model.name).to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(param_groups(model, 0.01), lr=1e-5, fused=device.type in ("cpu", "cuda"))
    scheduler = get_linear_schedule_with_warmup(optimizer, 1, 10**6)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
    data = batch(head, rows, length, vocab, device)
    if compile_mode:
        model = torch.compile(model, mode=compile_mode, dynamic=False)
    model.train()

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = model(**data).loss
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return 1000 * (time.perf_counter() - t0) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", choices=["fp32", "fp16", "bf16"], default=None, help="default: fp16 on CUDA, fp32 on CPU")
    p.add_argument("--model", default="bert_base", help="a model config (bert_base, minilm_l6, tiny)")
    p.add_argument("--methods", nargs="+", default=METHODS)
    p.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    p.add_argument("--compile", nargs="?", const="default", default=None, metavar="MODE",
                   help="torch.compile the model (mode: default, reduce-overhead, max-autotune)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--out", type=Path, default=Path("runs/bench/step_time"))
    args = p.parse_args()
    device = torch.device(args.device)
    precision = args.precision or ("fp16" if device.type == "cuda" else "fp32")
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    cells = {}
    for shape in args.shapes:
        head, rows, length = SHAPES[shape]
        for method in args.methods:
            ms = time_step(args.model, method, head, rows, length, device, precision, args.compile, args.warmup,
                           args.steps)
            cells[shape, method] = ms
            print(f"{shape} {method}: {ms:.2f} ms/step", flush=True)
    head = "| shape | " + " | ".join(args.methods) + " |"
    lines = [f"`{' '.join(['python bench/step_time.py', *__import__('sys').argv[1:]])}` ({name}, {precision}, "
             f"{args.model}, compile={args.compile or 'off'}; ms per step, and vs full FT)", "", head,
             "|---|" + "---:|" * len(args.methods)]
    for shape in args.shapes:
        full = cells.get((shape, "full"))
        lines.append(f"| {shape} | " + " | ".join(
            f"{cells[shape, m]:.2f}" + (f" ({cells[shape, m] / full:.2f})" if full and m != "full" else "")
            for m in args.methods) + " |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "step_time.json").write_text(json.dumps(
        {"device": name, "precision": precision, "model": args.model, "compile": args.compile,
         "ms_per_step": {f"{s}/{m}": round(v, 3) for (s, m), v in cells.items()}}, indent=1))
    (args.out / "step_time.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
