"""MLLAttention and its 2-D rotary tables: formula, layout, shapes, precision, export."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from yolo11_lightning.nn.blocks.mlla import MLLAttention
from yolo11_lightning.nn.blocks.rope import RotaryTableCache, rope_angles_2d, rope_rotate_2d
from yolo11_lightning.nn.registry import get_block


def reference_mlla(module: MLLAttention, x: torch.Tensor) -> torch.Tensor:
    """The MLLA formula with explicit loops over tokens (row-major), pairs and heads, in float64."""
    batch, channels, height, width = x.shape
    heads, head_dim = module.num_heads, module.head_dim
    tokens = height * width
    weight = module.qk.weight.double()
    bias = module.qk.bias.double() if module.qk.bias is not None else torch.zeros(2 * channels, dtype=torch.float64)
    lepe = module.lepe(x).double()
    out = torch.zeros(batch, channels, height, width, dtype=torch.float64)
    quarter = channels // 4
    for b in range(batch):
        # token t = (i, j): feature vector x[b, :, i, j]
        feats = [x[b, :, i, j].double() for i in range(height) for j in range(width)]
        positions = [(i, j) for i in range(height) for j in range(width)]
        q = [F.elu(weight[:channels] @ f + bias[:channels]) + 1 for f in feats]
        k = [F.elu(weight[channels:] @ f + bias[channels:]) + 1 for f in feats]

        def rotate(vec: torch.Tensor, pos: tuple[int, int]) -> torch.Tensor:
            rotated = vec.clone()
            for p in range(channels // 2):
                index = pos[0] if p < quarter else pos[1]
                angle = index * 10000.0 ** (-(p % quarter) / quarter)
                c, s = math.cos(angle), math.sin(angle)
                rotated[2 * p] = vec[2 * p] * c - vec[2 * p + 1] * s
                rotated[2 * p + 1] = vec[2 * p] * s + vec[2 * p + 1] * c
            return rotated

        q_rot = [rotate(v, pos) for v, pos in zip(q, positions)]
        k_rot = [rotate(v, pos) for v, pos in zip(k, positions)]
        for h in range(heads):
            sl = slice(h * head_dim, (h + 1) * head_dim)
            k_mean = sum(kk[sl] for kk in k) / tokens
            kv = sum(torch.outer(k_rot[t][sl], feats[t][sl]) for t in range(tokens)) / tokens  # (d_k, d_v)
            for t, (i, j) in enumerate(positions):
                z = 1.0 / (q[t][sl] @ k_mean + module.eps)
                out[b, sl, i, j] = (q_rot[t][sl] @ kv) * z
    return (out + lepe).float()


def test_parameter_count_is_2c2_plus_12c() -> None:
    for channels, expected in ((64, 8_960), (128, 34_304), (256, 134_144)):
        module = MLLAttention(channels)
        assert sum(p.numel() for p in module.parameters()) == expected == 2 * channels**2 + 12 * channels


def test_registered_with_same_channel_contract() -> None:
    spec = get_block("MLLAttention")
    assert spec.cls is MLLAttention and spec.channels == "same"


@pytest.mark.parametrize("shape", [(2, 8, 3, 5), (1, 16, 4, 2)])
@pytest.mark.parametrize("grad", [True, False])
def test_matches_explicit_formula_on_non_square_maps(shape: tuple[int, ...], grad: bool) -> None:
    # Token layout (row-major, permute not reshape), RoPE on both axes, normaliser before RoPE.
    module = MLLAttention(shape[1], num_heads=2)
    x = torch.randn(shape)
    with torch.set_grad_enabled(grad):
        out = module(x)
    expected = reference_mlla(module, x.detach())
    torch.testing.assert_close(out.detach(), expected.detach(), atol=2e-5, rtol=1e-4)


def test_without_bias_and_other_head_counts() -> None:
    x = torch.randn(1, 16, 3, 4)
    for heads in (1, 4, 8):
        module = MLLAttention(16, num_heads=heads, qkv_bias=False)
        torch.testing.assert_close(module(x).detach(), reference_mlla(module, x), atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("hw", [(8, 12), (12, 8), (7, 5)])
def test_non_square_forward_backward_finite(hw: tuple[int, int], check_shape_preserving_backward) -> None:
    x = torch.randn(2, 32, *hw, requires_grad=True)
    check_shape_preserving_backward(MLLAttention(32), x, nonzero_grads=True)


def test_grad_and_inference_paths_agree_and_input_is_untouched() -> None:
    module = MLLAttention(32).eval()
    x = torch.randn(2, 32, 6, 9)
    x_copy = x.clone()
    with torch.inference_mode():
        fast = module(x)
    slow = module(x)
    torch.testing.assert_close(fast, slow.detach(), atol=1e-6, rtol=1e-5)
    assert torch.equal(x, x_copy)


def test_channels_last_input() -> None:
    module = MLLAttention(32)
    x = torch.randn(2, 32, 6, 10)
    torch.testing.assert_close(module(x.to(memory_format=torch.channels_last)), module(x))


def test_rope_angle_formula_at_a_known_position() -> None:
    channels, i, j = 16, 3, 5
    angles = rope_angles_2d(6, 7, channels)
    assert angles.shape == (6, 7, channels // 2) and angles.dtype == torch.float32
    for p in range(channels // 2):
        k = p % 4
        expected = (i if p < 4 else j) * 10000.0 ** (-k / 4)
        assert angles[i, j, p].item() == pytest.approx(expected, rel=1e-6)
    # A known vector: (1, 0) pairs become (cos, sin) of their angle.
    x = torch.zeros(6, 7, channels)
    x[..., 0::2] = 1.0
    rotated = rope_rotate_2d(x)
    torch.testing.assert_close(rotated[i, j, 0::2], angles[i, j].cos())
    torch.testing.assert_close(rotated[i, j, 1::2], angles[i, j].sin())


def test_rope_relative_position_property_on_both_axes() -> None:
    # For constant vectors u, w: rope(u)(i1, j1) . rope(w)(i2, j2) depends only on (i1 - i2, j1 - j2).
    height, width, channels = 5, 6, 16
    u, w = torch.randn(channels), torch.randn(channels)
    ru = rope_rotate_2d(u.expand(height, width, channels))
    rw = rope_rotate_2d(w.expand(height, width, channels))
    scores = torch.einsum("abc,dec->abde", ru, rw)  # (i1, j1, i2, j2)
    by_offset: dict[tuple[int, int], list[float]] = {}
    for i1 in range(height):
        for j1 in range(width):
            for i2 in range(height):
                for j2 in range(width):
                    by_offset.setdefault((i1 - i2, j1 - j2), []).append(scores[i1, j1, i2, j2].item())
    for values in by_offset.values():
        assert max(values) - min(values) < 1e-4
    # ...and both axes matter (the seed encoded only one).
    assert abs(by_offset[(1, 0)][0] - by_offset[(0, 0)][0]) > 1e-3
    assert abs(by_offset[(0, 1)][0] - by_offset[(0, 0)][0]) > 1e-3


def test_rotary_tables_cached_per_size_and_bounded() -> None:
    cache = RotaryTableCache(16, 2, max_entries=2)
    first = cache.get(4, 6, torch.device("cpu"))
    assert cache.get(4, 6, torch.device("cpu")) is first
    assert first.dtype == torch.float32 and first.shape == (2, 2, 4, 24)
    cache.get(6, 4, torch.device("cpu"))
    cache.get(5, 5, torch.device("cpu"))
    assert len(cache) == 2
    assert cache.get(4, 6, torch.device("cpu")) is not first  # evicted, recomputed
    module = MLLAttention(16)
    module(torch.randn(1, 16, 3, 5))
    assert not any("rope" in key for key in module.state_dict())
    clone = copy.deepcopy(module)
    assert len(clone.rope_tables) == 0 and torch.equal(clone(torch.ones(1, 16, 3, 5)), module(torch.ones(1, 16, 3, 5)))


class _RecordMatmuls(TorchDispatchMode):
    """Records the dtypes of batched matmuls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, torch.dtype]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if func.overloadpacket in (torch.ops.aten.bmm, torch.ops.aten.baddbmm, torch.ops.aten.baddbmm_):
            self.calls.append((func.overloadpacket.__name__, args[1].dtype))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("grad", [True, False])
def test_bf16_autocast_finite_with_float32_attention(grad: bool) -> None:
    module = MLLAttention(32)
    x = torch.randn(2, 32, 6, 10) * 4
    with torch.set_grad_enabled(grad), torch.autocast("cpu", dtype=torch.bfloat16), _RecordMatmuls() as record:
        out = module(x)
        out_bf16_input = module(x.bfloat16())
    assert out.dtype == torch.float32 and out_bf16_input.dtype == torch.bfloat16
    assert torch.isfinite(out).all() and torch.isfinite(out_bf16_input).all()
    # The first matmul of each call is the q/k projection (autocast: bf16); the attention ones are float32.
    per_call = len(record.calls) // 2
    for call in (record.calls[:per_call], record.calls[per_call:]):
        assert call[0][1] == torch.bfloat16
        assert len(call) >= 4 and all(dtype == torch.float32 for _, dtype in call[1:])
    torch.testing.assert_close(out.float(), module(x).detach(), atol=0.15, rtol=0.05)
    if grad:
        out.float().sum().backward()
        assert all(torch.isfinite(p.grad).all() for p in module.parameters())


def test_tables_stay_float32_for_a_half_precision_module() -> None:
    module = MLLAttention(16).to(torch.bfloat16)
    out = module(torch.randn(1, 16, 4, 6, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    assert all(table.dtype == torch.float32 for table in module.rope_tables._tables.values())


def test_runs_on_the_meta_device() -> None:
    # Shape inference and FLOP counting run models on "meta", where autocast does not exist.
    module = MLLAttention(16).to("meta")
    out = module(torch.empty(2, 16, 4, 6, device="meta"))
    assert out.shape == (2, 16, 4, 6) and out.device.type == "meta"


def test_bad_configuration_and_input_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="divisible by 4"):
        MLLAttention(18)
    with pytest.raises(ValueError, match="num_heads"):
        MLLAttention(16, num_heads=3)
    with pytest.raises(ValueError, match="expects"):
        MLLAttention(16)(torch.randn(1, 8, 4, 4))


def test_onnx_export_matches_onnxruntime_on_non_square_input(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    module = MLLAttention(32).eval()
    x = torch.randn(1, 32, 6, 10)
    path = tmp_path / "mlla.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (x,),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch", 2: "height", 3: "width"}, "y": {0: "batch", 2: "height", 3: "width"}},
        )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in ((1, 32, 6, 10), (2, 32, 10, 6)):  # the second size was not seen at export
        sample = torch.randn(shape)
        (onnx_out,) = session.run(None, {"x": sample.numpy()})
        with torch.no_grad():
            expected = module(sample).numpy()
        assert abs(onnx_out - expected).max() < 1e-3
