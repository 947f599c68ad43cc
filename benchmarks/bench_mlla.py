"""MLLAttention latency: ours against the seed article's implementation, in one run, on CPU.

The seed's code is NOT part of this repository. The script reads the seed article at run time
(``../shared/seeds/000_410879b119cfbd20.txt`` relative to the repository root, or ``--seed-file``),
takes the code lines (prefixed with ``"- "``) of its section three ("三、核心代码", up to "四、"),
restores the indentation the article lost (enough for its ``RoPE`` and ``MLLAttention`` classes),
executes that in a private namespace and instantiates the seed's ``MLLAttention``.

Shapes are those MLLAttention sees in ``yolo11n-mlla`` at 640x640: C=64 at 80x80 (P3), C=128 at
40x40 (P4), C=256 at 20x20 (P5). Both modules get the same weights. The seed scrambles its tokens
(reshape without permute), so outputs differ; only latency is compared.

Usage:
    .venv/bin/python benchmarks/bench_mlla.py [--batch 1 16] [--threads 1] [--repeats 60]

Prints, per shape and batch, the median and the minimum forward latency (eval, inference mode) of
each, the two calls alternating, and the ratios ours/seed (goal: at most 0.7); then their geometric
means. On a shared machine the minimum is the steadier figure; both are printed.
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from yolo11_lightning.nn.blocks.mlla import MLLAttention  # noqa: E402

DEFAULT_SEED_FILE = REPO_ROOT / ".." / "shared" / "seeds" / "000_410879b119cfbd20.txt"
SHAPES = ((64, 80, 80), (128, 40, 40), (256, 20, 20))
SECTION_START = "三、核心代码"
SECTION_END = "四、"


def seed_code_lines(article: str) -> list[str]:
    """The code lines (without their ``"- "`` prefix) of the article's core-code section."""
    start = article.index(SECTION_START)
    end = article.index(SECTION_END, start)
    return [line[2:] for line in article[start:end].splitlines() if line.startswith("- ")]


def _bracket_delta(line: str) -> int:
    code = re.sub(r"#.*$", "", re.sub(r"(['\"]).*?\1", "", line))
    return sum(code.count(c) for c in "([{") - sum(code.count(c) for c in ")]}")


def reindent_classes(lines: list[str], wanted: tuple[str, ...]) -> str:
    """Rebuild the source of the named top-level classes (plus the imports) from unindented lines.

    Heuristic for flat classes: a statement line ``class X`` opens a class, ``def f(self`` is one of
    its methods, ``def f(`` without ``self`` or an import ends it. Methods sit at one indentation
    level, their statements at two (one before the first method: the class docstring); continuation
    lines (open brackets, open triple-quoted strings) keep their statement's level plus one. Nested
    blocks (``if``/``for`` bodies) are not supported: they make ``compile`` fail loudly.
    """
    out: list[str] = []
    current: str | None = None  # class being read, None at top level
    in_method = False
    depth = 0  # open brackets
    in_string = False  # inside a triple-quoted string
    indent = 0
    for line in lines:
        stripped = line.strip()
        if depth == 0 and not in_string:  # a new statement
            if stripped.startswith("class "):
                current, in_method, indent = re.match(r"class (\w+)", stripped).group(1), False, 0
            elif re.match(r"(import |from )", stripped) or re.match(r"def \w+\((?!self)", stripped):
                current = None
                indent = 0
            elif stripped.startswith("def "):
                in_method, indent = True, 4
            elif current is not None:
                indent = 8 if in_method else 4
            statement_indent = indent
        else:
            indent = statement_indent + 4
        keep = current in wanted if current is not None else bool(re.match(r"(import |from )", stripped))
        if keep:
            out.append(" " * indent + stripped)
        if stripped.count('"""') % 2 == 1:
            in_string = not in_string
        elif not in_string:
            depth += _bracket_delta(stripped)
    return "\n".join(out) + "\n"


def load_seed_mlla(seed_file: Path) -> type[nn.Module]:
    """Execute the seed's RoPE and MLLAttention and return its MLLAttention class."""
    article = seed_file.read_text(encoding="utf-8")
    source = reindent_classes(seed_code_lines(article), ("RoPE", "MLLAttention"))
    namespace: dict = {"__name__": "seed_mlla"}
    exec(compile(source, f"<seed {seed_file.name}>", "exec"), namespace)
    return namespace["MLLAttention"]


def interleaved_latencies_ms(
    modules: dict[str, nn.Module], x: torch.Tensor, repeats: int, warmup: int = 3
) -> dict[str, list[float]]:
    """Wall times in milliseconds of ``module(x)`` (eval, inference mode), the modules called in turn.

    Alternating call by call exposes both implementations to the same machine load.
    """
    times: dict[str, list[float]] = {name: [] for name in modules}
    with torch.inference_mode():
        for module in modules.values():
            for _ in range(warmup):
                module(x)
        for _ in range(repeats):
            for name, module in modules.items():
                start = time.perf_counter()
                module(x)
                times[name].append(1e3 * (time.perf_counter() - start))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed-file", type=Path, default=DEFAULT_SEED_FILE)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: steadiest figures)")
    parser.add_argument("--repeats", type=int, default=60, help="timed calls of each module per shape at batch 1")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    seed_cls = load_seed_mlla(args.seed_file)
    print(
        f"torch {torch.__version__}, CPU, {args.threads} thread(s), float32, eval forward (inference mode), "
        f"ours and seed called alternately, {args.repeats} calls each (fewer at batch > 4)"
    )
    columns = ("ours med", "seed med", "ratio", "ours min", "seed min", "ratio")
    print(f"{'shape (B, C, H, W)':>20} " + " ".join(f"{c:>9}" for c in columns))
    median_ratios, min_ratios = [], []
    for batch in args.batch:
        for channels, height, width in SHAPES:
            torch.manual_seed(0)
            ours = MLLAttention(channels).eval()
            seed = seed_cls(channels).eval()
            seed.load_state_dict(ours.state_dict())  # same parameter names: qk, lepe
            x = torch.randn(batch, channels, height, width)
            with torch.inference_mode():
                if tuple(seed(x).shape) != tuple(x.shape):
                    raise RuntimeError("seed module returned an unexpected shape")
            repeats = max(5, args.repeats * 4 // batch) if batch > 4 else args.repeats
            times = interleaved_latencies_ms({"ours": ours, "seed": seed}, x, repeats)
            ours_med, seed_med = statistics.median(times["ours"]), statistics.median(times["seed"])
            ours_min, seed_min = min(times["ours"]), min(times["seed"])
            median_ratios.append(ours_med / seed_med)
            min_ratios.append(ours_min / seed_min)
            shape = f"({batch}, {channels}, {height}, {width})"
            print(
                f"{shape:>20} {ours_med:9.3f} {seed_med:9.3f} {ours_med / seed_med:9.3f} "
                f"{ours_min:9.3f} {seed_min:9.3f} {ours_min / seed_min:9.3f}"
            )

    def geo_mean(values: list[float]) -> float:
        return math.exp(sum(math.log(v) for v in values) / len(values))

    print(
        f"ours/seed (goal <= 0.7): median-based geometric mean {geo_mean(median_ratios):.3f}, worst "
        f"{max(median_ratios):.3f}; min-based geometric mean {geo_mean(min_ratios):.3f}, worst {max(min_ratios):.3f}"
    )


if __name__ == "__main__":
    main()
