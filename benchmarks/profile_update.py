"""Where an update's time goes: torch.profiler over the updates after a warm-up of one real `Trainer.fit`, the
operators sorted by their own CPU time (a diagnosis beside `throughput.py`, not a speed figure: the profiler adds
its own cost to every operator).

    python benchmarks/profile_update.py TD3BC                                  # float32 eager
    python benchmarks/profile_update.py TD3BC --precision bf16-mixed           # bf16 autocast
    python benchmarks/profile_update.py IQL --precision bf16-mixed --compile-update   # CompileUpdate, K = 8

One thread unless --threads; the dataset is throughput.py's (PointMaze UMaze, built on first use), batch 256, the
algorithm's default networks.
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("algo")
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--compile-update", action="store_true", help="CompileUpdate with data.updates_per_step 8")
    parser.add_argument("--warmup", type=int, default=200, help="updates before the profiler starts")
    parser.add_argument("--updates", type=int, default=200, help="updates profiled")
    parser.add_argument("--rows", type=int, default=25)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dataset-id", default="lit-offrl/pointmaze/umaze-v0")
    args = parser.parse_args()
    per_step = 8 if args.compile_update else 1
    if args.warmup % per_step or args.updates % per_step:
        parser.error(f"--warmup and --updates must be multiples of {per_step} with --compile-update")

    import lightning as L
    import torch

    import lit_offrl.algos as algos
    from lit_offrl.data.datamodule import OfflineDataModule

    torch.set_num_threads(args.threads)

    class Profile(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if module._updates == args.warmup:
                self.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
                self.profiler.__enter__()
                self.start = time.perf_counter()

        def on_train_end(self, trainer, module):
            seconds = time.perf_counter() - self.start
            self.profiler.__exit__(None, None, None)
            print(f"{args.algo}, {args.precision}{', CompileUpdate K=8' if args.compile_update else ''}, "
                  f"{args.threads} thread(s): {args.updates / seconds:.1f} updates/s under the profiler")
            print(self.profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))

    callbacks = [Profile()]
    if args.compile_update:
        from lit_offrl.callbacks import CompileUpdate

        callbacks.append(CompileUpdate())
    dm = OfflineDataModule(args.dataset_id, batch_size=256, eval_episodes=0, updates_per_step=per_step)
    model = getattr(algos, args.algo)(dm.obs_dim, dm.action_dim)
    trainer = L.Trainer(max_steps=args.warmup + args.updates, max_epochs=-1, accelerator="cpu", devices=1,
                        precision=args.precision, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, callbacks=callbacks)
    trainer.fit(model, dm)


if __name__ == "__main__":
    main()
