"""Full fine-tuning: every parameter of the encoder and the head trains."""

from omegaconf import DictConfig
from torch import nn


def apply(model: nn.Module, cfg: DictConfig) -> nn.Module:
    for param in model.parameters():
        param.requires_grad = True
    return model
