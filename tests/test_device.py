"""The device side of a run, on the CPU: what precision=auto resolves to on each kind of device (torch.cuda faked),
torch.compile's recompile cap under either of its names, and a step the fp16 scaler skipped not reaching a method's
per-step hook (AdaLoRA's budget schedule)."""

from __future__ import annotations

import functools
import math
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from peftbench.cli import main
from peftbench.engine import device, run as run_module
from peftbench.engine.train import applied_update


def fake_cuda(monkeypatch, available: bool, native_bf16: bool, emulated_bf16: bool | None = None) -> None:
    emulated = native_bf16 if emulated_bf16 is None else emulated_bf16
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: available and (emulated if including_emulation else native_bf16))


@pytest.mark.parametrize("available, native, emulated, dev, expected", [
    (True, True, True, "auto", "bf16"),     # A100, H100: bf16, no loss scale
    (True, False, True, "auto", "fp16"),    # T4, V100: bf16 only emulated there, so fp16 with a GradScaler
    (True, False, False, "cuda", "fp16"),
    (True, True, True, "cpu", "no"),        # device=cpu on a GPU machine: fp32
    (False, False, False, "auto", "no"),    # no GPU: fp32
])
def test_auto_precision_is_bf16_where_the_gpu_has_it_fp16_on_other_gpus_fp32_on_cpu(monkeypatch, available, native,
                                                                                     emulated, dev, expected):
    fake_cuda(monkeypatch, available, native, emulated)
    assert device.mixed_precision(OmegaConf.create({"precision": "auto", "device": dev})) == expected


@pytest.mark.parametrize("asked, expected", [("fp32", "no"), ("fp16", "fp16"), ("bf16", "bf16")])
def test_a_named_precision_is_kept_on_any_device(monkeypatch, asked, expected):
    fake_cuda(monkeypatch, True, True)
    assert device.mixed_precision(OmegaConf.create({"precision": asked, "device": "auto"})) == expected


def test_auto_precision_on_a_torch_whose_bf16_check_has_no_emulation_argument(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for native, expected in [(True, "bf16"), (False, "fp16")]:
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: native)
        assert device.mixed_precision(OmegaConf.create({"precision": "auto", "device": "auto"})) == expected


@pytest.mark.parametrize("name", ["recompile_limit", "cache_size_limit"])
def test_compile_raises_the_recompile_cap_under_the_name_this_torch_has(name):
    config = SimpleNamespace(**{name: 8})
    device.raise_recompile_limit(config)
    assert vars(config) == {name: device.COMPILE_SHAPES}  # raised, and no attribute of the other name made up
    config = SimpleNamespace(**{name: 256})
    device.raise_recompile_limit(config)
    assert vars(config) == {name: 256}  # a higher cap set by the user stays


def test_a_step_the_scaler_skips_is_no_update():
    w = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([w], lr=0.5)
    scaler = torch.amp.GradScaler("cpu", init_scale=4.0)

    def update(grad: list[float], watch: bool = True) -> bool:
        optimizer.zero_grad()
        scaler.scale((w * torch.tensor(grad)).sum()).backward()  # w's gradient: `grad` x the scale
        scaler.unscale_(optimizer)
        return applied_update(scaler, optimizer, watch)

    assert update([1.0, float("inf"), 1.0]) is False
    assert w.tolist() == [1.0, 1.0, 1.0] and scaler.get_scale() == 2.0  # skipped, and the scale backed off
    assert update([1.0, 1.0, 1.0]) is True and w.tolist() == [0.5, 0.5, 0.5]
    # unwatched (a method without a hook): no host read of the scale, so the answer is always "applied"
    assert update([float("nan")] * 3, watch=False) is True and w.tolist() == [0.5, 0.5, 0.5]


def test_adalora_hook_sees_only_the_updates_fp16_applied(monkeypatch, tmp_path, glue_dir):
    """A loss scale of 2^30 overflows fp16's gradients on the first steps, which the scaler skips: the hook is
    called once per applied update, counting them, and its importance scores never read the inf gradients."""
    monkeypatch.setattr(torch.amp, "GradScaler", functools.partial(torch.amp.GradScaler, init_scale=2.0 ** 30))
    calls, finite, real = [], [], run_module.step_hook

    def recording(model, cfg, total):
        hook = real(model, cfg, total)
        allocator = model.base_model.rankallocator

        def after(update):
            calls.append(update)
            hook(update)
            finite.append(all(math.isfinite(v.abs().sum().item()) for v in allocator.ipt.values()))
        return after

    monkeypatch.setattr(run_module, "step_hook", recording)
    args = ["train", "model=tiny", "task=rte", "method=adalora", "method.delta_t=1", "max_steps=30", "epochs=10",
            "batch_size=4", "precision=fp16", "tracking.mode=disabled", f"data_dir={glue_dir}", f"out={tmp_path / 'a'}"]
    assert main(args) == 0
    skipped = 30 - len(calls)
    assert 5 <= skipped <= 25  # the scale halves per skipped step until fp16 holds the gradients (measured: 14)
    assert calls == list(range(1, len(calls) + 1)) and all(finite)
