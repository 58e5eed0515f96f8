"""AWAC's offline-to-online claim (Nair et al. 2020, the MuJoCo fine-tuning comparisons): offline AWAC, then online
fine-tuning, against online SAC from scratch with the same number of environment steps.

    python benchmarks/finetune.py --dataset lit-offrl/hopper/medium-replay-v0 --offline-steps 20000 \
        --env-steps 40000 --eval-every 5000 --seeds 0 1 2 --jobs 2 --out benchmarks/results/awac_finetune_hopper.json

Per seed, three real `cli.py fit` runs:

1. offline: `configs/awac/locomotion.yaml` on the dataset for `--offline-steps` updates (the same run folder as
   `scores.py --algos AWAC` with those steps, so one made there is reused);
2. fine-tuning: `configs/awac/finetune_locomotion.yaml --finetune_from` that run's last.ckpt: the offline data
   kept in the replay buffer, one environment step per update, no warmup, for `--env-steps` updates;
3. scratch: `configs/sac/online_hopper.yaml` (SAC, Haarnoja et al. 2018) on the dataset's evaluation env: its
   uniform warmup transitions (the config's data.warmup_steps, 10k) count as environment steps, so it makes
   `--env-steps - warmup` updates.

Curves are the normalized score (D4RL's Hopper reference returns) against environment steps collected online;
the fine-tuning curve starts at the offline run's final score (0 online steps). The logs go to
benchmarks/runs/<name>/run as scores.py's do; a run whose log holds its final evaluation is not repeated, a killed
one resumes from its last checkpoint. A dataset missing from MINARI_DATASETS_PATH is built by its recipe first, here
(Hopper medium-replay's takes about an hour).
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scores import REPO, RUNS, cli_fit, ensure_datasets, run_name  # noqa: E402

SAC_CONFIG = "configs/sac/online_hopper.yaml"
SAC_WARMUP = yaml.safe_load((REPO / SAC_CONFIG).read_text())["data"]["init_args"]["warmup_steps"]


def run(name: str, config: str, args, extra: list[str], steps: int, start: tuple[str, ...] = ()) -> dict:
    """scores.cli_fit, which must succeed."""
    result = cli_fit(name, REPO / config, args, extra, steps, start)
    if result.get("failed"):
        raise SystemExit(f"{name} failed: see above")
    return result


def awac_chain(seed: int, args) -> dict:
    """Offline AWAC, then AWAC fine-tuned online from its last checkpoint."""
    data = ["--data.seed", str(seed)]
    offline_name = run_name(args.dataset, "AWAC", seed, args.offline_steps)
    offline = run(offline_name, "configs/awac/locomotion.yaml", args,
                  ["--data.dataset_id", args.dataset, "--data.eval_episodes", str(args.eval_episodes), *data],
                  args.offline_steps)
    ckpt = RUNS / offline_name / "run" / "checkpoints" / "last.ckpt"
    online = run(f"{run_name(args.dataset, 'AWACfinetune', seed, args.env_steps)}_from{args.offline_steps}",
                 "configs/awac/finetune_locomotion.yaml", args,
                 ["--data.offline_dataset_id", args.dataset, "--data.eval_episodes", str(args.eval_episodes), *data],
                 args.env_steps, start=("--finetune_from", str(ckpt)))
    offline_score = offline["curve"][-1][1]
    return {"offline": offline, "online": online,
            "env_curve": [(0, offline_score)] + [(step, score) for step, score in online["curve"]]}


def sac_scratch(seed: int, args) -> dict:
    updates = args.env_steps - SAC_WARMUP
    online = run(run_name(args.dataset, "SACscratch", seed, args.env_steps), SAC_CONFIG, args,
                 ["--data.env_id", args.dataset, "--data.seed", str(seed), "--data.eval_episodes",
                  str(args.eval_episodes)], updates)
    return {"online": online, "env_curve": [(step + SAC_WARMUP, score) for step, score in online["curve"]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="lit-offrl/hopper/medium-replay-v0")
    parser.add_argument("--offline-steps", type=int, default=20_000)
    parser.add_argument("--env-steps", type=int, default=40_000)
    parser.add_argument("--eval-every", type=int, default=5_000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch threads per fit (default: the CPUs / --jobs)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if (args.env_steps <= SAC_WARMUP or (args.env_steps - SAC_WARMUP) % args.eval_every
            or args.env_steps % args.eval_every):
        parser.error(f"--env-steps must exceed SAC's {SAC_WARMUP} warmup steps, and both it and --env-steps - "
                     f"{SAC_WARMUP} must be multiples of --eval-every")

    ensure_datasets([args.dataset])
    jobs = [("AWAC", s) for s in args.seeds] + [("SAC", s) for s in args.seeds]
    with ThreadPoolExecutor(args.jobs) as pool:
        finished = list(pool.map(lambda job: (awac_chain if job[0] == "AWAC" else sac_scratch)(job[1], args), jobs))
    results: dict = {"AWAC offline -> online": {}, "SAC from scratch": {}}
    for (kind, seed), outcome in zip(jobs, finished):
        results["AWAC offline -> online" if kind == "AWAC" else "SAC from scratch"][str(seed)] = outcome
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"dataset_id": args.dataset, "offline_steps": args.offline_steps,
                                    "env_steps": args.env_steps, "eval_every": args.eval_every,
                                    "eval_episodes": args.eval_episodes, "seeds": args.seeds, "results": results},
                                   indent=2))
    print(f"\n{args.dataset}: normalized score after N online environment steps, {len(args.seeds)} seeds "
          f"(mean ± std), {args.eval_episodes} episodes\n")
    steps = sorted({s for by_seed in results.values() for r in by_seed.values() for s, _ in r["env_curve"]})
    print("| method | " + " | ".join(f"{s // 1000}k" for s in steps) + " |")
    print("|---|" + "---|" * len(steps))
    for method, by_seed in results.items():
        cells = []
        curves = [dict(r["env_curve"]) for r in by_seed.values()]
        for s in steps:
            values = np.array([c[s] for c in curves if s in c], dtype=float)
            cells.append(f"{values.mean():.1f} ± {values.std():.1f}" if len(values) else "")
        print(f"| {method} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
