"""Generate the small shipped detection dataset (``data/shapes4``) from matplotlib's sample data.

Everything comes from files that ``matplotlib`` installs (``mpl-data/sample_data``), so no network
is needed and the output is byte-identical for a given seed and library versions:

* backgrounds: hill-shaded renders of the two elevation models (``jacksboro_fault_dem.npz``,
  ``topobathy.npz``) and the MRI slice (``s1045.ima.gz``) under several colour maps, randomly
  cropped, flipped, rotated and tinted;
* four object classes pasted on top, each with its own shape and texture:
  ``present`` (the RGBA gift-box sprite), ``logo`` (the wide matplotlib logo sprite),
  ``portrait`` (the Grace Hopper photo in a white frame) and ``ball`` (a shaded sphere of random
  hue); sprites are scaled over a wide range (longer side about 20 to 200 pixels), slightly rotated, and their
  boxes are the tight bounds of their alpha masks.

The dataset is committed, so training and tests never need matplotlib; run this script only to
rebuild it (``python data/make_dataset.py``; about 5 s). Layout is the reference tool's:
``images/{train,val}/*.jpg``, ``labels/{train,val}/*.txt`` with ``class cx cy w h`` rows normalised
to [0, 1], and ``data.yaml`` next to them. Validation has an odd number of images (17) so
distributed tests see uneven shards; a few training images are pure backgrounds (empty label file).
"""

from __future__ import annotations

import argparse
import gzip
import shutil
from pathlib import Path

import cv2
import numpy as np

NAMES = ["present", "logo", "portrait", "ball"]
# (width, height) of the generated images: several aspect ratios so rectangular batches matter.
IMAGE_SIZES = [(480, 360), (360, 480), (416, 416), (448, 320), (320, 448), (400, 300)]


def _sample_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data"


def _load_sources() -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """Return background textures (BGR uint8) and the RGBA sprites (BGRA uint8)."""
    from matplotlib import colormaps
    from matplotlib.colors import LightSource

    root = _sample_dir()
    dem = np.load(root / "jacksboro_fault_dem.npz")["elevation"].astype(np.float64)
    topo = np.load(root / "topobathy.npz")["topo"].astype(np.float64)
    mri = np.frombuffer(gzip.open(root / "s1045.ima.gz").read(), dtype=">u2").reshape(256, 256)
    mri = mri.astype(np.float64)

    backgrounds = []
    for elevation, cmaps in ((dem, ("gist_earth", "terrain", "copper")), (topo, ("ocean", "cividis"))):
        for index, cmap in enumerate(cmaps):
            light = LightSource(azdeg=315 - 90 * index, altdeg=40)
            rgb = light.shade(elevation, cmap=colormaps[cmap], blend_mode="overlay", vert_exag=0.05)
            backgrounds.append(cv2.cvtColor((rgb[..., :3] * 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
    for cmap in ("bone", "pink"):
        normalised = (mri - mri.min()) / (mri.max() - mri.min())
        rgb = colormaps[cmap](normalised)[..., :3]
        backgrounds.append(cv2.cvtColor((rgb * 255).astype(np.uint8), cv2.COLOR_RGB2BGR))

    present = cv2.imread(str(root / "Minduka_Present_Blue_Pack.png"), cv2.IMREAD_UNCHANGED)
    logo = cv2.imread(str(root / "logo2.png"), cv2.IMREAD_UNCHANGED)
    photo = cv2.imread(str(root / "grace_hopper.jpg"), cv2.IMREAD_COLOR)
    photo = cv2.resize(photo, (128, 150), interpolation=cv2.INTER_AREA)
    framed = cv2.copyMakeBorder(photo, 8, 8, 8, 8, cv2.BORDER_CONSTANT, value=(245, 245, 245))
    portrait = np.dstack([framed, np.full(framed.shape[:2], 255, np.uint8)])
    return backgrounds, {"present": present, "logo": logo, "portrait": portrait}


def _ball(diameter: int, rng: np.random.Generator) -> np.ndarray:
    """A shaded sphere of random hue as a BGRA sprite."""
    radius = diameter / 2
    yy, xx = np.mgrid[0:diameter, 0:diameter] + 0.5
    dx, dy = (xx - radius) / radius, (yy - radius) / radius
    inside = dx**2 + dy**2 <= 1.0
    dz = np.sqrt(np.clip(1.0 - dx**2 - dy**2, 0.0, 1.0))
    shade = np.clip(0.25 + 0.75 * (-0.5 * dx - 0.5 * dy + 0.7 * dz), 0.1, 1.0)
    hue = rng.integers(0, 180)
    hsv = np.zeros((diameter, diameter, 3), np.uint8)
    hsv[..., 0], hsv[..., 1], hsv[..., 2] = hue, 200, (shade * 255).astype(np.uint8)
    bgr = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    return np.dstack([bgr, inside.astype(np.uint8) * 255])


def _background(textures: list[np.ndarray], width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    texture = textures[rng.integers(len(textures))]
    texture = np.rot90(texture, rng.integers(4)).copy()
    if rng.random() < 0.5:
        texture = texture[:, ::-1].copy()
    th, tw = texture.shape[:2]
    crop_h, crop_w = int(th * rng.uniform(0.5, 1.0)), int(tw * rng.uniform(0.5, 1.0))
    top, left = rng.integers(0, th - crop_h + 1), rng.integers(0, tw - crop_w + 1)
    image = cv2.resize(
        texture[top : top + crop_h, left : left + crop_w], (width, height), interpolation=cv2.INTER_LINEAR
    )
    tint = rng.uniform(0.8, 1.2, size=3)
    return np.clip(image.astype(np.float32) * tint, 0, 255).astype(np.uint8)


def _transform_sprite(sprite: np.ndarray, long_side: int, rng: np.random.Generator) -> np.ndarray:
    """Scale the sprite so its longer side is ``long_side`` and rotate it by up to 15 degrees."""
    h, w = sprite.shape[:2]
    scale = long_side / max(h, w)
    sprite = cv2.resize(sprite, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    angle = rng.uniform(-15, 15)
    h, w = sprite.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    new_w, new_h = int(np.ceil(h * sin + w * cos)), int(np.ceil(h * cos + w * sin))
    matrix[0, 2] += new_w / 2 - w / 2
    matrix[1, 2] += new_h / 2 - h / 2
    return cv2.warpAffine(sprite, matrix, (new_w, new_h), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0, 0))


def _paste(image: np.ndarray, sprite: np.ndarray, x: int, y: int) -> tuple[int, int, int, int] | None:
    """Alpha-blend ``sprite`` at (x, y); return the tight box (x1, y1, x2, y2) of its visible mask."""
    h, w = sprite.shape[:2]
    alpha = sprite[..., 3:4].astype(np.float32) / 255.0
    region = image[y : y + h, x : x + w].astype(np.float32)
    image[y : y + h, x : x + w] = (alpha * sprite[..., :3] + (1 - alpha) * region).astype(np.uint8)
    ys, xs = np.nonzero(sprite[..., 3] > 127)
    if len(xs) == 0:
        return None
    return x + xs.min(), y + ys.min(), x + xs.max() + 1, y + ys.max() + 1


def make_image(
    textures: list[np.ndarray], sprites: dict[str, np.ndarray], rng: np.random.Generator, background_only: bool
) -> tuple[np.ndarray, list[tuple[int, float, float, float, float]]]:
    """Compose one image and its normalised ``(class, cx, cy, w, h)`` labels."""
    width, height = IMAGE_SIZES[rng.integers(len(IMAGE_SIZES))]
    image = _background(textures, width, height, rng)
    labels: list[tuple[int, float, float, float, float]] = []
    if background_only:
        return image, labels
    placed: list[tuple[int, int, int, int]] = []
    for _ in range(int(rng.integers(2, 7))):
        class_id = int(rng.integers(len(NAMES)))
        smallest = 48 if NAMES[class_id] == "logo" else 20  # the logo is 4:1, keep it legible
        long_side = int(np.exp(rng.uniform(np.log(smallest), np.log(0.45 * min(width, height)))))
        sprite = (
            _ball(max(long_side, 8), rng)
            if NAMES[class_id] == "ball"
            else _transform_sprite(sprites[NAMES[class_id]], long_side, rng)
        )
        h, w = sprite.shape[:2]
        if w >= width or h >= height:
            continue
        for _attempt in range(20):  # find a spot that does not overlap earlier objects
            x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
            if all(x + w <= a or a2 <= x or y + h <= b or b2 <= y for a, b, a2, b2 in placed):
                break
        else:
            continue
        box = _paste(image, sprite, x, y)
        if box is None:
            continue
        placed.append((x, y, x + w, y + h))
        x1, y1, x2, y2 = box
        labels.append((class_id, (x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height))
    return image, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "shapes4")
    parser.add_argument("--train", type=int, default=64, help="number of training images")
    parser.add_argument("--val", type=int, default=17, help="number of validation images (odd on purpose)")
    parser.add_argument("--backgrounds", type=int, default=3, help="training images without objects")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quality", type=int, default=85, help="JPEG quality")
    args = parser.parse_args()

    textures, sprites = _load_sources()
    rng = np.random.default_rng(args.seed)
    if args.out.exists():
        shutil.rmtree(args.out)
    for split, count in (("train", args.train), ("val", args.val)):
        (args.out / "images" / split).mkdir(parents=True)
        (args.out / "labels" / split).mkdir(parents=True)
        for index in range(count):
            background_only = split == "train" and index >= count - args.backgrounds
            image, labels = make_image(textures, sprites, rng, background_only)
            stem = f"{split}_{index:04d}"
            cv2.imwrite(
                str(args.out / "images" / split / f"{stem}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, args.quality]
            )
            rows = [f"{c} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}" for c, cx, cy, w, h in labels]
            (args.out / "labels" / split / f"{stem}.txt").write_text("".join(row + "\n" for row in rows))
    names = "\n".join(f"  {i}: {name}" for i, name in enumerate(NAMES))
    (args.out / "data.yaml").write_text(
        "# Generated by data/make_dataset.py from matplotlib's sample data; no path: the folders are\n"
        "# relative to this file.\n"
        f"train: images/train\nval: images/val\nnc: {len(NAMES)}\nnames:\n{names}\n"
    )
    print(f"wrote {args.train} train + {args.val} val images to {args.out}")


if __name__ == "__main__":
    main()
