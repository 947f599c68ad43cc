"""Optional ``torch.compile`` of the network, kept out of the module tree and the checkpoints.

The compiled wrapper shares its parameters with the network but is not registered as a submodule,
so ``state_dict`` keys stay those of the eager model (no ``_orig_mod.`` prefix): a checkpoint of a
compiled run loads into an eager model and resumes a compiled one unchanged. When the compiler is
unavailable (no C++ compiler for the CPU backend) or compilation fails, the network runs eagerly
after a one-line warning.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn


def compiler_available(device_type: str, backend: str) -> str | None:
    """``None`` when ``backend`` can compile for ``device_type``, else the reason it cannot."""
    if not hasattr(torch, "compile"):
        return "this torch has no torch.compile"
    if backend == "inductor" and device_type == "cpu" and not (shutil.which("c++") or shutil.which("g++")):
        return "the inductor CPU backend needs a C++ compiler (c++/g++ not found)"
    return None


class CompiledNetwork:
    """Calls a network through ``torch.compile`` when enabled, eagerly otherwise or after a failure.

    The network is passed at each call (the module's current training or EMA network), and compiled
    once per network object.

    Args:
        enabled: compile at all.
        backend: ``torch.compile`` backend (``"inductor"``; ``"aot_eager"`` checks graph capture
            without code generation).
        label: name used in the warning (``"training"`` or ``"evaluation"``).
    """

    def __init__(self, enabled: bool, backend: str = "inductor", label: str = "network") -> None:
        self.enabled = enabled
        self.backend = backend
        self.label = label
        self._compiled: Callable[..., Any] | None = None
        self._compiled_for: nn.Module | None = None

    def __call__(self, module: nn.Module, images: torch.Tensor) -> Any:
        """Run ``module`` on ``images`` (compiled when possible)."""
        if not self.enabled:
            return module(images)
        if self._compiled is None or self._compiled_for is not module:
            reason = compiler_available(images.device.type, self.backend)
            if reason is not None:
                self._fall_back(reason)
                return module(images)
            self._compiled = torch.compile(module, backend=self.backend, dynamic=False)
            self._compiled_for = module
        try:
            return self._compiled(images)
        except Exception as error:  # noqa: BLE001 - any compiler failure falls back to eager
            if not _is_compiler_error(error):
                raise
            self._fall_back(f"{type(error).__name__}: {str(error).splitlines()[0][:200]}{_cache_hint(error)}")
            return module(images)

    def _fall_back(self, reason: str) -> None:
        warnings.warn(f"torch.compile of the {self.label} network unavailable, running eagerly: {reason}", stacklevel=3)
        self.enabled = False
        self._compiled = self._compiled_for = None


def _cache_hint(error: Exception) -> str:
    """What to do about a truncated artefact in inductor's on-disk cache (an interrupted compile leaves one).

    Inductor reuses a cached shared library by its hash; one cut short by a killed run fails to
    load in every later run until it is deleted.
    """
    if not any(sign in str(error) for sign in ("file too short", "invalid ELF header")):
        return ""
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    return f" (a truncated file in the compiler cache, left by an interrupted compile: delete {cache_dir()})"


def _is_compiler_error(error: Exception) -> bool:
    """Errors raised by dynamo/inductor (not by the model's own code, which fails eagerly too)."""
    module = type(error).__module__ or ""
    return module.startswith(("torch._dynamo", "torch._inductor")) or "BackendCompilerFailed" in type(error).__name__
