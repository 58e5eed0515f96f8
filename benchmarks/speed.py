"""Updates per second: lit_offrl's algorithms through the Lightning Trainer, side by side with a plain PyTorch
TD3+BC loop (the reference: same networks, batch size and sampling, no framework) in the same process.

    python benchmarks/speed.py --updates 3000 [--device cpu|cuda] [--dataset-id lit-offrl/pointmaze/umaze-v0]

The first `--warmup` updates of each measurement are not timed. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import time

import lightning as L
import torch
from torch import nn

from lit_offrl.algos import BC, IQL, TD3BC
from lit_offrl.data.datamodule import OfflineDataModule


def plain_td3bc(transitions, updates: int, warmup: int, device: str, batch_size: int = 256) -> float:
    """A minimal TD3+BC loop in plain PyTorch (reference for framework overhead)."""
    obs_dim, action_dim = transitions.obs.shape[1], transitions.action.shape[1]

    def net(i, o, out=None):
        layers = [nn.Linear(i, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, o)]
        return nn.Sequential(*layers, *([out] if out else [])).to(device)

    actor, q1, q2 = net(obs_dim, action_dim, nn.Tanh()), net(obs_dim + action_dim, 1), net(obs_dim + action_dim, 1)
    actor_t, q1_t, q2_t = (
        [m for m in (net(obs_dim, action_dim, nn.Tanh()), net(obs_dim + action_dim, 1), net(obs_dim + action_dim, 1))])
    for t, s in ((actor_t, actor), (q1_t, q1), (q2_t, q2)):
        t.load_state_dict(s.state_dict())
    actor_opt = torch.optim.Adam(actor.parameters(), lr=3e-4)
    critic_opt = torch.optim.Adam([*q1.parameters(), *q2.parameters()], lr=3e-4)
    data = [t.to(device) for t in (transitions.obs, transitions.action, transitions.reward, transitions.next_obs,
                                   transitions.terminal)]
    n = data[0].shape[0]
    start = None
    for step in range(updates):
        if step == warmup:
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        idx = torch.randint(n, (batch_size,), device=device)
        s, a, r, s2, d = (t[idx] for t in data)
        with torch.no_grad():
            noise = (torch.randn_like(a) * 0.2).clamp(-0.5, 0.5)
            a2 = (actor_t(s2) + noise).clamp(-1, 1)
            sa2 = torch.cat([s2, a2], 1)
            y = r + 0.99 * (1 - d) * torch.min(q1_t(sa2), q2_t(sa2)).squeeze(-1)
        sa = torch.cat([s, a], 1)
        critic_loss = ((q1(sa).squeeze(-1) - y) ** 2).mean() + ((q2(sa).squeeze(-1) - y) ** 2).mean()
        critic_opt.zero_grad()
        critic_loss.backward()
        critic_opt.step()
        if step % 2 == 0:
            pi = actor(s)
            q = q1(torch.cat([s, pi], 1))
            actor_loss = -2.5 / q.abs().mean().detach() * q.mean() + ((pi - a) ** 2).mean()
            actor_opt.zero_grad()
            actor_loss.backward()
            actor_opt.step()
            with torch.no_grad():
                for t, src in ((actor_t, actor), (q1_t, q1), (q2_t, q2)):
                    for pt, ps in zip(t.parameters(), src.parameters()):
                        pt.lerp_(ps, 0.005)
    if device == "cuda":
        torch.cuda.synchronize()
    return (updates - warmup) / (time.perf_counter() - start)


class UpdateTimer(L.Callback):
    def __init__(self, warmup: int):
        self.warmup, self.start, self.rate = warmup, None, None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if pl_module._updates == self.warmup:
            if pl_module.device.type == "cuda":
                torch.cuda.synchronize()
            self.start = (time.perf_counter(), pl_module._updates)

    def on_train_end(self, trainer, pl_module):
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
        self.rate = (pl_module._updates - self.start[1]) / (time.perf_counter() - self.start[0])


def lightning_rate(model_cls, dm, updates: int, warmup: int, device: str, precision: str) -> float:
    L.seed_everything(0, verbose=False)
    model = model_cls(dm.obs_dim, dm.action_dim)
    timer = UpdateTimer(warmup)
    trainer = L.Trainer(max_steps=updates, max_epochs=-1, accelerator=device, devices=1, precision=precision,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, callbacks=[timer], log_every_n_steps=100)
    trainer.fit(model, dm)
    return timer.rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--dataset-id", default="lit-offrl/pointmaze/umaze-v0")
    args = parser.parse_args()
    dm = OfflineDataModule(args.dataset_id, eval_episodes=0)
    dm.setup("fit")
    torch.manual_seed(0)
    rows = [("plain PyTorch TD3+BC (reference)", plain_td3bc(dm.transitions, args.updates, args.warmup, args.device))]
    for cls in (TD3BC, IQL, BC):
        rows.append((f"lit_offrl {cls.__name__} (Trainer, {args.precision})",
                     lightning_rate(cls, dm, args.updates, args.warmup, args.device, args.precision)))
    print(f"\n{args.dataset_id}, batch 256, {args.updates - args.warmup} timed updates, device {args.device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| loop | updates/s |\n|---|---|")
    for name, rate in rows:
        print(f"| {name} | {rate:.0f} |")


if __name__ == "__main__":
    main()
