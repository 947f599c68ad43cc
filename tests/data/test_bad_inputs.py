"""The bad-input corpus: every hostile image, label and listing ends in its documented count or error.

Each case builds a split in a temp folder: two good images (one box each) plus the case's files,
then lists and scans it as the data module does. The expected figures are exact: ``images``,
``boxes``, ``backgrounds``, ``corrupt``, ``missing_labels``, ``bad_labels`` and every ``fixes``
entry, and the two good images with their boxes must always survive (no good image or row lost).
Nothing may raise except where the case expects a named error. The corpus is generated (Pillow
writes the foreign formats), nothing binary is committed.
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from yolo11_lightning.data.config import find_image_files
from yolo11_lightning.data.scan import scan_split
from yolo11_lightning.inference.preprocess import read_image

ROW = "0 0.5 0.5 0.25 0.25"
NOISE = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8), (9, 9), 3)


def pil_bytes(fmt: str, mode: str = "RGB", **kwargs: object) -> bytes:
    """``NOISE`` (or a float/int field for 32-bit modes) encoded by Pillow as ``fmt``."""
    if mode == "F":
        image = Image.fromarray(np.random.default_rng(1).random((40, 50)).astype(np.float32), mode="F")
    elif mode == "I":
        image = Image.fromarray(np.random.default_rng(1).integers(0, 10**6, (40, 50)).astype(np.int32), mode="I")
    else:
        image = Image.fromarray(NOISE[..., ::-1].copy()).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def jpeg(**kwargs: object) -> bytes:
    return pil_bytes("JPEG", **kwargs)


class Split:
    """A split under construction: ``root/images/train`` and ``root/labels/train``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.images = root / "images" / "train"
        self.labels = root / "labels" / "train"
        self.images.mkdir(parents=True)
        self.labels.mkdir(parents=True)
        self.sources: list[Path] = [self.images]

    def image(self, name: str, data: bytes | np.ndarray, label: str | bytes | None = ROW) -> Path:
        path = self.images / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            assert cv2.imwrite(str(path), data)
        if label is not None:
            self.label(Path(name).with_suffix(".txt"), label)
        return path

    def label(self, name: str | Path, text: str | bytes) -> Path:
        path = self.labels / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return path


@dataclass
class Case:
    """One hostile input and its exact outcome (figures include the two good images)."""

    build: Callable[[Split], None]
    images: int = 2
    boxes: int = 2
    backgrounds: int = 0
    corrupt: int = 0
    fixes: dict[str, int] = field(default_factory=dict)
    missing_labels: int = 0
    bad_labels: int = 0
    log: str = ""  # a regex the warnings must match (the reason, the file, the folder)
    error: str = ""  # a regex of the expected ValueError instead of counts
    strict_labels: bool = False


def _cut(data: bytes, fraction: float, end_marker: bool) -> bytes:
    return data[: int(len(data) * fraction)] + (b"\xff\xd9" if end_marker else b"")


def _symlinked_image(split: Split) -> None:
    target_dir = split.root / "elsewhere"
    target_dir.mkdir()
    (target_dir / "real.png").write_bytes(cv2.imencode(".png", NOISE)[1].tobytes())
    (split.images / "linked.png").symlink_to(target_dir / "real.png")
    split.label("linked.txt", ROW + "\n1 0.2 0.2 0.1 0.1")  # beside the link, not beside the target


def _symlinked_folder(split: Split) -> None:
    outside = split.root / "outside"
    outside.mkdir()
    for name in ("a.png", "b.png"):
        (outside / name).write_bytes(cv2.imencode(".png", NOISE)[1].tobytes())
    (split.images / "sub").symlink_to(outside, target_is_directory=True)
    split.label("sub/a.txt", ROW)
    split.label("sub/b.txt", ROW)


def _folder_loop(split: Split) -> None:
    split.image("sub/c.png", NOISE)
    (split.images / "sub" / "loop").symlink_to(split.images, target_is_directory=True)


def _two_links(split: Split) -> None:
    real = split.root / "real.png"
    real.write_bytes(cv2.imencode(".png", NOISE)[1].tobytes())
    for name, row in (("one.png", ROW), ("two.png", ROW + "\n1 0.2 0.2 0.1 0.1")):
        (split.images / name).symlink_to(real)
        split.label(Path(name).with_suffix(".txt"), row)


def _txt_list_with_duplicates(split: Split) -> None:
    split.image("listed.png", NOISE)
    listing = split.root / "train.txt"
    listing.write_text(
        "images/train/good0.png\nimages/train/good1.png\nimages/train/listed.png\n\nimages/train/listed.png\n"
    )
    split.sources = [listing]


def _label_is_folder(split: Split) -> None:
    split.image("x.png", NOISE, label=None)
    (split.labels / "x.txt").mkdir()


def _label_broken_link(split: Split) -> None:
    split.image("x.png", NOISE, label=None)
    (split.labels / "x.txt").symlink_to(split.root / "nowhere.txt")


def _no_label_folder(split: Split) -> None:
    for i in range(3):
        split.image(f"u{i}.png", NOISE, label=None)
    for path in split.labels.iterdir():
        path.unlink()
    split.labels.rmdir()


def _misnamed_label_folder(split: Split) -> None:
    for i in range(3):
        split.image(f"u{i}.png", NOISE, label=None)
    split.labels.rename(split.root / "label")
    (split.root / "label").mkdir(exist_ok=True)


def _some_unlabelled(split: Split) -> None:
    split.image("u0.png", NOISE, label=None)
    split.image("u1.png", NOISE, label=None)


MESSY = "\n".join(
    [
        "1 0.5 0.5 0.2 0.2",  # good
        "1 0.5 0.5 0.2 0.2",  # duplicate
        "2 0.9 0.5 0.205 0.2",  # clipped
        "2 1.5 0.5 0.1 0.1",  # out of bounds
        "0 nan 0.5 0.1 0.1",  # not finite: out of bounds
        "3 0.5 0.5 0.0 0.1",  # zero size
        "0 0.1 0.1 0.3 0.1 0.3 0.4 0.1 0.4",  # polygon
        "1 0.5 0.5",  # too few coordinates
        "1 0.1 0.1 0.3 0.1 0.3",  # odd polygon
        "cat 0.5 0.5 0.1 0.1",  # not numbers
    ]
)

CASES: dict[str, Case] = {
    # ----------------------------------------------------------------------- images the decoder refuses
    "float32-tiff": Case(
        lambda s: s.image("f.tif", pil_bytes("TIFF", "F")), corrupt=1, log=r"f\.tif: TIFF with 32-bit"
    ),
    "int32-tiff": Case(
        lambda s: s.image("i.tiff", pil_bytes("TIFF", "I")), corrupt=1, log=r"i\.tiff: TIFF with 32-bit"
    ),
    "tga-as-png": Case(lambda s: s.image("t.png", pil_bytes("TGA")), corrupt=1, log=r"t\.png: TGA data"),
    "pcx-as-jpg": Case(lambda s: s.image("p.jpg", pil_bytes("PCX")), corrupt=1, log=r"p\.jpg: PCX data"),
    "ico-as-png": Case(lambda s: s.image("i.png", pil_bytes("ICO")), corrupt=1, log=r"i\.png: ICO data"),
    "sgi-as-bmp": Case(lambda s: s.image("s.bmp", pil_bytes("SGI")), corrupt=1, log=r"s\.bmp: SGI data"),
    "dds-as-png": Case(lambda s: s.image("d.png", pil_bytes("DDS")), corrupt=1, log=r"d\.png: DDS data"),
    "qoi-as-webp": Case(lambda s: s.image("q.webp", pil_bytes("QOI")), corrupt=1, log=r"q\.webp: QOI data"),
    "jpeg-half-with-end-marker": Case(
        lambda s: s.image("h.jpg", _cut(jpeg(), 0.5, True)), corrupt=1, log=r"truncated JPEG .*h\.jpg"
    ),
    "jpeg-90pc-with-end-marker": Case(lambda s: s.image("h.jpg", _cut(jpeg(), 0.9, True)), corrupt=1),
    "progressive-jpeg-half-with-end-marker": Case(
        lambda s: s.image("h.jpg", _cut(jpeg(progressive=True), 0.5, True)), corrupt=1
    ),
    "jpeg-half-no-end-marker": Case(lambda s: s.image("h.jpg", _cut(jpeg(), 0.5, False)), corrupt=1),
    "jpeg-header-only": Case(lambda s: s.image("h.jpg", jpeg()[:300]), corrupt=1),
    "garbage-bytes": Case(lambda s: s.image("g.png", b"this is not an image"), corrupt=1, log="not a decodable image"),
    "empty-file": Case(lambda s: s.image("e.jpg", b""), corrupt=1, log=r"e\.jpg: empty file"),
    "one-pixel": Case(lambda s: s.image("one.png", np.zeros((1, 1, 3), np.uint8)), corrupt=1, log="too small"),
    "broken-image-link": Case(
        lambda s: (s.images / "gone.png").symlink_to(s.root / "gone.png"), corrupt=1, log="No such file"
    ),
    # ----------------------------------------------------------------------- images that are fine or repaired
    "jpeg-trailing-junk": Case(lambda s: s.image("j.jpg", jpeg() + b"trailer bytes"), images=3, boxes=3),
    "jpeg-progressive": Case(lambda s: s.image("j.jpg", jpeg(progressive=True)), images=3, boxes=3),
    "upper-case-suffix": Case(lambda s: s.image("J.JPG", jpeg()), images=3, boxes=3),
    "exif-rotated": Case(lambda s: s.image("r.jpg", jpeg(exif=_exif(6))), images=3, boxes=3, fixes={"exif": 1}),
    "grey-palette-alpha-16bit-cmyk": Case(
        lambda s: [
            s.image("grey.png", pil_bytes("PNG", "L")),
            s.image("pal.png", pil_bytes("PNG", "P")),
            s.image("bits.png", pil_bytes("PNG", "1")),
            s.image("la.png", pil_bytes("PNG", "LA")),
            s.image("rgba.png", pil_bytes("PNG", "RGBA")),
            s.image("deep.png", (NOISE.astype(np.uint16) * 257)),
            s.image("deep.tif", pil_bytes("TIFF", "I;16")),
            s.image("cmyk.jpg", jpeg(mode="CMYK")),
        ],
        images=10,
        boxes=10,
        fixes={"converted": 8},
    ),
    "folder-named-like-an-image": Case(lambda s: (s.images / "dir.jpg").mkdir()),
    # ----------------------------------------------------------------------- where the labels are
    "symlinked-image-label-beside-link": Case(_symlinked_image, images=3, boxes=4),
    "symlinked-subfolder": Case(_symlinked_folder, images=4, boxes=4),
    "symlink-loop": Case(_folder_loop, images=3, boxes=3, log="links back to a folder above it"),
    "two-links-to-one-file": Case(_two_links, images=4, boxes=5),
    "txt-list-duplicate-lines": Case(
        _txt_list_with_duplicates, images=3, boxes=3, fixes={"list_duplicates": 1}, log="listed more than once"
    ),
    "label-path-is-a-folder": Case(_label_is_folder, bad_labels=1, log=r"labels/train/x\.txt is a folder"),
    "label-broken-link": Case(_label_broken_link, bad_labels=1, log=r"x\.txt is a broken symbolic link"),
    "no-label-folder": Case(
        _no_label_folder,
        images=5,
        boxes=0,
        backgrounds=5,
        missing_labels=5,
        log=r"5 of 5 images have no label file; labels were looked for in .*labels/train "
        r"\(that folder does not exist\)",
    ),
    "no-label-folder-strict": Case(
        _no_label_folder, strict_labels=True, error=r"5 of 5 images have no label file.*labels/train"
    ),
    "misnamed-label-folder": Case(
        _misnamed_label_folder,
        images=5,
        boxes=0,
        backgrounds=5,
        missing_labels=5,
        log=r"looked for in .*/labels/train \(that folder does not exist\)",
    ),
    "two-of-four-unlabelled-no-warning": Case(_some_unlabelled, images=4, boxes=2, backgrounds=2, missing_labels=2),
    # ----------------------------------------------------------------------- label contents
    "latin1-comment": Case(
        lambda s: s.image("l.png", NOISE, label="# caf\xe9 label\n0 0.5 0.5 0.1 0.1\n".encode("latin-1")),
        images=3,
        boxes=3,
        fixes={"malformed": 1},
        log=r"l\.txt:1: not UTF-8 \(byte 0xe9\)",
    ),
    "0xff-byte-in-a-row": Case(
        lambda s: s.image("f.png", NOISE, label=b"0 0.5 0.5 0.1 0.1\n1 0.2 0.2 0.1 0.1\xff\n1 0.7 0.7 0.1 0.1\n"),
        images=3,
        boxes=4,
        fixes={"malformed": 1},
        log=r"f\.txt:2: not UTF-8 \(byte 0xff\)",
    ),
    "utf16-with-bom": Case(
        lambda s: s.image("u.png", NOISE, label="0 0.5 0.5 0.1 0.1\r\n1 0.2 0.2 0.1 0.1\r\n".encode("utf-16")),
        images=3,
        boxes=4,
    ),
    "utf8-bom-crlf": Case(lambda s: s.image("b.png", NOISE, label="\ufeff0 0.5 0.5 0.1 0.1\r\n"), images=3, boxes=3),
    "nul-bytes": Case(
        lambda s: s.image("n.png", NOISE, label=b"0 0.5 0.5 0.1 0.1\n\x00\x00\x00\n"),
        images=3,
        boxes=3,
        fixes={"malformed": 1},
        log=r"n\.txt:2: not a row of numbers",
    ),
    "messy-rows": Case(
        lambda s: s.image("m.png", NOISE, label=MESSY),
        images=3,
        boxes=5,
        fixes={"duplicates": 1, "clipped": 1, "out_of_bounds": 2, "zero_size": 1, "polygons": 1, "malformed": 3},
        log=r"m\.txt:8: 2 coordinates",
    ),
    "empty-label": Case(lambda s: s.image("e.png", NOISE, label=""), images=3, backgrounds=1),
    "blank-lines-only": Case(lambda s: s.image("e.png", NOISE, label="\n  \n\t\n"), images=3, backgrounds=1),
    "class-id-too-large": Case(
        lambda s: s.image("c.png", NOISE, label="0 0.5 0.5 0.1 0.1\n7 0.5 0.5 0.1 0.1"),
        error=r"c\.txt:2: class id 7 is not in 0\.\.3",
    ),
    "class-id-fractional": Case(
        lambda s: s.image("c.png", NOISE, label="1.5 0.5 0.5 0.1 0.1"), error=r"c\.txt:1: class id 1\.5"
    ),
}


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def _build(tmp_path: Path, case: Case) -> Split:
    split = Split(tmp_path / "set")
    for i in range(2):
        split.image(f"good{i}.png", NOISE)
    case.build(split)
    return split


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_bad_input_ends_in_its_documented_count(tmp_path: Path, case: Case, caplog: pytest.LogCaptureFixture) -> None:
    split = _build(tmp_path, case)
    listing = find_image_files(split.sources)
    with caplog.at_level(logging.INFO):
        if case.error:
            with pytest.raises(ValueError, match=case.error):
                scan_split(listing.files, 4, "train", "corpus", listed_duplicates=listing.duplicates,
                           strict_labels=case.strict_labels)  # fmt: skip
            return
        records, summary = scan_split(
            listing.files, 4, "train", "corpus", listed_duplicates=listing.duplicates, strict_labels=case.strict_labels
        )
    counts = (
        summary.images,
        summary.boxes,
        summary.backgrounds,
        summary.corrupt,
        summary.missing_labels,
        summary.bad_labels,
    )
    expected = (case.images, case.boxes, case.backgrounds, case.corrupt, case.missing_labels, case.bad_labels)
    assert counts == expected, caplog.text
    assert {k: v for k, v in summary.fixes.items() if v} == case.fixes
    if case.log:
        assert any(re.search(case.log, r.getMessage()) for r in caplog.records), caplog.text
    if case.missing_labels * 2 <= case.images:
        assert "no label file" not in caplog.text
    # the good images and their rows always survive, with their labels found beside the listed path
    good = {r.path.name: r for r in records if r.path.name.startswith("good")}
    assert sorted(good) == ["good0.png", "good1.png"]
    for record in good.values():
        assert len(record.classes) == (0 if case.missing_labels == case.images else 1)
    # whatever passed the scan decodes with the training decoder
    for record in records:
        assert read_image(record.path).shape[:2] == (record.height, record.width)


def test_symlinks_keep_the_listed_path(tmp_path: Path) -> None:
    split = _build(tmp_path, CASES["two-links-to-one-file"])
    records, _ = scan_split(find_image_files(split.sources).files, 4, "train", "corpus")
    by_name = {r.path.name: r for r in records}
    assert by_name["one.png"].path == split.images / "one.png"  # not resolved to real.png
    assert (len(by_name["one.png"].classes), len(by_name["two.png"].classes)) == (1, 2)


def test_yaml_errors_name_the_file_line_and_key(tmp_path: Path) -> None:
    from yolo11_lightning.data.config import load_data_config

    path = tmp_path / "data.yaml"
    path.write_text("train: images\nnames: [a, b\nval: x\n")
    with pytest.raises(ValueError, match=rf"{path}:3:\d+: invalid YAML"):
        load_data_config(path)
    path.write_text("train: images\nnc: two\n")
    with pytest.raises(ValueError, match=rf"{path}: 'nc' must be an integer class count, got 'two'"):
        load_data_config(path)
    path.write_bytes(b"train: images\nnames: [caf\xe9]\n")
    with pytest.raises(ValueError, match=rf"{path}: not UTF-8 text \(byte 0xe9"):
        load_data_config(path)


def test_no_scan_noise_reaches_stderr(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """The truncation check provokes libjpeg warnings for every JPEG; they are held back."""
    split = _build(tmp_path, CASES["jpeg-half-with-end-marker"])
    split.image("fine.jpg", jpeg())
    scan_split(find_image_files(split.sources).files, 4, "train", "corpus", use_cache=False)
    assert "Corrupt JPEG" not in capfd.readouterr().err
    os.write(2, b"after the scan\n")
    assert "after the scan" in capfd.readouterr().err


def _changed_after_scan(tmp_path: Path) -> tuple[list, Path]:
    """Nine good images scanned; then one is overwritten with TGA data (as if changed on disk)."""
    split = Split(tmp_path / "set")
    for i in range(9):
        split.image(f"img{i}.png", NOISE)
    records, summary = scan_split(find_image_files(split.sources).files, 4, "train", "corpus", use_cache=False)
    assert summary.images == 9
    changed = split.images / "img4.png"
    changed.write_bytes(pil_bytes("TGA"))
    return records, changed


def test_image_changed_after_the_scan_is_skipped_in_evaluation(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from yolo11_lightning.data.dataset import YOLODataset, collate

    records, changed = _changed_after_scan(tmp_path)
    dataset = YOLODataset(records, imgsz=64)
    with caplog.at_level(logging.WARNING):
        batches = [collate([dataset[i] for i in range(start, min(start + 4, 9))]) for start in range(0, 9, 4)]
    paths = [path for batch in batches for path in batch.paths]
    assert len(paths) == 8 and str(changed) not in paths  # every good image, the changed one left out
    assert dataset.unreadable == {str(changed): dataset.unreadable[str(changed)]}
    assert "TGA data" in dataset.unreadable[str(changed)] and f"skipping cannot decode image {changed}" in caplog.text
    assert collate([dataset[4]]) is None  # a batch of only unreadable images is skipped, not fatal


def test_image_changed_after_the_scan_is_replaced_in_training(tmp_path: Path) -> None:
    from yolo11_lightning.data.augment import AugmentConfig
    from yolo11_lightning.data.dataset import YOLODataset
    from yolo11_lightning.data.samplers import SampleRequest

    records, changed = _changed_after_scan(tmp_path)
    dataset = YOLODataset(records, imgsz=64, augment=AugmentConfig(), buffer_size=0)
    sample = dataset[SampleRequest(4, mosaic=False)]
    assert sample["path"].endswith("img5.png") and sample["image"].shape == (64, 64, 3)
    for index in range(9):  # mosaics whose partners include the changed image still build
        assert dataset[SampleRequest(index, mosaic=True, partners=(4, 4, 4))]["image"].shape == (64, 64, 3)
    assert list(dataset.unreadable) == [str(changed)]


@pytest.mark.slow
def test_train_only_data_yaml_trains_without_validation(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import sys

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
    from robustness_helpers import DATA, tiny_cli_args

    from yolo11_lightning.training.cli import run_cli

    data_yaml = tmp_path / "data.yaml"
    data_yaml.write_text(
        f"path: {DATA.parent}\ntrain: images/train\nnames: {{0: present, 1: logo, 2: portrait, 3: ball}}\n"
    )
    args = [a if a != str(DATA) else str(data_yaml) for a in tiny_cli_args(tmp_path, tmp_path / "checkpoints", 2, 2)]
    torch.set_num_threads(1)
    with caplog.at_level(logging.INFO):
        cli = run_cli(["fit", *args])
    assert cli.trainer.current_epoch == 2 and cli.model.last_results is None
    assert "has no 'val' split: training without validation" in caplog.text
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_predict_writes_every_good_image(tmp_path: Path) -> None:
    """8 good images and one TGA file under .png: 8 predictions (it used to write none)."""
    import importlib.util
    import json
    import lzma

    import torch

    from yolo11_lightning.training.cli import run_cli

    data_dir = Path(__file__).resolve().parents[1] / "training" / "data"
    spec = importlib.util.spec_from_file_location("make_format_v1", data_dir / "make_format_v1.py")
    make_format_v1 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_format_v1)
    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes(lzma.decompress((data_dir / "format_v1.ckpt.xz").read_bytes()))

    split = Split(tmp_path / "set")
    for i in range(8):
        split.image(f"img{i}.png", NOISE, label=None)
    split.image("foreign.png", pil_bytes("TGA"), label=None)
    data_yaml = tmp_path / "data.yaml"
    data_yaml.write_text(f"path: {split.root}\ntrain: images/train\nval: images/train\nnames: [a, b, c, d]\n")
    args = make_format_v1.format_args(tmp_path / "run")
    args[args.index("--data.data") + 1] = str(data_yaml)
    torch.set_num_threads(1)
    cli = run_cli(["predict", *args, "--ckpt_path", str(checkpoint)])
    lines = (Path(cli.trainer.log_dir) / "predictions.jsonl").read_text().splitlines()
    assert sorted(Path(json.loads(line)["path"]).name for line in lines) == [f"img{i}.png" for i in range(8)]
