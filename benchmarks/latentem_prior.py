"""LatentEM checkpoints evaluated four ways on the data module's evaluation episodes: pi_theta (its mean and a
sample) and the decoded prior it starts from (alpha = 0, the mean of N(0, I), and alpha ~ N(0, I) clipped to the
latent box), plus the mean action size of each against the data's chunks. A second table says what the latent
space gives EM to search, on one batch of the data's chunks (4,096):
  * posterior std: the mean std of q(z | s, tau) (1 = the prior's: the encoder ignores the chunk, posterior collapse);
  * decoded spread: the std over 10 alpha ~ N(0, I) of D(s, alpha), per action element (0 = the decoder ignores
    alpha), beside the data chunks' std;
  * recon at z = posterior mean and at alpha = 0 (MSE per element): what knowing the chunk's latent is worth;
  * R_phi's error against V's on the H-step targets G (R_phi(s, z ~ q) must beat V(s) if alpha carries return
    information), and R_phi(s, mu_theta) - R_phi(s, 0): the gain EM believes it found, beside |mu_theta|.

    python benchmarks/latentem_prior.py benchmarks/runs/lit-offrl_maze2d_medium-v0_LatentEM_seed*_20000/run/checkpoints/last.ckpt \
        --dataset-id lit-offrl/maze2d/medium-v0

Training logs the first and third (val/normalized_score, val/prior_normalized_score) at every evaluation; this
adds the sampled ones and says what the decoder makes of the prior.
"""

from __future__ import annotations

import argparse
import contextlib

import torch

from lit_offrl.algos import LatentEM
from lit_offrl.data.datamodule import OfflineDataModule
from lit_offrl.evaluation.rollout import make_vector_env, rollout

MODES = (("pi_theta, mean", False, True), ("pi_theta, sample", False, False),
         ("prior, alpha = 0", True, True), ("prior, alpha ~ N(0, I)", True, False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--dataset-id", default="lit-offrl/maze2d/medium-v0")
    parser.add_argument("--episodes", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(1)
    latent_rows = []
    print("| checkpoint | " + " | ".join(name for name, _, _ in MODES) + " | mean abs action: data / alpha = 0 / pi_theta |")
    print("|---" * (len(MODES) + 2) + "|")
    data: dict[int, OfflineDataModule] = {}  # by horizon: the dataset is loaded once for the seeds of one setting
    for path in args.checkpoints:
        model = LatentEM.load_from_checkpoint(path, map_location="cpu").eval()
        if model.horizon not in data:
            data[model.horizon] = OfflineDataModule(args.dataset_id, eval_episodes=args.episodes,
                                                    sequence_length=model.horizon, batch_size=1024)
            data[model.horizon].setup("fit")
        dm = data[model.horizon]
        envs = make_vector_env(dm.make_eval_env, args.episodes)
        scores = []
        for _, prior, deterministic in MODES:
            torch.manual_seed(0)
            model.reset_plan()
            with model.prior_policy() if prior else contextlib.nullcontext():
                returns, _ = rollout(lambda obs: model.act(obs, deterministic).cpu().numpy(), envs,
                                     dm.episode_seeds(), dm.observation_space)
            scores.append(float(dm.normalized_score(torch.as_tensor(returns, dtype=torch.float32)).mean()))
        envs.close()
        batch = next(iter(dm.train_dataloader()))
        with torch.no_grad():
            zero = model.decode_plan(batch.first_obs, torch.zeros(len(batch.first_obs), model.latent_dim))
            policy = model.decode_plan(batch.first_obs, model.policy.act(batch.first_obs))
        sizes = [float(a.abs().mean()) for a in (batch.action, zero, policy)]
        print(f"| {path} | " + " | ".join(f"{s:.1f}" for s in scores) + " | "
              + " / ".join(f"{s:.2f}" for s in sizes) + " |", flush=True)
        latent_rows.append(f"| {path} | " + " | ".join(latent_space(model, dm)) + " |")
    print("\n| checkpoint | posterior std | decoded spread / data chunks' std | recon MSE: posterior mean / alpha = 0 "
          "| MSE on G: R_phi(s, z ~ q) / V(s) | R_phi(s, mu_theta) - R_phi(s, 0) | mean abs mu_theta |")
    print("|---" * 7 + "|")
    print("\n".join(latent_rows))


@torch.no_grad()
def latent_space(model: LatentEM, dm: OfflineDataModule) -> list[str]:
    """The second table's cells for one checkpoint (see the module docstring), on 4,096 of the data's chunks."""
    generator = torch.Generator().manual_seed(0)
    starts = dm.transitions.sequence_starts(model.horizon)
    batch = dm.transitions.sequences(starts[torch.randint(len(starts), (4096,), generator=generator)], model.horizon)
    obs, chunk = batch.first_obs, batch.action.flatten(1)
    mean, std = model.vae.encode(obs, chunk)
    noise = [torch.randn(mean.shape, generator=generator).clamp(-model.max_latent, model.max_latent) for _ in range(10)]
    spread = torch.stack([model.vae.decode(obs, alpha) for alpha in noise]).std(0).mean()
    recon = [(model.vae.decode(obs, z) - chunk).pow(2).mean() for z in (mean, torch.zeros_like(mean))]
    target = model.chunk_return(batch)
    sampled = mean + std * torch.randn(std.shape, generator=generator)
    errors = [(model.return_model(obs, sampled) - target).pow(2).mean(), (model.value(obs) - target).pow(2).mean()]
    mu = model.policy(obs).mean.clamp(-model.max_latent, model.max_latent)
    gain = (model.return_model(obs, mu) - model.return_model(obs, torch.zeros_like(mu))).mean()
    return [f"{std.mean():.2f}", f"{spread:.3f} / {chunk.std(0).mean():.3f}", f"{recon[0]:.3f} / {recon[1]:.3f}",
            f"{errors[0]:.3g} / {errors[1]:.3g}", f"{gain:.1f}", f"{mu.abs().mean():.2f}"]


if __name__ == "__main__":
    main()
