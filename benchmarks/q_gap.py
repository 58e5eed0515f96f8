"""A trained critic on the data's own rows: Q on the data's actions, at the policy's actions, and its TD residual.

For each run folder (benchmarks/runs/<name>/run, with config.yaml and checkpoints/last.ckpt), take 4,096 dataset rows
spread evenly over the data (observations and rewards as the fit's data module transformed them) and print the mean of
  Q(s, a)                 the data's action (min over the critic ensemble, as the algorithms back up)
  Q(s, pi(s))             the policy's deterministic action
  Q(s', a' ~ pi(.|s'))    a sampled next action, as the TD target of SAC-style critics uses it
  r + gamma (1 - d) Q(s', a') - Q(s, a)   the TD residual: > 0 while the values are still climbing toward their target.

    python benchmarks/q_gap.py benchmarks/runs/lit-offrl_maze2d_medium-v0_{CQL,SAC,BRAC}_seed0_20000/run
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from q_error import load

ROWS = 4096


@torch.no_grad()
def measure(run: Path) -> dict:
    model, dm = load(run)
    gamma = float(model.hparams.gamma)
    batch = dm.transitions.batch(torch.arange(ROWS) * (len(dm.transitions) // ROWS))

    def q(obs, action):
        return model.critic(obs, action.float()).min(0).values

    torch.manual_seed(0)
    q_data = q(batch.obs, batch.action)
    q_next = q(batch.next_obs, model.policy_action(batch.next_obs, False))
    target = batch.reward + gamma * (1.0 - batch.terminal.float()) * q_next
    return {"q_data": q_data.mean().item(), "q_pi": q(batch.obs, model.policy_action(batch.obs, True)).mean().item(),
            "q_next_sampled": q_next.mean().item(), "td_residual": (target - q_data).mean().item(),
            "mean_reward": batch.reward.mean().item()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    print("| run | Q(s, a) | Q(s, pi(s)) | Q(s', a' ~ pi) | TD residual | mean reward |")
    print("|---|---|---|---|---|---|")
    for run in args.runs:
        m = measure(run)
        print(f"| {run.parent.name} | {m['q_data']:.2f} | {m['q_pi']:.2f} | {m['q_next_sampled']:.2f} "
              f"| {m['td_residual']:.2f} | {m['mean_reward']:.4f} |")


if __name__ == "__main__":
    main()
