"""Gradient updates per second of lit_offrl's algorithms, side by side with a plain PyTorch loop of the same math and
with d3rlpy 2.x, all in one invocation; each measurement runs in its own child process (same data, same batch size).

    python benchmarks/throughput.py                         # TD3BC, IQL, CQL on CPU: lit_offrl, plain PyTorch, d3rlpy
    python benchmarks/throughput.py --algos TD3BC --no-d3rlpy --updates 2000
    python benchmarks/throughput.py --device cuda           # the same on a GPU
    python benchmarks/throughput.py --ddp 2                 # DDP: updates/s per process and scaling efficiency
    python benchmarks/throughput.py --load-only             # time and peak memory of flattening the dataset

* lit_offrl: `Trainer.fit` with the algorithm's defaults (fused Adam, device-resident batches, vectorized critics).
* plain PyTorch: the obvious loop a researcher writes (as CORL does): `nn.Sequential` networks, one `Adam` per
  network group, `torch.randint` + indexing for batches; written here, not taken from CORL.
* d3rlpy: its own virtual environment (it pins an older gymnasium), made on first use by this script at
  `benchmarks/.d3rlpy-venv` with the same CPU torch; it is fed the same arrays through an .npz file.

The first `--warmup` updates of each measurement are not timed. Peak memory is the child's peak resident set
size on CPU (it includes the Python interpreter and the dataset) and `torch.cuda.max_memory_allocated` on a GPU.
Prints a markdown table and writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
D3RLPY_VENV = REPO / "benchmarks" / ".d3rlpy-venv"
ALGOS = ("TD3BC", "IQL", "CQL")
SLOW_ALGOS = {"CQL": 0.1}  # fraction of --updates / --warmup these run


# ------------------------------------------------------------------------------------------ measurements
def proc_status_mb(field: str) -> float:
    """VmHWM (peak) or VmRSS (now) of this process in MB. Not ru_maxrss: Linux keeps that across exec, so a child
    would report its parent's peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_memory_mb(device: str) -> float:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return proc_status_mb("VmHWM")


def timed_loop(step, updates: int, warmup: int, device: str) -> float:
    """Updates/s of `step(i)` over updates warmup..updates-1."""
    import torch

    for i in range(warmup):
        step(i)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(warmup, updates):
        step(i)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (updates - warmup) / (time.perf_counter() - start)


def plain_step(algo: str, data, device: str, batch_size: int, hidden: tuple[int, ...] | None = None):
    """One update of `algo` written as plain PyTorch; returns the step function. `hidden` replaces the 2x256 hidden
    layers of TD3+BC's and IQL's networks (the overhead-bound regime: e.g. 32 32)."""
    import math

    import torch
    from torch import nn

    obs, action, reward, next_obs, terminal = data
    n, obs_dim, action_dim = obs.shape[0], obs.shape[1], action.shape[1]

    default_hidden = tuple(hidden or (256, 256))

    def net(inp, out, hidden=default_hidden, last=None):
        layers, dims = [], [inp, *hidden]
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(dims[-1], out))
        return nn.Sequential(*layers, *([last] if last is not None else [])).to(device)

    def copy(module):
        import copy as _copy
        target = _copy.deepcopy(module)
        target.requires_grad_(False)
        return target

    def polyak(target, source, tau=0.005):
        with torch.no_grad():
            for pt, ps in zip(target.parameters(), source.parameters()):
                pt.lerp_(ps, tau)

    def sample():
        idx = torch.randint(n, (batch_size,), device=device)
        return obs[idx], action[idx], reward[idx], next_obs[idx], terminal[idx]

    if algo == "TD3BC":
        actor, q1, q2 = net(obs_dim, action_dim, last=nn.Tanh()), net(obs_dim + action_dim, 1), net(obs_dim + action_dim, 1)
        actor_t, q1_t, q2_t = copy(actor), copy(q1), copy(q2)
        actor_opt = torch.optim.Adam(actor.parameters(), lr=3e-4)
        critic_opt = torch.optim.Adam([*q1.parameters(), *q2.parameters()], lr=3e-4)

        def step(i):
            s, a, r, s2, d = sample()
            with torch.no_grad():
                a2 = (actor_t(s2) + (torch.randn_like(a) * 0.2).clamp(-0.5, 0.5)).clamp(-1, 1)
                sa2 = torch.cat([s2, a2], 1)
                y = r + 0.99 * (1 - d) * torch.min(q1_t(sa2), q2_t(sa2)).squeeze(-1)
            sa = torch.cat([s, a], 1)
            critic_loss = ((q1(sa).squeeze(-1) - y) ** 2).mean() + ((q2(sa).squeeze(-1) - y) ** 2).mean()
            critic_opt.zero_grad()
            critic_loss.backward()
            critic_opt.step()
            if i % 2 == 1:
                pi = actor(s)
                q = q1(torch.cat([s, pi], 1))
                actor_loss = -2.5 / q.abs().mean().detach() * q.mean() + ((pi - a) ** 2).mean()
                actor_opt.zero_grad()
                actor_loss.backward()
                actor_opt.step()
                for t, src in ((actor_t, actor), (q1_t, q1), (q2_t, q2)):
                    polyak(t, src)
        return step

    if algo == "IQL":
        mean_net, log_std = net(obs_dim, action_dim, last=nn.Tanh()), torch.zeros(action_dim, device=device,
                                                                                 requires_grad=True)
        q1, q2, value = net(obs_dim + action_dim, 1), net(obs_dim + action_dim, 1), net(obs_dim, 1)
        q1_t, q2_t = copy(q1), copy(q2)
        actor_opt = torch.optim.Adam([*mean_net.parameters(), log_std], lr=3e-4)
        critic_opt = torch.optim.Adam([*q1.parameters(), *q2.parameters()], lr=3e-4)
        value_opt = torch.optim.Adam(value.parameters(), lr=3e-4)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(actor_opt, 1_000_000)

        def step(i):
            s, a, r, s2, d = sample()
            sa = torch.cat([s, a], 1)
            with torch.no_grad():
                q_t = torch.min(q1_t(sa), q2_t(sa)).squeeze(-1)
            v = value(s).squeeze(-1)
            u = q_t - v
            value_loss = (torch.abs(0.7 - (u < 0).float()) * u ** 2).mean()
            value_opt.zero_grad()
            value_loss.backward()
            value_opt.step()
            with torch.no_grad():
                y = r + 0.99 * (1 - d) * value(s2).squeeze(-1)
            critic_loss = (((q1(sa).squeeze(-1) - y) ** 2).mean() + ((q2(sa).squeeze(-1) - y) ** 2).mean()) / 2
            critic_opt.zero_grad()
            critic_loss.backward()
            critic_opt.step()
            weight = torch.exp(3.0 * (q_t - v.detach())).clamp(max=100.0)
            log_prob = torch.distributions.Normal(mean_net(s), log_std.clamp(-20, 2).exp()).log_prob(a).sum(-1)
            actor_loss = -(weight * log_prob).mean()
            actor_opt.zero_grad()
            actor_loss.backward()
            actor_opt.step()
            schedule.step()
            polyak(q1_t, q1)
            polyak(q2_t, q2)
        return step

    if algo == "CQL":
        hidden, num_samples = (256, 256, 256), 10
        actor = net(obs_dim, 2 * action_dim, hidden)
        q1, q2 = net(obs_dim + action_dim, 1, hidden), net(obs_dim + action_dim, 1, hidden)
        q1_t, q2_t = copy(q1), copy(q2)
        log_alpha = torch.zeros((), device=device, requires_grad=True)
        actor_opt = torch.optim.Adam(actor.parameters(), lr=3e-5)
        critic_opt = torch.optim.Adam([*q1.parameters(), *q2.parameters()], lr=3e-4)
        alpha_opt = torch.optim.Adam([log_alpha], lr=3e-4)

        def policy(states):
            mean, log_std = actor(states).chunk(2, -1)
            dist = torch.distributions.Normal(mean, log_std.clamp(-20, 2).exp())
            u = dist.rsample()
            log_prob = (dist.log_prob(u) - 2 * (math.log(2) - u - nn.functional.softplus(-2 * u))).sum(-1)
            return torch.tanh(u), log_prob

        def q_both(states, actions):
            sa = torch.cat([states, actions], -1)
            return q1(sa).squeeze(-1), q2(sa).squeeze(-1)

        def step(i):
            s, a, r, s2, d = sample()
            pi, log_pi = policy(s)
            alpha_loss = -(log_alpha * (log_pi.detach() - action_dim)).mean()
            alpha_opt.zero_grad()
            alpha_loss.backward()
            alpha_opt.step()
            alpha = log_alpha.exp().detach()
            actor_loss = (alpha * log_pi - torch.min(*q_both(s, pi))).mean()
            actor_opt.zero_grad()
            actor_loss.backward()
            actor_opt.step()
            with torch.no_grad():
                a2, _ = policy(s2)
                sa2 = torch.cat([s2, a2], 1)
                y = r + 0.99 * (1 - d) * torch.min(q1_t(sa2), q2_t(sa2)).squeeze(-1)
            q1_data, q2_data = q_both(s, a)
            td_loss = ((q1_data - y) ** 2).mean() + ((q2_data - y) ** 2).mean()
            rep_s = s.repeat_interleave(num_samples, 0)
            rep_s2 = s2.repeat_interleave(num_samples, 0)
            random_a = torch.empty(batch_size * num_samples, action_dim, device=device).uniform_(-1, 1)
            with torch.no_grad():
                cur_a, cur_log_pi = policy(rep_s)
                next_a, next_log_pi = policy(rep_s2)
            # As CORL: each critic once on each of the three action sets (6 critic evaluations).
            q_rand, q_cur, q_next = q_both(rep_s, random_a), q_both(rep_s, cur_a), q_both(rep_s, next_a)
            penalty = 0.0
            for i, q_data in enumerate((q1_data, q2_data)):
                lse = torch.logsumexp(torch.cat([q_rand[i].view(batch_size, num_samples) - action_dim * math.log(0.5),
                                                 q_cur[i].view(batch_size, num_samples) - cur_log_pi.view(batch_size, -1),
                                                 q_next[i].view(batch_size, num_samples) - next_log_pi.view(batch_size, -1)],
                                                1), 1)
                penalty = penalty + 10.0 * (lse - q_data).mean()
            critic_loss = td_loss + penalty
            critic_opt.zero_grad()
            critic_loss.backward()
            critic_opt.step()
            polyak(q1_t, q1)
            polyak(q2_t, q2)
        return step

    raise SystemExit(f"no plain loop for {algo}")


LIT_KWARGS = {"CQL": {}}  # each algorithm's defaults are what the plain loops above mirror


def worker(args) -> dict:
    import torch

    torch.manual_seed(0)
    from lit_offrl.data.datamodule import OfflineDataModule

    impl, algo = args.worker.split(":")
    if impl.endswith("-bf16"):  # the same column under bf16 autocast (Lightning's bf16-mixed)
        impl, args.precision = impl[:-len("-bf16")], "bf16-mixed"
    per_step = max(args.updates_per_step, 1) if impl in ("lit-k", "lit-cu") else 1
    dm = OfflineDataModule(args.dataset_id, batch_size=args.batch_size, eval_episodes=0, updates_per_step=per_step)
    dm.setup("fit")
    if impl in ("plain", "plain-compiled"):
        t = dm.transitions.to(args.device)
        data = (t.obs, t.action, t.reward, t.next_obs, t.terminal)
        step = plain_step(algo, data, args.device, args.batch_size, args.hidden)
        if impl == "plain-compiled":  # the whole step: Dynamo splits it at backward() and the optimizer steps
            step = torch.compile(step, mode=args.compile_mode)
        rate = timed_loop(step, args.updates, args.warmup, args.device)
    else:
        import lightning as L

        import lit_offrl.algos as algos

        class Timer(L.Callback):
            start = None

            def on_train_start(self, trainer, module):
                self.began = time.perf_counter()

            def on_train_batch_start(self, trainer, module, batch, batch_idx):
                if module._updates == args.warmup:  # --warmup and --updates are multiples of updates_per_step
                    if module.device.type == "cuda":
                        torch.cuda.synchronize()
                    self.start = (time.perf_counter(), module._updates)

            def on_train_end(self, trainer, module):
                if module.device.type == "cuda":
                    torch.cuda.synchronize()
                self.rate = (module._updates - self.start[1]) / (time.perf_counter() - self.start[0])
                # the warmup updates' time beyond what they would take at the timed rate: compilation, first calls
                self.startup = self.start[0] - self.began - self.start[1] / self.rate

        timer = Timer()
        callbacks = [timer]
        if impl == "compiled":
            from lit_offrl.callbacks import CompileNetworks

            callbacks.append(CompileNetworks(mode=args.compile_mode))
        if impl == "lit-cu":
            from lit_offrl.callbacks import CompileUpdate

            callbacks.append(CompileUpdate(mode=None if args.compile_mode == "default" else args.compile_mode))
        kwargs = {**LIT_KWARGS.get(algo, {}), **({"hidden_dims": tuple(args.hidden)} if args.hidden else {})}
        model = getattr(algos, algo)(dm.obs_dim, dm.action_dim, **kwargs)
        trainer = L.Trainer(max_steps=args.updates, max_epochs=-1, accelerator="gpu" if args.device.startswith("cuda")
                            else "cpu", devices=args.ddp or 1, strategy="ddp" if args.ddp else "auto",
                            precision=args.precision, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                            callbacks=callbacks, log_every_n_steps=100)
        trainer.fit(model, dm)
        if trainer.global_rank != 0:
            sys.exit(0)
        rate = timer.rate
        return {"updates_per_sec": rate, "peak_memory_mb": peak_memory_mb(args.device),
                "startup_seconds": timer.startup}
    return {"updates_per_sec": rate, "peak_memory_mb": peak_memory_mb(args.device)}


def load_worker(args) -> dict:
    """Flatten the dataset into arrays: seconds, and the peak resident memory during the load above the resident
    memory before it (modules imported and the dataset opened first; the peak mark is reset through
    /proc/self/clear_refs), against the bytes of the arrays made."""
    from lit_offrl.data import minari_io

    dataset = minari_io.resolve(args.dataset_id)
    baseline_mb = proc_status_mb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current resident size
    start = time.perf_counter()
    data = minari_io.load(dataset)
    seconds = time.perf_counter() - start
    arrays_mb = sum(getattr(data, name).nbytes for name in ("observations", "actions", "rewards", "next_observations",
                                                            "terminals", "timeouts")) / 2**20
    return {"seconds": seconds, "transitions": len(data.rewards), "arrays_mb": arrays_mb,
            "peak_above_baseline_mb": peak_memory_mb("cpu") - baseline_mb}


# ------------------------------------------------------------------------------------------ d3rlpy
def ensure_d3rlpy_venv() -> Path:
    python = D3RLPY_VENV / "bin" / "python"
    if not python.exists():
        print(f"making {D3RLPY_VENV} (d3rlpy pins an older gymnasium)...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(D3RLPY_VENV)], check=True)
        import torch

        subprocess.run([str(python), "-m", "pip", "install", "-q", f"torch=={torch.__version__.split('+')[0]}"],
                       check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "d3rlpy>=2,<3"], check=True)
    return python


def d3rlpy_arrays(args) -> Path:
    import numpy as np

    from lit_offrl.data.datamodule import OfflineDataModule

    path = REPO / "benchmarks" / "runs" / "throughput_arrays.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    dm = OfflineDataModule(args.dataset_id, eval_episodes=0)
    dm.setup("fit")
    t = dm.transitions
    ends = np.zeros(len(t), dtype=np.float32)
    ends[t.episode_ends.numpy() - 1] = 1.0
    np.savez(path, observations=t.obs.numpy(), actions=t.action.numpy(), rewards=t.reward.numpy(),
             terminals=t.terminal.numpy(), timeouts=np.clip(ends - t.terminal.numpy(), 0, 1))
    return path


# ------------------------------------------------------------------------------------------ driver
def run_child(cmd: list[str]) -> dict | None:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    for line in proc.stdout.splitlines()[::-1]:
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    print(f"  failed ({' '.join(cmd[-4:])}):\n{proc.stderr[-2000:]}", flush=True)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", nargs="+", default=list(ALGOS))
    parser.add_argument("--updates", type=int, default=3000, help="per measurement (CQL: a tenth)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs of every column; the median is shown")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="32-true", help="of every lit_offrl column")
    parser.add_argument("--bf16", action="store_true", help="also the lit_offrl columns under bf16-mixed (the plain "
                        "loop and d3rlpy stay float32)")
    parser.add_argument("--dataset-id", default="lit-offrl/pointmaze/umaze-v0")
    parser.add_argument("--no-d3rlpy", action="store_true")
    parser.add_argument("--ddp", type=int, default=0, help="also run lit_offrl TD3BC with DDP over this many processes")
    parser.add_argument("--load-only", action="store_true")
    parser.add_argument("--compiled", action="store_true", help="also lit_offrl with the CompileNetworks callback")
    parser.add_argument("--compile-mode", default="default", help="torch.compile mode for --compiled")
    parser.add_argument("--plain-compiled", action="store_true", help="also the plain loop under torch.compile")
    parser.add_argument("--compile-update", action="store_true",
                        help="also lit_offrl with the CompileUpdate callback (with --updates-per-step K if given)")
    parser.add_argument("--d3rlpy-compiled", action="store_true", help="also d3rlpy with compile_graph=True")
    parser.add_argument("--updates-per-step", type=int, default=0,
                        help="also lit_offrl with data.updates_per_step K (K minibatches, one gather, per training step)")
    parser.add_argument("--hidden", type=int, nargs="+", default=None,
                        help="hidden sizes of TD3BC's / IQL's networks in every column (default 256 256; the "
                             "overhead-bound regime: 32 32 with --batch-size 32)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "throughput.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--load-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(args)), flush=True)
        return
    if args.load_worker:
        print("RESULT " + json.dumps(load_worker(args)), flush=True)
        return

    import statistics

    import torch

    me = [sys.executable, str(Path(__file__).resolve())]
    load = run_child([*me, "--load-worker", "--dataset-id", args.dataset_id])
    if load:
        print(f"loading {args.dataset_id}: {load['transitions']} transitions in {load['seconds']:.1f} s, peak "
              f"{load['peak_above_baseline_mb']:.0f} MB above baseline for {load['arrays_mb']:.0f} MB of arrays "
              f"({load['peak_above_baseline_mb'] / load['arrays_mb']:.2f}x)", flush=True)
    results: dict = {"load": load, "rates": {}}

    def common(algo: str) -> list[str]:
        # CQL's update is ~15x the work of TD3+BC's (3x256 critics on 30 sampled actions per state): fewer updates.
        scale = SLOW_ALGOS.get(algo, 1.0)
        multiple = max(args.updates_per_step, 1)  # the K column counts in steps of K updates
        updates, warmup = (int(value * scale) // multiple * multiple for value in (args.updates, args.warmup))
        return ["--compile-mode", args.compile_mode, "--updates", str(updates), "--warmup", str(warmup),
                "--batch-size", str(args.batch_size), "--device", args.device, "--precision", args.precision,
                "--dataset-id", args.dataset_id, "--updates-per-step", str(args.updates_per_step),
                *(["--hidden", *map(str, args.hidden)] if args.hidden else [])]

    if not args.load_only:
        d3_python = None if args.no_d3rlpy or args.device.startswith("cuda") and not D3RLPY_VENV.exists() \
            else ensure_d3rlpy_venv()
        arrays = d3rlpy_arrays(args) if d3_python else None
        d3 = d3_python and not args.hidden  # d3rlpy's networks are its defaults' sizes
        impls = ["lit", *(["lit-k"] if args.updates_per_step > 1 else []),
                 *(["lit-cu"] if args.compile_update else []),
                 *(["lit-bf16"] if args.bf16 else []), *(["lit-cu-bf16"] if args.bf16 and args.compile_update else []),
                 "plain",
                 *(["plain-compiled"] if args.plain_compiled else []), *(["compiled"] if args.compiled else []),
                 *(["d3rlpy"] if d3 else []), *(["d3rlpy-compiled"] if d3 and args.d3rlpy_compiled else [])]
        for algo in args.algos:
            runs: dict[str, list[dict]] = {impl: [] for impl in impls}
            for repeat in range(args.repeats):  # interleaved, so a slow spell of the machine hits every column
                for impl in impls:
                    if impl.startswith("d3rlpy"):
                        result = run_child([str(d3_python), str(REPO / "benchmarks" / "d3rlpy_worker.py"), algo,
                                            str(arrays), *common(algo),
                                            *(["--compile-graph"] if impl == "d3rlpy-compiled" else [])])
                    else:
                        result = run_child([*me, "--worker", f"{impl}:{algo}", *common(algo)])
                    print(f"{impl:>14} {algo} #{repeat}: {result}", flush=True)
                    if result:
                        runs[impl].append(result)
            row = {}
            for impl, measured in runs.items():
                if measured:
                    rates = [m["updates_per_sec"] for m in measured]
                    row[impl] = {"updates_per_sec": statistics.median(rates), "min": min(rates), "max": max(rates),
                                 "runs": rates, "peak_memory_mb": max(m["peak_memory_mb"] for m in measured)}
                    if "startup_seconds" in measured[0]:
                        row[impl]["startup_seconds"] = statistics.median(m["startup_seconds"] for m in measured)
            results["rates"][algo] = row
        if args.ddp:
            single = results["rates"].get("TD3BC", {}).get("lit") or run_child([*me, "--worker", "lit:TD3BC",
                                                                                *common("TD3BC")])
            ddp = run_child([*me, "--worker", "lit:TD3BC", *common("TD3BC"), "--ddp", str(args.ddp)])
            if single and ddp:
                results["ddp"] = {"processes": args.ddp, "per_process": ddp["updates_per_sec"],
                                  "single": single["updates_per_sec"],
                                  "efficiency": ddp["updates_per_sec"] * args.ddp / single["updates_per_sec"]}
                print(f"DDP x{args.ddp}: {ddp['updates_per_sec']:.0f} updates/s per process, single process "
                      f"{single['updates_per_sec']:.0f}; scaling efficiency {results['ddp']['efficiency']:.2f}")
    results.update(device=args.device, torch=torch.__version__, threads=torch.get_num_threads(), cpus=os.cpu_count(),
                   updates=args.updates, warmup=args.warmup, repeats=args.repeats, batch_size=args.batch_size,
                   dataset_id=args.dataset_id, date=time.strftime("%Y-%m-%d"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    if results["rates"]:
        print(f"\n{args.dataset_id}, batch {args.batch_size}, {args.updates - args.warmup} timed updates "
              f"(CQL {int((args.updates - args.warmup) * SLOW_ALGOS['CQL'])}), median of {args.repeats} interleaved "
              f"runs (range), device {args.device}, torch {torch.__version__}\n")
        print("| algorithm | lit_offrl updates/s | plain PyTorch | d3rlpy | lit / plain | lit / d3rlpy | peak MB lit / "
              "plain / d3rlpy |\n|---|---|---|---|---|---|---|")
        for algo, row in results["rates"].items():
            rate = {k: v["updates_per_sec"] for k, v in row.items()}
            mem = " / ".join(f"{row[k]['peak_memory_mb']:.0f}" if k in row else "-" for k in ("lit", "plain", "d3rlpy"))
            ratio = lambda a, b: f"{rate[a] / rate[b]:.2f}x" if rate.get(a) and rate.get(b) else "-"
            fmt = lambda k: (f"{rate[k]:.1f} ({row[k]['min']:.1f}-{row[k]['max']:.1f})" if rate[k] < 20 else
                             f"{rate[k]:.0f} ({row[k]['min']:.0f}-{row[k]['max']:.0f})") if k in rate else "-"
            print(f"| {algo} | {fmt('lit')} | {fmt('plain')} | {fmt('d3rlpy')} | {ratio('lit', 'plain')} | "
                  f"{ratio('lit', 'd3rlpy')} | {mem} |")
            for extra, label in (("plain-compiled", "plain PyTorch, torch.compile"),
                                 ("d3rlpy-compiled", "d3rlpy compile_graph")):
                if rate.get(extra):
                    print(f"| {algo} ({label}) | | {fmt(extra)} | | {ratio('lit', extra)} (lit / this) | | |")
            if rate.get("lit-k"):
                print(f"| {algo} (updates_per_step {args.updates_per_step}) | {fmt('lit-k')} | | | "
                      f"{ratio('lit-k', 'plain')} | | |")
            k = f", updates_per_step {args.updates_per_step}" if args.updates_per_step > 1 else ""
            for extra, label in (("lit-cu", f"CompileUpdate{k}"), ("lit-bf16", "bf16-mixed"),
                                 ("lit-cu-bf16", f"bf16-mixed + CompileUpdate{k}")):
                if rate.get(extra):
                    startup = f"; start-up {row[extra]['startup_seconds']:.0f} s" if "-cu" in extra else ""
                    print(f"| {algo} ({label}{startup}) | {fmt(extra)} | | | {ratio(extra, 'plain')} | "
                          f"{ratio(extra, 'd3rlpy')} | |")
            if rate.get("compiled"):
                print(f"| {algo} (CompileNetworks, {args.compile_mode}) | {fmt('compiled')} | | | "
                      f"{ratio('compiled', 'plain')} | | |")


if __name__ == "__main__":
    main()
