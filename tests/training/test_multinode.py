"""Two nodes on one machine through Lightning: ``--trainer.num_nodes 2``, one process per node.

Each "node" is a separate ``train.py`` launched by the test with the environment a cluster
launcher would give it (``MASTER_ADDR`` on the loopback address, ``MASTER_PORT``, ``NODE_RANK``,
``LOCAL_RANK`` 0, ``WORLD_SIZE`` 2), gloo on CPU. The result must equal the single-node run with two
processes (``--trainer.devices 2``), which Lightning launches itself: same global ranks, same data
shards, so the final weights must be bitwise equal.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from robustness_helpers import ROOT, tiny_cli_args

pytestmark = pytest.mark.slow

TIMEOUT = 300.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _base_env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    for name in ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "GLOBAL_RANK", "RANK"):
        env.pop(name, None)
    return env


def _fit_args(root: Path) -> list[str]:
    args = tiny_cli_args(root, root / "checkpoints", epochs=1, batches=2)
    args[args.index("--trainer.devices") + 1] = "1"
    return ["fit", *args, "--trainer.strategy", "ddp", "--trainer.limit_val_batches", "0"]


def _weights(root: Path) -> dict[str, torch.Tensor]:
    checkpoint = torch.load(root / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] > 0
    return {**checkpoint["state_dict"], **{f"ema.{k}": v for k, v in checkpoint["ema_state_dict"].items()}}


def test_two_nodes_equal_two_local_processes(tmp_path: Path) -> None:
    # Two nodes, one process each, launched as a cluster launcher would.
    two_nodes = tmp_path / "nodes"
    port = str(_free_port())
    processes = []
    for node_rank in (0, 1):
        env = dict(
            _base_env(), MASTER_ADDR="127.0.0.1", MASTER_PORT=port, NODE_RANK=str(node_rank), LOCAL_RANK="0",
            WORLD_SIZE="2",
        )  # fmt: skip
        processes.append(
            subprocess.Popen(
                [sys.executable, "train.py", *_fit_args(two_nodes), "--trainer.num_nodes", "2"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )  # fmt: skip
        )
    outputs = []
    for process in processes:
        output, _ = process.communicate(timeout=TIMEOUT)
        outputs.append(output)
        assert process.returncode == 0, output[-4000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in outputs[1], outputs[1][-3000:]

    # One node, two processes launched by Lightning.
    one_node = tmp_path / "local"
    local = subprocess.run(
        [sys.executable, "train.py", *_fit_args(one_node), "--trainer.devices", "2"],
        cwd=ROOT, env=_base_env(), capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert local.returncode == 0, local.stdout[-3000:] + local.stderr[-3000:]

    nodes, single = _weights(two_nodes), _weights(one_node)
    assert nodes.keys() == single.keys()
    different = [key for key in nodes if not torch.equal(nodes[key], single[key])]
    assert not different, different[:10]
