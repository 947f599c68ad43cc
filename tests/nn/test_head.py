"""DFL and Detect: expectation over bins, decoding to xywh pixels, anchors, reference parity."""

from __future__ import annotations

import pytest
import torch

from yolo11_lightning.nn.head import DFL, Detect, make_anchor_grid


def test_dfl_is_the_expected_bin() -> None:
    dfl = DFL(16)
    assert not any(p.requires_grad for p in dfl.parameters())
    logits = torch.randn(2, 64, 7)
    expected = (logits.view(2, 4, 16, 7).softmax(2) * torch.arange(16.0).view(1, 1, 16, 1)).sum(2)
    torch.testing.assert_close(dfl(logits), expected)


def test_anchor_grid_is_row_major_per_level() -> None:
    anchors, strides = make_anchor_grid([(2, 3), (1, 2)], [8.0, 16.0], torch.float32, torch.device("cpu"))
    assert anchors.T.tolist() == [
        [0.5, 0.5],
        [1.5, 0.5],
        [2.5, 0.5],
        [0.5, 1.5],
        [1.5, 1.5],
        [2.5, 1.5],
        [0.5, 0.5],
        [1.5, 0.5],
    ]
    assert strides.tolist() == [[8.0] * 6 + [16.0] * 2]


def test_decode_peaked_bins_to_xywh_pixels() -> None:
    head = Detect(nc=2, in_channels=[8, 8, 8]).eval()
    head.stride = torch.tensor([8.0, 16.0, 32.0])
    sizes = [(4, 4), (2, 2), (1, 1)]
    maps = []
    for height, width in sizes:
        box = torch.full((1, 4, 16, height, width), -1e4)
        for side, distance in enumerate((1, 2, 3, 4)):  # left, top, right, bottom in cells
            box[:, side, distance] = 1e4
        cls = torch.zeros(1, 2, height, width)
        maps.append(torch.cat([box.view(1, 64, height, width), cls], 1))
    decoded = head.decode(maps)
    assert decoded.shape == (1, 6, 16 + 4 + 1)
    # First anchor of level 0: centre (0.5, 0.5) cells, stride 8: x1 = -0.5, x2 = 3.5, y1 = -1.5, y2 = 4.5 cells.
    torch.testing.assert_close(decoded[0, :4, 0], torch.tensor([1.5, 1.5, 4.0, 6.0]) * 8)
    # Last anchor (level 2, stride 32, centre 0.5): same cell geometry, 32-pixel cells.
    torch.testing.assert_close(decoded[0, :4, -1], torch.tensor([1.5, 1.5, 4.0, 6.0]) * 32)
    torch.testing.assert_close(decoded[0, 4:], torch.full((2, 21), 0.5))


def test_channel_widths_follow_the_reference_rule() -> None:
    head = Detect(nc=3, in_channels=[64, 128, 256])
    assert head.cv2[0][0].conv.out_channels == max(16, 64 // 4, 64)  # box branch width
    assert head.cv3[0][0][1].conv.out_channels == max(64, min(3, 100))  # class branch width
    assert head.cv3[0][0][0].conv.groups == 64  # depthwise
    assert Detect(nc=200, in_channels=[64]).cv3[0][2].in_channels == 100


@pytest.mark.reference
def test_detect_matches_the_reference_module(as_in_reference_models) -> None:
    head_module = pytest.importorskip("ultralytics.nn.modules.head")
    reference = as_in_reference_models(head_module.Detect(5, (32, 64, 128)))
    reference.stride = torch.tensor([8.0, 16.0, 32.0])
    reference.bias_init()
    ours = Detect(5, in_channels=[32, 64, 128])
    ours.stride = torch.tensor([8.0, 16.0, 32.0])
    ours.bias_init()
    state = reference.state_dict()
    for key in ("cv2.0.2.bias", "cv3.1.2.bias"):
        assert torch.equal(ours.state_dict()[key], state[key]), key
    ours.load_state_dict(state, strict=True)
    features = [torch.randn(2, c, 16 // 2**i, 24 // 2**i) for i, c in enumerate((32, 64, 128))]
    reference.eval()
    ours.eval()
    with torch.no_grad():
        ref_decoded, ref_maps = reference([f.clone() for f in features])
        our_decoded, our_maps = ours([f.clone() for f in features])
    assert (our_decoded - ref_decoded).abs().max().item() < 1e-4
    assert all(torch.equal(a, b) for a, b in zip(our_maps, ref_maps, strict=True))


def test_traced_anchor_grid_follows_the_input_size() -> None:
    """A trace made at one size computes the anchors of another (no size baked in as a constant)."""
    from yolo11_lightning.nn.head import traced_anchor_grid

    def grid(*maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return traced_anchor_grid(list(maps), [8.0, 16.0])

    traced = torch.jit.trace(grid, (torch.zeros(1, 1, 2, 3), torch.zeros(1, 1, 1, 2)))
    for sizes in (((2, 3), (1, 2)), ((5, 4), (3, 2))):
        maps = [torch.zeros(1, 1, h, w) for h, w in sizes]
        expected = make_anchor_grid(list(sizes), [8.0, 16.0], torch.float32, torch.device("cpu"))
        for got, want in zip(traced(*maps), expected, strict=True):
            assert torch.equal(got, want)
