"""``--model.compile`` on every bundled config: compiled vs eager training, CPU, one config per process.

For each config (scale ``n`` unless the name gives one) a fresh child process trains our
``YOLOModule`` for ``--steps`` optimizer steps on the generated set (``imgsz`` 64, batch 2,
``workers=0``, ``lr0`` 1e-4 as in ``tests/training/test_compiled.py``: at the recipe's 0.01 a
5-step trajectory is chaotic and eager differs from eager by more than 1e-4 when only the thread
count changes) twice from the same seed: eagerly and with ``compile=True``. It prints, per config:

* whether the compiler ran (no fallback warning) and the checkpoint keys stayed the eager ones;
* the largest relative loss difference over the steps (the acceptance is 1e-4);
* the first compiled step's time (compilation) and the later steps' time, compiled / eager.

CI runs one config (``tests/training/test_compiled.py``); this covers the rest. Inductor takes
minutes per config on 2 cores; ``--backend aot_eager`` checks graph capture of every config in
seconds.

Usage::

    .venv/bin/python benchmarks/bench_compile.py --configs yolo11n.yaml yolo11n-mlla.yaml \\
        yolo11n-c2psa-mlla.yaml yolo11n-focalmodulation.yaml
    .venv/bin/python benchmarks/bench_compile.py --backend aot_eager          # every bundled config
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings

from bench_common import cpu_trainer, generated_dataset, our_modules, run_child


def _train(args: argparse.Namespace, compile_network: bool) -> dict:
    import torch
    from lightning.pytorch import Callback, seed_everything

    seed_everything(0)
    module, data = our_modules(
        args.data, 64, 2, args.model, workers=0, lr0=1e-4, warmup_epochs=0, nominal_batch_size=2,
        compile=compile_network, compile_backend=args.backend,
    )  # fmt: skip
    losses: list[float] = []
    loss = module.loss_fn

    def recorded_loss(preds, targets):  # noqa: ANN001, ANN202 - the module's loss, its total kept
        total, components = loss(preds, targets)
        losses.append(float(total.detach()))
        return total, components

    module.loss_fn = recorded_loss
    stamps: list[float] = []

    class Clock(Callback):
        def on_train_batch_start(self, *unused) -> None:
            stamps.append(time.perf_counter())

        def on_train_batch_end(self, *unused) -> None:
            stamps.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as root, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = cpu_trainer(root, max_epochs=1, limit_train_batches=args.steps, limit_val_batches=0,
                              callbacks=[Clock()])  # fmt: skip
        trainer.fit(module, data)
        trainer.save_checkpoint(f"{root}/run.ckpt")
        keys = torch.load(f"{root}/run.ckpt", map_location="cpu", weights_only=False)["state_dict"].keys()
    fallbacks = [str(w.message) for w in caught if "torch.compile" in str(w.message)]
    durations = [end - start for start, end in zip(stamps[::2], stamps[1::2])]
    eager_keys = not any("_orig_mod" in key for key in keys)
    return {"losses": losses, "first_step_s": durations[0], "later_steps_s": sum(durations[1:]),
            "fallback": fallbacks[0] if fallbacks else "", "eager_keys": eager_keys}  # fmt: skip


def main() -> None:
    from yolo11_lightning.nn.builder import bundled_configs

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=None, help="model configs (default: every bundled one)")
    parser.add_argument("--backend", default="inductor", help="torch.compile backend")
    parser.add_argument("--steps", type=int, default=5, help="optimizer steps per run")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads")
    parser.add_argument("--child", choices=["eager", "compiled"], help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        print("RESULT " + json.dumps(_train(args, args.child == "compiled")), flush=True)
        return

    data = str(generated_dataset(512, 128, seed=1))
    configs = args.configs or [name.replace("yolo11", "yolo11n", 1) for name in bundled_configs()]
    print(f"{args.backend}, {args.steps} steps, imgsz 64, batch 2, {args.threads} threads, lr0 1e-4")
    print("| config | compiled | checkpoint keys | max loss rel. diff | first step s (compile) | later steps "
          "compiled / eager |\n" + "|---" * 6 + "|")  # fmt: skip
    for config in configs:
        common = ["--model", config, "--data", data, "--backend", args.backend, "--steps", str(args.steps),
                  "--threads", str(args.threads)]  # fmt: skip
        eager = run_child(__file__, [*common, "--child", "eager"], threads=args.threads)
        compiled = run_child(__file__, [*common, "--child", "compiled"], threads=args.threads)
        difference = max(abs(a - b) / abs(a) for a, b in zip(eager["losses"], compiled["losses"]))
        status = "no: " + compiled["fallback"][:80] if compiled["fallback"] else "yes"
        print(f"| {config} | {status} | {'eager' if compiled['eager_keys'] else '_orig_mod.'} | {difference:.2e} | "
              f"{compiled['first_step_s']:.1f} | {compiled['later_steps_s'] / eager['later_steps_s']:.2f} |",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
