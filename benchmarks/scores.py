"""Normalized scores of any set of algorithms on any set of datasets, several seeds, with learning curves.

    python benchmarks/scores.py --algos BC TD3 SAC TD3BC IQL --datasets lit-offrl/maze2d/umaze-v0 \
        --seeds 0 1 2 --steps 20000 --eval-every 5000 --jobs 2 --out benchmarks/results/algos1_maze2d_umaze.json

Each run is a real `cli.py fit --config configs/<algo>/<family>.yaml` (family: `pointmaze` for the maze
datasets, `locomotion` otherwise), evaluated every `--eval-every` updates on `--eval-episodes` episodes of the
dataset's evaluation env; the TensorBoard logs go to benchmarks/runs/<dataset>_<algo>_seed<k>_<steps>/run (read by
benchmarks/plot.py). `--jobs` runs that many fits at once, splitting the CPU threads between them. A run whose
log already holds the final evaluation is not repeated; one that was killed resumes from its last checkpoint
(written every `--eval-every` updates) with `--ckpt_path last`, so a long campaign continues across sessions (its
"seconds" then count the time between them too). Prints a markdown table (final score, mean ± std over
seeds) and writes every curve as JSON. A variant of one algorithm (extra CLI arguments after `--`) gets its own
run folders with `--label`, e.g. `--algos IQL --label IQLconstlr -- --model.actor_cosine_decay false`.

`--impl d3rlpy` trains d3rlpy 2.x instead (TD3BC, IQL, AWAC, BC; `benchmarks/d3rlpy_train.py`, in d3rlpy's own
virtual environment, made on first use as `throughput.py` makes it) on the same dataset's raw arrays, saves its greedy
policy every `--eval-every` updates, and evaluates each saved policy here with lit_offrl's evaluation (the same
episodes, seeds and reference returns as a lit_offrl run); its rows are named d3rlpy<ALGO>:

    python benchmarks/scores.py --impl d3rlpy --algos TD3BC IQL --datasets lit-offrl/hopper/medium-replay-v0 \
        --seeds 0 1 2 --steps 20000 --eval-every 5000 --eval-episodes 10 --jobs 2 --out benchmarks/results/X.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
RUNS = REPO / "benchmarks" / "runs"
CONFIG_DIRS = {"TD3BC": "td3bc", "LatentEM": "latent_em", "ReBRAC": "rebrac"}


ADROIT_TASKS = ("pen", "door", "hammer", "relocate")


def family_of(dataset_id: str) -> str:
    """The config family of a dataset id: pointmaze (maze2d too), antmaze, adroit, kitchen or locomotion."""
    parts = dataset_id.split("/")
    if "maze2d" in dataset_id or "pointmaze" in dataset_id:
        return "pointmaze"
    if "antmaze" in dataset_id:
        return "antmaze"
    if "kitchen" in dataset_id:
        return "kitchen"
    return "adroit" if len(parts) > 1 and parts[1] in ADROIT_TASKS else "locomotion"


def config_for(algo: str, dataset_id: str) -> Path:
    family = family_of(dataset_id)
    path = REPO / "configs" / CONFIG_DIRS.get(algo, algo.lower()) / f"{family}.yaml"
    if not path.exists():
        sys.exit(f"no config {path.relative_to(REPO)} for {algo} on {dataset_id}")
    return path


def phase_args(algo: str, steps: int) -> list[str]:
    """Phase lengths for a run of `steps` updates that keep the default split between phases (BRAC: 300k behavior of
    800k updates, the Q term after 20k of the 500k agent updates; PLAS: 500k VAE of 1M; LatentEM: 200k VAE and 200k
    return model of 1M)."""
    if algo == "BRAC":
        return ["--model.behavior_steps", str(int(steps * 0.375)), "--model.warm_start", str(int(steps * 0.025))]
    if algo == "PLAS":
        return ["--model.vae_pretrain_steps", str(steps // 2)]
    if algo == "LatentEM":
        return ["--model.vae_steps", str(steps // 5), "--model.return_steps", str(steps // 5)]
    return []


def run_name(dataset_id: str, algo: str, seed: int, steps: int) -> str:
    return f"{dataset_id.replace('/', '_')}_{algo}_seed{seed}_{steps}"


def read_log(run_dir: Path, tags: tuple[str, ...] = ("val/normalized_score",)
             ) -> tuple[dict[str, list[tuple[int, float]]], float | None]:
    """One read of a run's TensorBoard log: ({tag: [(updates, value), ...]} for the `tags` it holds, seconds from its
    first to its last event). The seconds are the fit's wall time less process start-up, so a finished run that
    is not repeated still reports its time."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if not run_dir.exists():
        return {}, None
    scalars = EventAccumulator(str(run_dir)).Reload()
    present = scalars.Tags()["scalars"]
    # A resumed run may log an update twice (evaluated, killed before the checkpoint, re-run): the later value counts.
    found = {tag: sorted({int(e.step) + 1: float(e.value)
                          for e in sorted(scalars.Scalars(tag), key=lambda e: e.wall_time)}.items())
             for tag in tags if tag in present}
    times = [e.wall_time for tag in present for e in scalars.Scalars(tag)]
    return found, (max(times) - min(times) if times else None)


def curves(run_dir: Path) -> tuple[dict, float | None]:
    """One read of a run's log: ({"curve": the normalized-score curve, "success_curve": the `val/success_rate`
    curve, only where the dataset has the domain's own measure (AntMaze goal reached, Adroit success)}, the logged
    wall time in seconds)."""
    found, seconds = read_log(run_dir, ("val/normalized_score", "val/success_rate"))
    success = found.get("val/success_rate", [])
    return {"curve": found.get("val/normalized_score", []), **({"success_curve": success} if success else {})}, seconds


def ensure_datasets(dataset_ids: list[str]) -> None:
    """Open each dataset once here, before any fit starts: one that is not in MINARI_DATASETS_PATH is built by its
    recipe in this process (its progress on this terminal, once), not inside the first fit, whose output is
    captured; an id that cannot be had stops the script with the data layer's one-line reason."""
    from lit_offrl.data import minari_io
    from lit_offrl.errors import UserError

    for dataset_id in dataset_ids:
        try:
            minari_io.resolve(dataset_id)
        except UserError as error:
            sys.exit(str(error))


def cli_fit(name: str, config: Path, args, extra: list[str], steps: int, start: tuple[str, ...] = ()) -> dict:
    """One `cli.py fit --config config EXTRA` of `steps` updates logged to benchmarks/runs/<name>/run, evaluated every
    `--eval-every` updates. Not repeated when its log holds the final evaluation; resumed with `--ckpt_path last`
    from its last checkpoint (written every `--eval-every` updates) when it was killed; `start`: arguments for a
    fresh start only (e.g. `--finetune_from`)."""
    logged, logged_seconds = curves(RUNS / name / "run")
    if logged["curve"] and logged["curve"][-1][0] >= steps:
        return {**logged, "seconds": logged_seconds, "cached": True}
    resume = (RUNS / name / "run" / "checkpoints" / "last.ckpt").exists()
    if (RUNS / name).exists() and not resume:
        import shutil

        shutil.rmtree(RUNS / name)
    threads = args.threads or max(1, (os.cpu_count() or 2) // args.jobs)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cmd = [sys.executable, str(REPO / "cli.py"), "fit", "--config", str(config), *extra,
           "--trainer.max_steps", str(steps), "--trainer.val_check_interval", str(args.eval_every),
           "--trainer.enable_progress_bar", "false", "--checkpoint.every_n_updates", str(args.eval_every),
           "--trainer.logger.init_args.save_dir", str(RUNS), "--trainer.logger.init_args.name", name,
           "--trainer.logger.init_args.version", "run", *(["--ckpt_path", "last"] if resume else start)]
    begin = time.time()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)
    seconds = time.time() - begin
    if proc.returncode != 0:
        print(f"{name} failed ({seconds:.0f} s):\n{proc.stderr[-2500:]}", flush=True)
        return {**curves(RUNS / name / "run")[0], "seconds": seconds, "failed": True}
    logged = curves(RUNS / name / "run")[0]
    success = logged.get("success_curve")
    print(f"{name}: final normalized score {logged['curve'][-1][1]:.1f}"
          + (f", success rate {success[-1][1]:.2f}" if success else "") + f" ({seconds:.0f} s)", flush=True)
    return {**logged, "seconds": seconds, **({"resumed": True} if resume else {})}


def fit(algo: str, dataset_id: str, seed: int, args) -> dict:
    """`configs/<algo>/<family>.yaml` on the dataset, one seed, `--steps` updates (run folder: run_name)."""
    return cli_fit(run_name(dataset_id, args.label or algo, seed, args.steps), config_for(algo, dataset_id), args,
                   ["--data.dataset_id", dataset_id, "--data.seed", str(seed), "--data.eval_episodes",
                    str(args.eval_episodes), *phase_args(algo, args.steps), *args.extra], args.steps)


def d3rlpy_arrays(dataset_id: str) -> Path:
    """The dataset's raw transitions (observations and rewards as recorded, no lit_offrl normalization) as the
    per-step arrays d3rlpy's MDPDataset takes, written once; each episode's last step is a terminal or a timeout."""
    path = RUNS / "d3rlpy_arrays" / f"{dataset_id.replace('/', '_')}.npz"
    if path.exists():
        return path
    from lit_offrl.data import minari_io

    data = minari_io.load(minari_io.resolve(dataset_id))
    ends = np.zeros(len(data.rewards), dtype=np.float32)
    ends[np.asarray(data.episode_ends) - 1] = 1.0
    terminals = np.asarray(data.terminals, dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.npz")
    np.savez(partial, observations=data.observations, actions=data.actions, rewards=data.rewards,
             terminals=terminals, timeouts=np.clip(ends - terminals, 0.0, 1.0))
    partial.rename(path)
    return path


def evaluate_policy_file(policy_path: Path, dataset_id: str, episodes: int) -> float:
    """Mean normalized score of a TorchScript policy (raw observations in, env actions out) over the evaluation
    episodes a lit_offrl run of `dataset_id` with `--data.eval_episodes episodes` plays."""
    import torch

    from lit_offrl.data.datamodule import OfflineDataModule
    from lit_offrl.evaluation.rollout import make_vector_env, rollout_episodes

    dm = OfflineDataModule(dataset_id, eval_episodes=episodes)
    policy = torch.jit.load(str(policy_path))
    envs = make_vector_env(dm.make_eval_env, episodes)
    low, high = envs.single_action_space.low, envs.single_action_space.high
    try:
        with torch.no_grad():
            outcomes = rollout_episodes(
                lambda obs: np.clip(policy(torch.as_tensor(obs, dtype=torch.float32)).numpy(), low, high),
                envs, dm.episode_seeds(), dm.observation_space)
    finally:
        envs.close()
    score = dm.normalized_score(torch.as_tensor(outcomes.returns))
    if score is None:
        raise SystemExit(f"{dataset_id} has no reference returns: no normalized score to compare")
    return float(score.mean())


def fit_d3rlpy(algo: str, dataset_id: str, seed: int, args) -> dict:
    name = run_name(dataset_id, f"d3rlpy{algo}", seed, args.steps)
    out = RUNS / name
    done = out / "curve.json"
    if done.exists():
        return {**json.loads(done.read_text()), "cached": True}
    sys.path.insert(0, str(REPO / "benchmarks"))
    from throughput import ensure_d3rlpy_venv

    python = ensure_d3rlpy_venv()
    threads = args.threads or max(1, (os.cpu_count() or 2) // args.jobs)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cmd = [str(python), str(REPO / "benchmarks" / "d3rlpy_train.py"), algo, str(d3rlpy_arrays(dataset_id)), str(out),
           "--steps", str(args.steps), "--eval-every", str(args.eval_every), "--seed", str(seed)]
    start = time.time()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        print(f"{name} failed ({time.time() - start:.0f} s):\n{proc.stderr[-2500:]}", flush=True)
        return {"curve": [], "seconds": time.time() - start, "failed": True}
    train_seconds = time.time() - start
    points = [(step, evaluate_policy_file(out / f"policy_{step}.pt", dataset_id, args.eval_episodes))
              for step in range(args.eval_every, args.steps + 1, args.eval_every)]
    run = {"curve": points, "seconds": time.time() - start, "train_seconds": train_seconds}
    done.write_text(json.dumps(run))
    print(f"{name}: final normalized score {points[-1][1]:.1f} ({run['seconds']:.0f} s)", flush=True)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", nargs="+", required=True)
    parser.add_argument("--datasets", nargs="+", default=["lit-offrl/maze2d/umaze-v0"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--eval-every", type=int, default=5_000)
    parser.add_argument("--eval-episodes", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch threads per fit (default: the CPUs / --jobs)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--label", default=None, help="one algorithm run with other settings (the extra arguments): "
                        "its name in run folders and tables, letters and digits (e.g. IQLconstlr)")
    parser.add_argument("--impl", choices=("lit_offrl", "d3rlpy"), default="lit_offrl",
                        help="d3rlpy: train d3rlpy (its reproduction settings) and score it with lit_offrl's evaluation")
    parser.add_argument("extra", nargs="*", help="extra CLI arguments after --, passed to every fit")
    args = parser.parse_args()
    if args.impl == "d3rlpy" and (args.label or args.extra):
        parser.error("--impl d3rlpy runs d3rlpy's own settings: no --label or extra lit_offrl arguments")
    if args.label is not None and (len(args.algos) != 1 or not args.label.isalnum()):
        parser.error("--label names one algorithm's variant: give one --algos and a label of letters and digits")

    ensure_datasets(args.datasets)
    jobs = [(algo, dataset_id, seed) for dataset_id in args.datasets for algo in args.algos for seed in args.seeds]
    with ThreadPoolExecutor(args.jobs) as pool:
        finished = list(pool.map(lambda job: (fit if args.impl == "lit_offrl" else fit_d3rlpy)(*job, args), jobs))
    results: dict = {}
    for (algo, dataset_id, seed), run in zip(jobs, finished):
        name = args.label or (algo if args.impl == "lit_offrl" else f"d3rlpy{algo}")
        results.setdefault(dataset_id, {}).setdefault(name, {})[str(seed)] = run
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"steps": args.steps, "eval_every": args.eval_every, "seeds": args.seeds,
                                    "eval_episodes": args.eval_episodes, "extra": args.extra, "impl": args.impl,
                                    "results": results},
                                   indent=2))
    for dataset_id, by_algo in results.items():
        print(f"\n{dataset_id}, {args.steps} updates, {len(args.seeds)} seeds, {args.eval_episodes} episodes\n")
        has_success = any(r.get("success_curve") for by_seed in by_algo.values() for r in by_seed.values())
        print("| algorithm | normalized score (mean ± std) | per seed |"
              + (" success rate, mean (per seed) |\n|---|---|---|---|" if has_success else "\n|---|---|---|"))
        for algo, by_seed in by_algo.items():
            finals = np.array([r["curve"][-1][1] for r in by_seed.values() if r["curve"] and not r.get("failed")])
            if len(finals) == 0:
                print(f"| {algo} | failed | |")
                continue
            line = f"| {algo} | {finals.mean():.1f} ± {finals.std():.1f} | {', '.join(f'{x:.1f}' for x in finals)} |"
            success = [r["success_curve"][-1][1] for r in by_seed.values()
                       if r.get("success_curve") and not r.get("failed")]
            if success:  # the domain's own measure beside the normalized score
                line += f" {np.mean(success):.2f} ({', '.join(f'{x:.2f}' for x in success)}) |"
            elif has_success:
                line += " - |"
            print(line)


if __name__ == "__main__":
    main()
