"""What a linear classifier can read from a frozen encoder, per readout of its last layer: the ceiling of training
only the head, and what input-only prompt tuning has to beat.

The encoder (frozen, eval mode, fp32) embeds every train and dev row of a GLUE task once, tokenized as training
tokenizes them. Three readouts of the last layer are compared:
  cls     the [CLS] row (what BERT's pooler reads)
  pooler  BERT's pooler output, tanh(W [CLS] + b) (what the seq-cls head of every peftbench run reads)
  mean    the mean over the row's tokens (what sentence-transformers models, MiniLM among them, were trained to give)
On a sentence-pair task two more, from each sentence embedded alone (its token mean), the way a bi-encoder such as
all-MiniLM-L6-v2 was trained to be used:
  pair    [u, v, |u - v|] (Sentence-BERT's classification features, Reimers & Gurevych 2019)
  cosine  cos(u, v), one feature
They say whether the task's signal is in the frozen model at all, in the form its training put it, when the
cross-encoded readouts above (the input every peftbench run gives the model) do not carry it.
On each, an L2-regularised logistic regression (features standardised on train, full batch, L-BFGS) is fit on train
and scored on dev with the task's metric, at several strengths; the table gives each strength, so the best one,
picked on dev like GLUE's dev-picked rates, is optimistic.

    python bench/probes/probe_frozen.py                               # MiniLM, MRPC, ../shared/data
    python bench/probes/probe_frozen.py --task rte --out /tmp/probe

Writes OUT/results.json (setup and every cell) and prints the table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from peftbench.config.compose import load_config
from peftbench.data.batches import Packed
from peftbench.models.load import load_model, load_tokenizer
from peftbench.data.tasks import TASKS
from peftbench.data.tasks.glue import read_split, score

READOUTS = ("cls", "pooler", "mean")
PAIR_READOUTS = ("pair", "cosine")
STRENGTHS = (1e-4, 1e-3, 1e-2, 1e-1)


@torch.no_grad()
def features(encoder: torch.nn.Module, packed, batch_size: int = 64) -> dict[str, torch.Tensor]:
    out: dict[str, list[torch.Tensor]] = {r: [] for r in READOUTS}
    for start in range(0, len(packed), batch_size):
        batch = packed.batch(list(range(start, min(start + batch_size, len(packed)))),
                             names=["input_ids", "attention_mask", "token_type_ids"])
        enc = encoder(**batch)
        mask = batch["attention_mask"].unsqueeze(-1).float()
        out["cls"].append(enc.last_hidden_state[:, 0])
        out["pooler"].append(enc.pooler_output)
        out["mean"].append((enc.last_hidden_state * mask).sum(1) / mask.sum(1))
    return {r: torch.cat(v) for r, v in out.items()}


def pair_features(encoder: torch.nn.Module, tokenizer, texts: list[list[str]], max_length: int) -> dict[str, torch.Tensor]:
    """Each of the two sentences embedded alone (token mean), then combined as a bi-encoder's user would."""
    u, v = (features(encoder, Packed.from_lists(dict(tokenizer(t, truncation=True, max_length=max_length)),
                                                tokenizer.pad_token_id))["mean"] for t in texts)
    cosine = torch.nn.functional.cosine_similarity(u, v, dim=-1).unsqueeze(-1)
    return {"pair": torch.cat([u, v, (u - v).abs()], dim=-1), "cosine": cosine}


def fit(x: torch.Tensor, y: torch.Tensor, k: int, strength: float) -> torch.nn.Linear:
    torch.manual_seed(0)
    head = torch.nn.Linear(x.shape[1], k)
    opt = torch.optim.LBFGS(head.parameters(), max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(x), y) + strength * head.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return head


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="mrpc", choices=["sst2", "mrpc", "rte"])
    ap.add_argument("--model", default="minilm_l6")
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--out", default="bench/results/probe_frozen")
    args = ap.parse_args()
    cfg = load_config([f"model={args.model}", f"task={args.task}", f"data_dir={args.data_dir}"])
    tokenizer = load_tokenizer(cfg.model)
    data = TASKS[cfg.task.kind].load(cfg, tokenizer)
    encoder = load_model(cfg.model, "seq_cls", data.num_labels).base_model.eval()
    train_x, dev_x = features(encoder, data.train), features(encoder, data.eval)
    readouts = READOUTS
    if len(cfg.task.text_fields) == 2:
        for x, split, packed in ((train_x, "train", data.train), (dev_x, "dev", data.eval)):
            texts, labels = read_split(cfg, split)
            assert list(labels) == list(packed["labels"]), f"{split}: the pair readouts' rows must be the task's rows"
            x.update(pair_features(encoder, tokenizer, texts, cfg.task.max_length))
        readouts += PAIR_READOUTS
    train_y = torch.tensor(data.train["labels"])
    metric = cfg.task.metric
    rows = []
    for readout in readouts:
        mu, sd = train_x[readout].mean(0), train_x[readout].std(0) + 1e-6  # the same scale for every strength
        xt, xd = (train_x[readout] - mu) / sd, (dev_x[readout] - mu) / sd
        for strength in STRENGTHS:
            head = fit(xt, train_y, data.num_labels, strength)
            with torch.no_grad():
                scores, _ = score(data, {"logits": list(head(xd).numpy())})
                train_acc = (head(xt).argmax(-1) == train_y).float().mean().item() * 100
            rows.append({"readout": readout, "l2": strength, **scores, "train_accuracy": round(train_acc, 2)})
    constant = [score(data, {"logits": [np.eye(data.num_labels)[c]] * data.eval_examples})[0]
                for c in range(data.num_labels)]  # every dev row given class c: the trivial baselines
    majority = {m: max(c[m] for c in constant) for m in ("accuracy", "f1")}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    setup = {"model": cfg.model.name, "task": cfg.task.name, "metric": metric, "train_rows": data.train_examples,
             "dev_rows": data.eval_examples, "majority": majority, "torch": torch.__version__}
    (out / "results.json").write_text(json.dumps({"setup": setup, "rows": rows}, indent=2) + "\n")
    print(f"{cfg.model.name} frozen, {cfg.task.name}: logistic regression on train ({data.train_examples} rows), "
          f"dev ({data.eval_examples} rows); majority class {metric} {majority[metric]:.2f}")
    shown = [metric] + ["accuracy"] * (metric != "accuracy")
    print("| readout | L2 | " + " | ".join(f"dev {m}" for m in shown) + " | train accuracy |")
    print("|---|---:|" + "---:|" * len(shown) + "---:|")
    for r in rows:
        print(f"| {r['readout']} | {r['l2']:g} | " + " | ".join(f"{r[m]:.2f}" for m in shown)
              + f" | {r['train_accuracy']:.2f} |")


if __name__ == "__main__":
    main()
