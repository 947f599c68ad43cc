"""``data.yaml`` forms and file discovery (``yolo11_lightning/data/config.py``)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from data_builders import SHAPES4_YAML

from yolo11_lightning.data.config import label_path_for, list_image_files, load_data_config

IMAGE = np.zeros((16, 16, 3), np.uint8)


def test_shipped_dataset_yaml() -> None:
    config = load_data_config(SHAPES4_YAML)
    assert config.names == {0: "present", 1: "logo", 2: "portrait", 3: "ball"}
    assert config.root == SHAPES4_YAML.parent
    assert len(list_image_files(config.splits["train"])) == 64
    assert len(list_image_files(config.splits["val"])) == 17


def test_roboflow_export(tmp_path: Path, write_split) -> None:
    export = tmp_path / "export"
    for split in ("train", "valid"):  # Roboflow: <root>/<split>/images, yaml at <root>
        (export / split / "images").mkdir(parents=True)
        cv2.imwrite(str(export / split / "images" / f"{split}.jpg"), IMAGE)
    (export / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\nnc: 2\nnames: ['cat', 'dog']\n")
    config = load_data_config(export / "data.yaml")
    assert config.splits["train"] == [(export / "train" / "images").resolve()]
    assert config.splits["val"] == [(export / "valid" / "images").resolve()]
    assert config.names == {0: "cat", 1: "dog"}
    assert [p.name for p in list_image_files(config.splits["val"])] == ["valid.jpg"]


def test_txt_lists_lists_of_sources_and_name_maps(tmp_path: Path, write_split) -> None:
    root = tmp_path / "set"
    folder_a = write_split("a", {"1.png": (IMAGE, None), "2.png": (IMAGE, None)}, root=root)
    folder_b = write_split("b", {"3.png": (IMAGE, None)}, root=root)
    (root / "lists").mkdir()
    (root / "lists" / "val.txt").write_text("../images/b/3.png\n\n" + f"{folder_a / '1.png'}\n")
    (tmp_path / "data.yaml").write_text(
        "path: set\ntrain: [images/a, images/b]\nval: lists/val.txt\ntest: [lists/val.txt, images/a]\n"
        "names:\n  1: dog\n  0: cat\n"
    )
    config = load_data_config(tmp_path / "data.yaml")
    assert config.root == root.resolve()
    assert config.names == {0: "cat", 1: "dog"} and list(config.names) == [0, 1]
    assert [p.name for p in list_image_files(config.splits["train"])] == ["1.png", "2.png", "3.png"]
    assert sorted(p.name for p in list_image_files(config.splits["val"])) == ["1.png", "3.png"]
    assert sorted(p.name for p in list_image_files(config.splits["test"])) == [
        "1.png",
        "2.png",
        "3.png",
    ]  # de-duplicated
    assert label_path_for(folder_b / "3.png") == root / "labels" / "b" / "3.txt"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("train: x\nnc: 3\nnames: [a, b]\n", "nc=3 but 2 names"),
        ("train: x\nnames: {0: a, 2: b}\n", "0..1 without gaps"),
        ("train: x\n", "needs 'names'"),
        ("names: [a]\n", "needs at least a 'train' or 'val'"),
    ],
)
def test_inconsistent_yaml_is_rejected(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "data.yaml").write_text(text)
    with pytest.raises(ValueError, match=message):
        load_data_config(tmp_path / "data.yaml")


def test_nc_alone_gives_numbered_names(tmp_path: Path) -> None:
    (tmp_path / "data.yaml").write_text("train: images\nnc: 3\n")
    assert load_data_config(tmp_path / "data.yaml").names == {0: "0", 1: "1", 2: "2"}


def test_missing_source_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        list_image_files([tmp_path / "nowhere"])
