"""What a run costs: parameters, peak memory (measured and the static split), training FLOPs.

Fields written to result.json:
  trainable_params, total_params (the base model with its head, before the method adds anything),
  trainable_percent (100 * trainable / total), added_params (what the method adds: LoRA matrices, prompt rows)
  memory_weights_bytes, memory_gradients_bytes, memory_optimizer_bytes  -- static split from the parameters
  peak_memory_bytes -- CUDA: max allocated during training; CPU: peak resident set (VmHWM) during training
  peak_memory_reserved_bytes (CUDA), rss_before_train_bytes (CPU: resident set when training starts)
  train_flops_per_step (counted with torch.utils.flop_counter on the first real batch, forward + backward),
  train_flops_per_token, train_flops (per-token count x padded tokens of every step)
  train_flops_expected -- the same step worked out from the model's shapes (expected_step_flops): forward,
                          backward, total, tokens per example in the encoder and in the input (prompt rows add some)
"""

from __future__ import annotations

import ctypes
import gc
import re
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

ADAMW_STATES = 2  # exp_avg and exp_avg_sq per trainable element
# the first layer's attention projections, which read the embeddings' output (BERT, RoBERTa, ... and DistilBERT names)
ATTENTION_OUT = re.compile(r"layers?\.\d+\.(attention\.output\.dense|attention\.out_lin|attn\.Wo|self_attn\.o_proj)"
                           r"(\.base_layer)?$")
BOTTOM = re.compile(r"layers?\.0\.(attention|attn)\.(self\.)?(query|key|value|q_lin|k_lin|v_lin|Wqkv)"
                    r"(\.base_layer|\.lora_A\.\w+)?$")  # the projection itself or what reads its input (LoRA's A)


def param_counts(model: torch.nn.Module, base_total: int) -> dict[str, Any]:
    params = list(model.parameters())
    trainable = sum(p.numel() for p in params if p.requires_grad)
    total_now = sum(p.numel() for p in params)
    weights = sum(p.numel() * p.element_size() for p in params)
    grads = sum(p.numel() * p.element_size() for p in params if p.requires_grad)
    return {"trainable_params": trainable, "total_params": base_total,
            "trainable_percent": round(100 * trainable / base_total, 4),
            "added_params": total_now - base_total,
            "memory_weights_bytes": weights, "memory_gradients_bytes": grads,
            "memory_optimizer_bytes": ADAMW_STATES * grads}


def _status(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+) kB", text).group(1)) * 1024


def release_freed_memory() -> None:
    """Free what earlier runs left behind before the resident set is read: objects kept alive only by reference
    cycles (models, optimizers), then the heap pages glibc holds after free() (malloc_trim). Without it a study's
    second run on CPU started at the first run's peak (measured: 1.8 GB resident before a MiniLM run that needs
    1.3 GB), and its "peak" was the previous run's."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): the cycles are still collected
        pass


class Meter:
    """Peak memory over the training loop and FLOPs of one real step."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.flops_per_token = None
        self.padded_tokens = 0
        self.fields: dict[str, Any] = {}
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(device)
        else:
            release_freed_memory()  # a study runs many runs in one process: the last run's memory is not this one's
            try:  # Linux: "5" resets the peak resident set, so the peak is the loop's, not the model load's
                Path("/proc/self/clear_refs").write_text("5")
                self.fields["rss_before_train_bytes"] = _status("VmRSS")
            except OSError:
                pass

    def count(self, step: int):
        """A FLOP counter around the first step's forward and backward; nothing on later steps."""
        self._counter = FlopCounterMode(display=False) if step == 0 else None
        return self._counter or nullcontext()

    def add_step(self, padded_tokens: int, why: tuple | None = None) -> None:
        """Count the step's tokens; on the counted step, `why` = (model, (batch, seq) of its batch, method config)
        adds the worked-out count (expected_step_flops) beside the measured one, so the report can say why."""
        self.padded_tokens += padded_tokens
        if self._counter is not None:
            flops = self._counter.get_total_flops()
            self.fields["train_flops_per_step"] = flops
            self.flops_per_token = flops / padded_tokens
            if why is not None:
                model, (batch, seq), method = why
                try:
                    self.fields["train_flops_expected"] = expected_step_flops(model, int(batch), int(seq), method)
                except (StopIteration, AttributeError, TypeError, ValueError):  # a model laid out otherwise: no worked
                    pass                                                         # count; the measured one stands

    def peak(self) -> dict[str, Any]:
        out = dict(self.fields)
        if self.cuda:
            out["peak_memory_bytes"] = torch.cuda.max_memory_allocated()
            out["peak_memory_reserved_bytes"] = torch.cuda.max_memory_reserved()
        elif "rss_before_train_bytes" in out:  # the kernel updates VmHWM lazily: it can lag a resident set read
            out["peak_memory_bytes"] = max(_status("VmHWM"), _status("VmRSS"), out["rss_before_train_bytes"])
        if self.flops_per_token:
            out["train_flops_per_token"] = round(self.flops_per_token, 1)
            out["train_flops"] = round(self.flops_per_token * self.padded_tokens)
        return out


def expected_step_flops(model: torch.nn.Module, batch: int, seq: int, method: Any) -> dict[str, Any]:
    """Why a method's FLOPs per step are what they are: the matmul count of one training step worked out from the
    model's shapes, to check the measured count (FlopCounterMode, `train_flops_per_step`) against and to explain it.

    Forward: 2 FLOPs per multiply-add of every linear layer (its input tokens x in x out), and attention's two
    products (4 x tokens x keys x hidden per layer). Backward: the gradient of each linear's input (as costly as its
    forward) wherever gradients flow, i.e. everywhere but under a frozen bottom, and of its weight only where the
    weight trains; attention's backward, twice its forward. Prompt tuning (`apply: prompt`) adds its virtual tokens
    to every input, so every layer processes seq + k tokens; prefix tuning (`apply: prefix`) adds k keys and values
    to every attention. Returns the parts, the total and the tokens per example the encoder saw."""
    cfg = next(m.config for m in model.modules() if hasattr(getattr(m, "config", None), "num_hidden_layers"))
    hidden, layers = cfg.hidden_size, cfg.num_hidden_layers
    k = int(method.get("num_virtual_tokens") or 0)
    extra, keys = (k, 0) if method.get("apply") == "prompt" else (0, k) if method.get("apply") == "prefix" else (0, 0)
    tokens = batch * (seq + extra)
    modules = list(model.named_modules())
    # Gradients flow only above the first module that trains (in forward order): under it autograd skips every
    # input gradient (an adapter after layer 0's FFN leaves all of layer 0's backward out). Prompt rows enter at the
    # embeddings, so then everything is above. Inside the first layer, the attention projections read the
    # embeddings' output: with nothing trainable below, their input gradients are skipped too.
    first = -1 if extra or keys else next((i for i, (_, m) in enumerate(modules)
                                   if any(p.requires_grad for p in m.parameters(recurse=False))), len(modules))
    frozen_bottom = extra == 0 and not any(p.requires_grad for n, p in model.named_parameters() if "embeddings." in n)
    forward = backward_inputs = backward_weights = 0
    attention_backward_layers = set()
    for i, (name, module) in enumerate(modules):
        n = tokens if ("layer." in name or "layers." in name) else batch  # encoder linears see every token; the head one
        grads_in = i > first and not (frozen_bottom and BOTTOM.search(name))
        if isinstance(module, torch.nn.Linear):
            macs = n * module.in_features * module.out_features
            forward += 2 * macs
            backward_inputs += 2 * macs if grads_in else 0
            backward_weights += 2 * macs if module.weight.requires_grad else 0
            if ATTENTION_OUT.search(name) and grads_in:  # gradients reach this layer's attention products
                attention_backward_layers.add(re.search(r"layers?\.(\d+)\.", name).group(1))
        base = getattr(module, "base_layer", None)
        if isinstance(base, torch.nn.Linear) and getattr(module, "lora_magnitude_vector", None):  # DoRA (peft):
            macs = n * base.in_features * base.out_features  # the base product runs a second time, scaled by m/||W||
            forward += 2 * macs
            backward_inputs += 2 * macs if not (frozen_bottom and BOTTOM.search(name)) else 0
        if isinstance(base, torch.nn.Linear) and getattr(module, "vera_lambda_d", None):  # VeRA: x A^T, then B^T
            r = next(iter(module.vera_lambda_d.values())).numel()  # with the shared frozen rank-r A and B buffers
            forward += 2 * n * r * (base.in_features + base.out_features)
            backward_inputs += 2 * n * r * base.out_features  # to lambda_d, which trains
            backward_inputs += 2 * n * r * base.in_features if not (frozen_bottom and BOTTOM.search(name)) else 0
    # peft tuners whose own products are worked out above (LoRA's A and B are nn.Linear; IA3 and LN tuning only
    # scale; DoRA and VeRA have their lines): for the others (OFT, BOFT, HRA, LoHa, LoKr, FourierFT, AdaLoRA, ...) the
    # count is the base's alone, a lower bound, and the record names them
    unmodelled = sorted({tuner(m) for _, m in modules if hasattr(m, "base_layer") and tuner(m) not in WORKED_OUT})
    attention = layers * 4 * tokens * (seq + extra + keys) * hidden
    named = any(ATTENTION_OUT.search(name) for name, _ in modules)  # else a family named otherwise: every layer
    share = len(attention_backward_layers) / layers if named else float(first < len(modules))
    backward_attention = round(2 * attention * share)
    total = forward + attention + backward_inputs + backward_attention + backward_weights
    return {"forward": forward + attention, "backward": backward_inputs + backward_attention + backward_weights,
            "total": total, "tokens_per_example": seq + extra, "input_tokens_per_example": seq,
            "not_worked_out": unmodelled}


WORKED_OUT = {"lora", "ia3", "vera", "ln_tuning", "shira", "c3a", "road", "beft"}


def tuner(module: torch.nn.Module) -> str:
    """The peft tuner a wrapped layer belongs to, from its class's module (peft.tuners.<tuner>.layer)."""
    parts = type(module).__module__.split(".")
    return parts[2] if parts[:2] == ["peft", "tuners"] and len(parts) > 2 else type(module).__name__
