"""Block registry: model configs name blocks, the registry says how to build them.

A block is registered with :func:`register_block`, which declares its *channel contract*: how the
model builder derives the block's constructor arguments from the config row and what channel count
the block produces. The builder reads the contract and never special-cases a block by name.

Channel contracts (``c_in`` is the channel count of the row's input, ``args`` the row's arguments):

- ``"scaled"``: ``args[0]`` is the nominal output channel count. The builder caps it at the scale's
  ``max_channels``, multiplies by the width multiple, rounds up to a multiple of 8 and calls
  ``Block(c_in, c_out, *args[1:])``; with ``repeats=True`` the depth-scaled repeat count is passed
  as the third positional argument: ``Block(c_in, c_out, n, *args[1:])``. Output: ``c_out``.
- ``"same"``: the block keeps the channel count: ``Block(c_in, *args)``. Output: ``c_in``.
- ``"concat"``: the row has several inputs, concatenated along channels: ``Block(*args)``.
  Output: the sum of the input channel counts.
- ``"none"``: channel-free, shape-preserving along channels (e.g. upsampling): ``Block(*args)``.
  Output: ``c_in``.
- ``"head"``: a multi-input head: ``Block(*args, in_channels=[c_in of each input])``.
  Output: none (it must be the last row).
- ``"features"``: a block with several outputs (e.g. a backbone yielding P3, P4, P5):
  ``Block(c_in, *args)``; it returns a list of maps and the built module's ``out_channels``
  attribute (a sequence of ints) gives each output's channel count. Later rows read one output
  through an ``"index"`` row.
- ``"index"``: selects one output of a ``"features"`` layer: ``Block(*args)`` (``Index(i)``).
  Output: the channel count of output ``i``.

Rows may also give keyword arguments: ``args`` is a list (positional), a map (keywords only) or a
list whose last element is a map (positional, then keywords); keywords go to the constructor
unchanged, after the positional arguments the contract derived.

A block whose row repeats (``repeats > 1``) without ``repeats=True`` is stacked ``n`` times in an
``nn.Sequential``, which is what the reference does too; for a ``"scaled"`` block this needs
``c_in == c_out`` (each copy is built with the same arguments), else the build fails.

Importing :mod:`yolo11_lightning.nn` registers the built-in blocks; this module imports none of them.

Example:
    >>> import torch.nn as nn
    >>> @register_block("MyGate", channels="same")
    ... class MyGate(nn.Module):
    ...     def __init__(self, in_channels: int) -> None:
    ...         super().__init__()
    ...         self.gate = nn.Conv2d(in_channels, in_channels, 1)
    ...     def forward(self, x):
    ...         return x * self.gate(x).sigmoid()
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch.nn as nn

ChannelContract = Literal["scaled", "same", "concat", "none", "head", "features", "index"]
CHANNEL_CONTRACTS: tuple[str, ...] = ("scaled", "same", "concat", "none", "head", "features", "index")


@dataclass(frozen=True)
class ScaleContext:
    """What a block's argument hook may know about the model being built.

    Attributes:
        scale: Scale letter selected by the config file name or ``scale`` key (``"n"``, ``"s"``...),
            or ``""`` when the config has no scales.
        depth: Depth multiple of the scale.
        width: Width multiple of the scale.
        max_channels: Channel cap of the scale, before the width multiple.
        nc: Number of classes of the model.
    """

    scale: str
    depth: float
    width: float
    max_channels: int
    nc: int


ArgsHook = Callable[[list, ScaleContext], list]


@dataclass(frozen=True)
class BlockSpec:
    """A registered block.

    Attributes:
        name: Name used in model configs.
        cls: The ``nn.Module`` subclass.
        channels: Channel contract, one of :data:`CHANNEL_CONTRACTS`.
        repeats: Whether the depth-scaled repeat count is passed to the constructor (third
            positional argument, ``"scaled"`` contract only).
        adapt_args: Optional hook ``(args, context) -> args`` applied to the row's arguments after
            the builder derived them (e.g. a block whose variant depends on the model scale).
        example_args: Row arguments (as written in a config, before derivation) that build a
            small instance; the registry-wide test builds every block from them. ``None`` means
            the contract's default (see :data:`DEFAULT_EXAMPLE_ARGS`).
    """

    name: str
    cls: type[nn.Module]
    channels: ChannelContract
    repeats: bool = False
    adapt_args: ArgsHook | None = None
    example_args: tuple | None = None

    def example_row_args(self) -> list:
        """Config-row arguments building a small instance of this block (for generic tests)."""
        if self.example_args is not None:
            return list(self.example_args)
        return list(DEFAULT_EXAMPLE_ARGS[self.channels])


# Row arguments used to build a small instance of a block that declares no ``example_args``:
# "scaled" blocks get 64 output channels, "concat" joins along dim 1, "head" gets 3 classes,
# "index" selects output 0.
DEFAULT_EXAMPLE_ARGS: dict[str, tuple] = {
    "scaled": (64,),
    "same": (),
    "concat": (1,),
    "none": (),
    "head": (3,),
    "features": (),
    "index": (0,),
}


_REGISTRY: dict[str, BlockSpec] = {}


def register_block(
    name: str | None = None,
    *,
    channels: ChannelContract,
    repeats: bool = False,
    adapt_args: ArgsHook | None = None,
    example_args: tuple | list | None = None,
) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator registering a block under ``name`` (default: the class name).

    Args:
        name: Name used in model configs; defaults to the class ``__name__``.
        channels: The block's channel contract (see the module docstring).
        repeats: Pass the depth-scaled repeat count as the third constructor argument.
        adapt_args: Optional hook adapting the derived constructor arguments to the scale.
        example_args: Config-row arguments that build a small instance (default: the contract's
            :data:`DEFAULT_EXAMPLE_ARGS`); used by the test that exercises every registered block.

    Returns:
        The decorator, which returns the class unchanged.

    Raises:
        ValueError: On an unknown contract, or a name already registered to another class.
    """
    if channels not in CHANNEL_CONTRACTS:
        raise ValueError(f"unknown channel contract {channels!r}; expected one of {CHANNEL_CONTRACTS}")
    if repeats and channels != "scaled":
        raise ValueError("repeats=True is only meaningful with the 'scaled' channel contract")

    def decorator(cls: type[nn.Module]) -> type[nn.Module]:
        key = name or cls.__name__
        existing = _REGISTRY.get(key)
        if existing is not None and existing.cls is not cls:
            # Re-registering the same class object (module reload) is harmless; another is not.
            if (existing.cls.__module__, existing.cls.__qualname__) != (cls.__module__, cls.__qualname__):
                raise ValueError(
                    f"block name {key!r} is already registered to {existing.cls.__module__}.{existing.cls.__qualname__}"
                )
        example = tuple(example_args) if example_args is not None else None
        _REGISTRY[key] = BlockSpec(key, cls, channels, repeats, adapt_args, example)
        return cls

    return decorator


def get_block(name: str) -> BlockSpec:
    """Look a block up by name.

    Args:
        name: Block name as written in a model config.

    Returns:
        The block's :class:`BlockSpec`.

    Raises:
        KeyError: If no block has that name; the message lists the known names.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise KeyError(
            f"unknown block {name!r}. Known blocks: {known}. Register your own with "
            "@register_block and name its module under 'imports' in the model config."
        ) from None


def registered_blocks() -> dict[str, BlockSpec]:
    """Return a copy of the registry, name -> spec (built-in blocks included)."""
    return dict(_REGISTRY)


def import_block_modules(modules: list[str] | tuple[str, ...], base: str | Path | None = None) -> None:
    """Import user modules so their ``@register_block`` decorators run.

    Args:
        modules: Importable module names (``"my_project.blocks"``, found on ``sys.path``) or paths
            of Python files (``"my_blocks.py"``); a relative file path is looked up next to the model
            config (``base``), then in the working directory.
        base: Folder of the model config, for relative file paths.

    Raises:
        ImportError: If a module cannot be imported; the message names it.
    """
    for module in modules:
        if str(module).endswith(".py"):
            _import_file(str(module), base)
            continue
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ImportError(f"cannot import block module {module!r} named in the model config: {error}") from error


def _import_file(path: str, base: str | Path | None) -> None:
    """Import a Python file as a module named after its stem (once per resolved path)."""
    candidates = [Path(path)] if Path(path).is_absolute() else [Path(base or ".") / path, Path.cwd() / path]
    file = next((c.resolve() for c in candidates if c.is_file()), None)
    if file is None:
        tried = ", ".join(str(c) for c in candidates)
        raise ImportError(f"block file {path!r} named in the model config not found (tried {tried})")
    name = f"yolo11_user_blocks.{file.stem}_{zlib.crc32(str(file).encode()):08x}"
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import block file {str(file)!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception:
        del sys.modules[name]
        raise
