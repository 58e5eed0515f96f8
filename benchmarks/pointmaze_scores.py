"""Normalized scores of BC, TD3+BC and IQL on a PointMaze dataset, several seeds, against a random policy.

    python benchmarks/pointmaze_scores.py --steps 20000 --seeds 0 1 2
    python benchmarks/pointmaze_scores.py --steps 20000 --dataset-id lit-offrl/maze2d/umaze-v0 \
        --out benchmarks/results/maze2d_umaze.json

Each run is a real `cli.py fit` with the algorithm's config (configs/<algo>/pointmaze.yaml), evaluated at the
end on `--eval-episodes` episodes of the dataset's evaluation env; the random policy is rolled out on the same
episode seeds. Prints a markdown table (mean and std over seeds) and writes the raw numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
CONFIGS = {"BC": "configs/bc/pointmaze.yaml", "TD3BC": "configs/td3bc/pointmaze.yaml", "IQL": "configs/iql/pointmaze.yaml"}


def final_scalar(run_dir: Path, tag: str) -> float:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    return EventAccumulator(str(run_dir)).Reload().Scalars(tag)[-1].value


def random_policy_score(dataset_id: str, episodes: int) -> float:
    import torch

    from lit_offrl.data.datamodule import OfflineDataModule
    from lit_offrl.evaluation import make_vector_env, rollout

    dm = OfflineDataModule(dataset_id, eval_episodes=episodes)
    envs = make_vector_env(dm.make_eval_env, episodes)
    envs.action_space.seed(0)
    returns, _ = rollout(lambda obs: envs.action_space.sample(), envs, dm.episode_seeds(), dm.observation_space)
    return float(dm.normalized_score(torch.as_tensor(returns)).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", nargs="+", default=list(CONFIGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--eval-episodes", type=int, default=50)
    parser.add_argument("--dataset-id", default="lit-offrl/pointmaze/umaze-v0")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "pointmaze_umaze.json")
    args = parser.parse_args()

    save_dir = REPO / "benchmarks" / "runs"
    results: dict[str, dict] = {"random": {"scores": [random_policy_score(args.dataset_id, args.eval_episodes)]}}
    for algo in args.algos:
        results[algo] = {"scores": [], "seconds": []}
        for seed in args.seeds:
            name = f"{args.dataset_id.replace('/', '_')}_{algo}_seed{seed}_{args.steps}"
            start = time.time()
            cmd = [sys.executable, str(REPO / "cli.py"), "fit", "--config", str(REPO / CONFIGS[algo]),
                   "--data.dataset_id", args.dataset_id, "--data.seed", str(seed), "--data.eval_episodes",
                   str(args.eval_episodes), "--trainer.max_steps", str(args.steps), "--trainer.val_check_interval",
                   str(args.steps), "--trainer.enable_progress_bar", "false",
                   "--trainer.logger.init_args.save_dir", str(save_dir), "--trainer.logger.init_args.name", name,
                   "--trainer.logger.init_args.version", "run"]
            proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"{name} failed:\n{proc.stderr[-3000:]}")
            score = final_scalar(save_dir / name / "run", "val/normalized_score")
            results[algo]["scores"].append(score)
            results[algo]["seconds"].append(time.time() - start)
            print(f"{name}: normalized score {score:.1f} ({time.time() - start:.0f} s)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"steps": args.steps, "seeds": args.seeds, "eval_episodes": args.eval_episodes,
                                    "dataset_id": args.dataset_id, "results": results}, indent=2))
    print("\n| algorithm | updates | seeds | normalized score (mean ± std) | per seed |\n|---|---|---|---|---|")
    for algo, r in results.items():
        s = np.array(r["scores"])
        seeds = "-" if algo == "random" else len(s)
        updates = 0 if algo == "random" else args.steps
        print(f"| {algo} | {updates} | {seeds} | {s.mean():.1f} ± {s.std():.1f} | {', '.join(f'{x:.1f}' for x in s)} |")


if __name__ == "__main__":
    main()
