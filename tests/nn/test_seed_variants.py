"""The three seed-article variants as bundled configs: parameter counts and where the blocks sit."""

from __future__ import annotations

import pytest
import torch
from model_cache import cached_model

from yolo11_lightning.nn.blocks.c2psa_mlla import C2PSAMLLA
from yolo11_lightning.nn.blocks.focal import FocalModulation
from yolo11_lightning.nn.blocks.mlla import MLLAttention

# The seed articles' own model summaries, nc=25.
SEED_PARAMETERS = {
    "yolo11n.yaml": 2_594_715,
    "yolo11n-c2psa-mlla.yaml": 2_577_691,
    "yolo11n-mlla.yaml": 2_772_123,
    "yolo11n-focalmodulation.yaml": 2_702_750,
}


@pytest.mark.parametrize("config", sorted(SEED_PARAMETERS))
def test_parameter_counts_match_the_seed_summaries(config: str) -> None:
    model = cached_model(config, 25)
    assert sum(p.numel() for p in model.parameters()) == SEED_PARAMETERS[config]


def test_block_positions() -> None:
    c2psa_mlla = cached_model("yolo11n-c2psa-mlla.yaml", 25)
    assert isinstance(c2psa_mlla.model[10], C2PSAMLLA)
    focal = cached_model("yolo11n-focalmodulation.yaml", 25)
    assert isinstance(focal.model[9], FocalModulation) and focal.model[9].in_channels == 256
    mlla = cached_model("yolo11n-mlla.yaml", 25)
    assert [type(mlla.model[i]) for i in (17, 21, 25)] == [MLLAttention] * 3
    assert [mlla.model[i].in_channels for i in (17, 21, 25)] == [64, 128, 256]
    assert mlla.yaml["head"][-1][0] == [17, 21, 25]  # Detect reads the attended maps


def test_mlla_variant_feeds_detect_from_the_attention_outputs() -> None:
    model = cached_model("yolo11n-mlla.yaml", 25)
    attention_outputs: list[torch.Tensor] = []
    detect_inputs: list[torch.Tensor] = []
    hooks = [
        model.model[i].register_forward_hook(lambda m, a, out: attention_outputs.append(out)) for i in (17, 21, 25)
    ]
    hooks.append(model.head.register_forward_pre_hook(lambda m, args: detect_inputs.extend(args[0])))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.rand(1, 3, 64, 96))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    assert len(detect_inputs) == 3
    assert all(a is b for a, b in zip(attention_outputs, detect_inputs))
    assert [t.shape[-2:] for t in detect_inputs] == [(8, 12), (4, 6), (2, 3)]
