"""Online RL: the OnlineDataModule, online SAC, offline-to-online fine-tuning and the Gym locomotion recipes."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import CSVLogger
import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import REPO, run_cli

from lit_offrl.algos.sac import SAC
from lit_offrl.callbacks import UpdateCheckpoint
from lit_offrl.data.online import OnlineDataModule
from lit_offrl.recipes import locomotion
from lit_offrl.errors import UserError

TINY = dict(steps=1200, train_steps=200, snapshot_every=100, warmup_steps=100, eval_episodes=2, progress=False)
LOCOMOTION_IDS = [f"lit-offrl/{env}/{level}-v0" for env in locomotion.ENVS for level in locomotion.LEVELS]


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Small networks on a shared 2-core machine: a second torch thread mostly spins (10x slower under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def trainer(max_steps: int, root: Path, **kwargs) -> L.Trainer:
    options = dict(max_steps=max_steps, max_epochs=-1, accelerator="cpu", logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                   num_sanity_val_steps=0, default_root_dir=str(root))
    return L.Trainer(**{**options, **kwargs})


# ----------------------------------------------------------------------------------------------------------------
# The data module
# ----------------------------------------------------------------------------------------------------------------


def test_replay_buffer_rows_are_the_fields_packed():
    """Writes that wrap the ring, batches and field-view writes agree with per-field bookkeeping, exactly."""
    from lit_offrl.data.online import ReplayBuffer

    gen = torch.Generator().manual_seed(0)
    buffer, expected = ReplayBuffer(7, obs_dim=3, action_dim=2), {}
    fields = {"obs": (3,), "action": (2,), "reward": (), "next_obs": (3,), "terminal": (), "truncated": ()}
    for n in (4, 5):  # 9 rows into 7: rows 0 and 1 are overwritten
        rows = {name: torch.randn(n, *shape, generator=gen) for name, shape in fields.items()}
        written = buffer.add(**rows)
        for name, value in rows.items():
            expected.setdefault(name, torch.zeros(7, *fields[name]))[written] = value
    assert buffer.pos == 2 and len(buffer) == 7
    buffer.truncated[3] = 1.0  # through a view, into the packed rows
    expected["truncated"][3] = 1.0
    index = torch.tensor([6, 0, 3, 3, 1])
    batch = buffer.batch(index)
    for name in ("obs", "action", "reward", "next_obs", "terminal"):
        assert torch.equal(getattr(batch, name), expected[name][index]), name
    assert all(torch.equal(getattr(buffer, name), expected[name]) for name in fields)
    restored = ReplayBuffer(7, obs_dim=3, action_dim=2)
    restored.load_state_dict(buffer.state_dict())
    assert torch.equal(restored.rows, buffer.rows) and restored.pos == 2


def test_transitions_keep_truncation_apart_from_termination():
    """Pendulum only truncates (200 steps): no terminal, next_obs is the final observation, not the reset one."""
    dm = OnlineDataModule("Pendulum-v1", capacity=1000, warmup_steps=0, eval_episodes=0)
    dm.collect(None, 450)
    buffer = dm.buffer
    assert (len(buffer), dm.env_steps, dm.episodes) == (450, 450, 2)
    assert not buffer.terminal[:450].any()
    assert buffer.truncated[:450].nonzero().ravel().tolist() == [199, 399]
    continuing = torch.ones(449, dtype=torch.bool)
    continuing[[199, 399]] = False
    assert torch.equal(buffer.next_obs[:449][continuing], buffer.obs[1:450][continuing])
    assert not torch.allclose(buffer.next_obs[199], buffer.obs[200]), "a new episode starts at a reset"
    assert buffer.action[:450].abs().max() <= 1.0


def test_terminated_episodes_are_terminal():
    dm = OnlineDataModule("InvertedPendulum-v5", capacity=500, warmup_steps=0, eval_episodes=0)
    dm.collect(None, 200)
    ends = dm.buffer.terminal[:200].nonzero().ravel()
    assert len(ends) == dm.episodes > 5 and not dm.buffer.truncated[:200].any()
    jump = (dm.buffer.obs[ends[:-1] + 1] - dm.buffer.next_obs[ends[:-1]]).abs().amax(1)
    assert (jump > 0.05).all(), "a new episode starts at a reset after each termination"


def test_state_dict_resumes_buffer_counters_and_batch_stream():
    """A data module restored from a checkpoint's state holds the same buffer and draws the same next batch. Pendulum
    is not a MuJoCo env, so its state is not saved (a warning says so): the interrupted episode is marked
    truncated and its environment restarts."""
    dm = OnlineDataModule("Pendulum-v1", capacity=300, warmup_steps=0, batch_size=32, seed=3, eval_episodes=0)
    dm.collect(None, 250)
    dm.batches_served = 17
    with pytest.warns(UserWarning, match="PendulumEnv is not one of Gymnasium's MuJoCo environments"):
        state = dm.state_dict()
    assert state["env_state"] is None and state["open_rows"] == [249]
    restored = OnlineDataModule("Pendulum-v1", capacity=300, warmup_steps=0, batch_size=32, seed=3, eval_episodes=0)
    restored.load_state_dict(state)
    for name in ("obs", "action", "reward", "next_obs", "terminal"):
        assert torch.equal(getattr(dm.buffer, name)[:250], getattr(restored.buffer, name)[:250]), name
    assert (restored.env_steps, restored.episodes, restored.batches_served) == (250, 1, 17)
    assert restored.buffer.truncated[:250].nonzero().ravel().tolist() == [199, 249]  # 249: cut at the checkpoint
    for a, b in zip(dm.sample(17)[:5], restored.sample(17)[:5]):
        assert torch.equal(a, b)
    restored.collect(None, 60)  # wraps around the ring buffer of 300
    assert (len(restored.buffer), restored.buffer.pos, restored.env_steps) == (300, 10, 310)


def test_offline_mixing_ratio(minari_root):
    """offline_ratio r: exactly round(r B) rows of each batch come from the offline data; null: uniform over both."""
    batch = 64
    for ratio, expected in ((0.25, 16), (1.0, 64), (0.0, 0)):
        dm = OnlineDataModule(offline_dataset_id="lit-offrl/hopper/medium-v0", offline_ratio=ratio, batch_size=batch,
                              capacity=500, warmup_steps=0, eval_episodes=0)
        dm.setup("fit")
        dm.collect(None, 200)
        dm.buffer.reward[:200] = -1e6  # marks online rows
        assert int((dm.sample(0).reward > -1e6).sum()) == expected
    dm = OnlineDataModule(offline_dataset_id="lit-offrl/hopper/medium-v0", batch_size=batch, capacity=2000,
                          warmup_steps=0, eval_episodes=0)
    dm.setup("fit")
    dm.collect(None, len(dm.transitions))  # as many online as offline transitions
    dm.buffer.reward[:len(dm.buffer)] = -1e6
    offline = sum(int((dm.sample(i).reward > -1e6).sum()) for i in range(20))
    assert 0.4 < offline / (20 * batch) < 0.6
    assert torch.equal(dm.obs_mean, dm.offline.obs_mean) and not torch.equal(dm.obs_mean, torch.zeros(11))


def test_bad_arguments_are_user_errors():
    with pytest.raises(UserError, match="needs an environment"):
        OnlineDataModule()
    with pytest.raises(UserError, match="offline_dataset_id"):
        OnlineDataModule("Hopper-v5", offline_ratio=0.5)
    with pytest.raises(UserError, match="bounded continuous"):
        OnlineDataModule("CartPole-v1")


# ----------------------------------------------------------------------------------------------------------------
# Online SAC
# ----------------------------------------------------------------------------------------------------------------


def _evaluate(model: SAC, episodes: int = 5) -> float:
    import gymnasium as gym

    from lit_offrl.evaluation import make_vector_env, rollout

    envs = make_vector_env(lambda: gym.make("InvertedPendulum-v5"), episodes)
    returns, _ = rollout(lambda obs: model.act(obs).numpy(), envs, list(range(500, 500 + episodes)),
                         envs.single_observation_space)
    envs.close()
    return float(returns.mean())


def test_online_sac_learns_to_balance_the_inverted_pendulum(tmp_path):
    """1,000 updates of SAC (64x64 networks) on InvertedPendulum-v5 with a fixed seed take the deterministic
    policy's return from a few steps of balance to many more; the episodes are logged as they end."""
    L.seed_everything(0, verbose=False)
    dm = OnlineDataModule("InvertedPendulum-v5", capacity=5000, warmup_steps=200, batch_size=128, eval_episodes=0)
    model = SAC(dm.obs_dim, dm.action_dim, hidden_dims=(64, 64))
    before = _evaluate(model)
    logger = CSVLogger(str(tmp_path), name="csv")
    trainer(1000, tmp_path, logger=logger, log_every_n_steps=200).fit(model, dm)
    after = _evaluate(model)
    # seed 0: 8.8 -> 82.4 here; seeds 1-3 gain 26 to 90 within 1,000-1,500 updates
    assert before < 20 and after > before + 40, (before, after)
    assert (dm.env_steps, dm.batches_served, int(model.num_updates)) == (1200, 1000, 1000)
    logger.save()
    rows = (tmp_path / "csv" / "version_0" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    returns = [float(r.split(",")[header.index("train/episode_return")]) for r in rows[1:]
               if r.split(",")[header.index("train/episode_return")]]
    assert len(returns) >= 20 and max(returns[-5:]) > max(returns[:5])


def _assert_equal_states(a, b, where: str = "checkpoint") -> None:
    """Two checkpoint (sub)trees hold the same keys and bit-identical tensors and values."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_equal_states(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_equal_states(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_killed_online_run_resumes_mid_episode_exactly(tmp_path):
    """Hopper-v5 SAC stopped at update 100 with its episode in progress (a checkpoint written mid-episode) and
    resumed from last.ckpt ends at update 200 exactly as the uninterrupted run: the same weights, optimizer
    moments, replay buffer and environment state, bit for bit (the MuJoCo state, the reset RNG and the time
    limit's step count travel in the checkpoint)."""
    def run(max_steps: int, folder: Path, resume: bool) -> dict:
        L.seed_everything(0, verbose=False)
        dm = OnlineDataModule("Hopper-v5", capacity=500, warmup_steps=40, batch_size=32, eval_episodes=0)
        model = SAC(dm.obs_dim, dm.action_dim, hidden_dims=(16, 16))
        checkpoint = UpdateCheckpoint(every_n_updates=100, dirpath=str(folder))
        trainer(max_steps, folder, callbacks=[checkpoint], enable_checkpointing=True).fit(
            model, dm, ckpt_path=str(folder / "last.ckpt") if resume else None)
        assert int(model.num_updates) == max_steps
        return torch.load(folder / "last.ckpt", map_location="cpu", weights_only=True)

    straight = run(200, tmp_path / "straight", False)
    stopped = run(100, tmp_path / "resumed", False)
    data = stopped["OnlineDataModule"]
    buffer = data["buffer"]
    assert data["env_steps"] == 140 and buffer["size"] == 140  # 40 warmup transitions + one per update
    assert not (buffer["terminal"][-1] or buffer["truncated"][-1]), "the checkpoint is written mid-episode"
    assert data["open_rows"] == [139]
    assert buffer["terminal"].sum() >= 2, "episodes ended (and the env reset itself) before the checkpoint"
    resumed = run(200, tmp_path / "resumed", True)
    ends = straight["OnlineDataModule"]["buffer"]["terminal"][140:].sum()
    assert ends >= 1, "an episode ends after the resume: its reset draws from the restored RNG"
    for key in ("state_dict", "optimizer_states", "OnlineDataModule"):
        _assert_equal_states(straight[key], resumed[key], key)
    assert resumed["OnlineDataModule"]["buffer"]["truncated"].sum() == 0, "no episode was cut"


def test_environment_state_round_trips_in_lockstep():
    """A data module restored from another's state, mid-episode, collects the same transitions bit for bit for
    1,000 more steps (episodes ending and resetting on the way) in every locomotion environment."""
    for env_id in [*locomotion.ENVS.values(), "InvertedPendulum-v5"]:
        dm = OnlineDataModule(env_id, num_envs=2, capacity=1300, warmup_steps=0, eval_episodes=0, seed=1)
        dm.collect(None, 151)
        assert (dm._episode_length > 0).all(), "both environments are mid-episode"
        restored = OnlineDataModule(env_id, num_envs=2, capacity=1300, warmup_steps=0, eval_episodes=0, seed=1)
        restored.load_state_dict(dm.state_dict())
        dm.collect(None, 500)
        restored.collect(None, 500)
        assert torch.equal(dm.buffer.rows, restored.buffer.rows), env_id
        assert dm.episodes == restored.episodes and dm.episodes >= (0 if "Cheetah" in env_id else 3), env_id
    single = OnlineDataModule("InvertedPendulum-v5", capacity=1300, warmup_steps=0, eval_episodes=0, seed=1)
    state = dm.state_dict()
    with pytest.warns(UserWarning, match="cannot be restored .*data.num_envs is 1"):
        single.load_state_dict(state)  # two environments into one: the old behaviour, cut and restart
    assert state["open_rows"] and single.buffer.truncated[state["open_rows"]].all() and single._obs is None
    del state["env_state"]  # a checkpoint written before environment states were saved
    with pytest.warns(UserWarning, match="predates saved environment states"):
        OnlineDataModule("InvertedPendulum-v5", num_envs=2, capacity=1300, warmup_steps=0, eval_episodes=0,
                         seed=1).load_state_dict(state)


def test_a_run_resumed_in_a_moved_folder_keeps_writing_last_ckpt(tmp_path):
    """Checkpoints moved to another folder (a new Minari root, a copied run) and resumed there: the run goes on
    writing last.ckpt, not last-v1.ckpt beside a stale last.ckpt that the next resume would read."""
    def run(max_steps: int, folder: Path, resume: bool) -> None:
        dm = OnlineDataModule("InvertedPendulum-v5", capacity=200, warmup_steps=20, batch_size=16, eval_episodes=0)
        checkpoint = UpdateCheckpoint(every_n_updates=10, dirpath=str(folder))
        trainer(max_steps, folder, callbacks=[checkpoint], enable_checkpointing=True).fit(
            SAC(dm.obs_dim, dm.action_dim, hidden_dims=(8,)), dm, ckpt_path=str(folder / "last.ckpt") if resume else None)

    run(10, tmp_path / "first", False)
    (tmp_path / "first").rename(tmp_path / "moved")
    run(20, tmp_path / "moved", True)
    assert sorted(p.name for p in (tmp_path / "moved").glob("*.ckpt")) == ["last.ckpt"]
    state = torch.load(tmp_path / "moved" / "last.ckpt", map_location="cpu", weights_only=False)
    assert int(state["state_dict"]["num_updates"]) == 20


# ----------------------------------------------------------------------------------------------------------------
# The locomotion recipes (tiny versions: 200 SAC updates, 1,200-step levels)
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def loco_root(tmp_path_factory) -> Path:
    """A Minari root holding every locomotion recipe dataset, tiny, and a medium-replay window of 150 steps."""
    root = tmp_path_factory.mktemp("locomotion")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(root))
        from lit_offrl.data import registry as recipes

        for dataset_id in LOCOMOTION_IDS:
            recipes.RECIPES[dataset_id](**TINY)
        locomotion.make_locomotion_dataset("test/hopper-replay-window-v0", "hopper", "medium-replay",
                                           **{**TINY, "steps": 150})
    return root


@pytest.fixture
def minari_root(loco_root, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(loco_root))
    return loco_root


def _run_folder(root: Path, env: str) -> Path:
    folders = list((root / ".lit_offrl_cache" / "locomotion").glob(f"{locomotion.ENVS[env]}-sac-*"))
    assert len(folders) == 1, "one SAC run per environment, shared by its five levels"
    return folders[0]


@pytest.mark.parametrize("dataset_id", LOCOMOTION_IDS)
def test_locomotion_recipe_dataset(minari_root, dataset_id):
    import gymnasium as gym
    import minari

    env_name, level = dataset_id.split("/")[1], dataset_id.split("/")[2][:-3]
    env_id = locomotion.ENVS[env_name]
    dataset = minari.load_dataset(dataset_id)
    metadata = dataset.storage.metadata
    ref_min, ref_max = locomotion.reference_scores(env_id)
    assert (metadata["ref_min_score"], metadata["ref_max_score"]) == (ref_min, ref_max)
    np.testing.assert_allclose(minari.get_normalized_score(dataset, np.array([ref_min, ref_max])), [0.0, 1.0])
    assert metadata["code_permalink"] == locomotion.CODE_PERMALINK and level in metadata["description"]
    assert metadata["algorithm_name"] == {"random": "uniform-random", "medium-replay": "SAC-replay-buffer"}.get(level,
                                                                                                              "SAC")
    env = dataset.recover_environment(eval_env=True)
    assert env.spec.id == env_id and env.spec.max_episode_steps == 1000
    obs_dim, action_dim = env.observation_space.shape[0], env.action_space.shape[0]
    env.close()
    snapshots = json.loads((_run_folder(minari_root, env_name) / "snapshots.json").read_text())
    medium, _ = locomotion.select_levels([locomotion.Snapshot(**s) for s in snapshots], env_id)
    expected = {"medium-expert": 2 * TINY["steps"], "medium-replay": medium.env_steps}.get(level, TINY["steps"])
    assert dataset.total_steps == expected
    for episode in dataset.iterate_episodes():
        steps = len(episode.rewards)
        assert episode.observations.shape == (steps + 1, obs_dim) and episode.actions.shape == (steps, action_dim)
        assert np.isfinite(episode.observations).all() and np.isfinite(episode.actions).all()
        assert np.abs(episode.actions).max() <= 1.0 and np.isfinite(episode.rewards).all()
        assert not episode.terminations[:-1].any() and not episode.truncations[:-1].any()
        assert episode.terminations[-1] != episode.truncations[-1], "each episode ends exactly once"
        assert steps <= 1000
    assert isinstance(gym.make(env_id).action_space, gym.spaces.Box)


def test_medium_expert_is_medium_then_expert(minari_root):
    import minari

    def arrays(dataset_id: str) -> list[np.ndarray]:
        episodes = list(minari.load_dataset(dataset_id).iterate_episodes())
        return [np.concatenate([getattr(ep, key) for ep in episodes]) for key in ("observations", "actions", "rewards")]

    for env in locomotion.ENVS:
        both = [arrays(f"lit-offrl/{env}/{level}-v0") for level in ("medium", "expert", "medium-expert")]
        for medium, expert, combined in zip(*both):
            np.testing.assert_array_equal(np.concatenate([medium, expert]), combined)


def test_medium_replay_is_the_training_buffer(minari_root):
    """medium-replay is the SAC run's own transitions up to the medium snapshot; a smaller size keeps its end."""
    import minari

    full = list(minari.load_dataset("lit-offrl/hopper/medium-replay-v0").iterate_episodes())
    window = list(minari.load_dataset("test/hopper-replay-window-v0").iterate_episodes())
    state = torch.load(_run_folder(minari_root, "hopper") / "checkpoints" / "last.ckpt", weights_only=False)
    buffer = state["OnlineDataModule"]["buffer"]
    observations = np.concatenate([ep.observations[:-1] for ep in full])
    np.testing.assert_allclose(observations, buffer["obs"][:len(observations)].numpy(), rtol=0, atol=0)
    assert sum(len(ep.rewards) for ep in window) <= 150 and window
    assert all(np.array_equal(a.observations, b.observations) for a, b in zip(window, full[-len(window):]))


def test_levels_reuse_one_cached_training_run(minari_root):
    """Every level after the first rolled the cached policies out: the run was trained once, before them."""
    import minari

    for env in locomotion.ENVS:
        folder = _run_folder(minari_root, env)
        trained = (folder / "checkpoints" / "last.ckpt").stat().st_mtime
        assert (folder / "done").exists() and len(list((folder / "policies").glob("*.pt"))) == 2
        later = minari_root / f"lit-offrl/{env}/medium-expert-v0"
        assert later.stat().st_mtime > trained
        checkpoint = torch.load(folder / "policies" / "updates=00000200.pt", weights_only=False)
        assert int(checkpoint["state_dict"]["num_updates"]) == 200
        assert isinstance(SAC.load_from_checkpoint(folder / "policies" / "updates=00000200.pt"), SAC)
    assert minari.load_dataset("lit-offrl/hopper/medium-v0").total_steps == TINY["steps"]


def test_datasets_cli_lists_the_locomotion_recipes(minari_root, capsys):
    from lit_offrl import datasets_cli

    assert datasets_cli.main(["list"]) == 0
    recipes = capsys.readouterr().out.split("Local datasets")[0]
    built = {line[2:].split()[0] for line in recipes.splitlines() if line.startswith("* ")}
    assert set(LOCOMOTION_IDS) <= built, "every locomotion id is listed, and marked as built"
    assert datasets_cli.main(["make", "lit-offrl/maze2d/umaze-v0", "--train-steps", "10"]) == 2
    assert "--train-steps applies to the locomotion recipes" in capsys.readouterr().err


def test_killed_recipe_training_resumes_as_if_uninterrupted(tmp_path, monkeypatch):
    """The recipe's Hopper SAC run killed between checkpoints (at update 130, its last checkpoint at 100 written
    mid-episode) and started again resumes from that checkpoint and ends as the uninterrupted run: the same
    snapshot evaluations, policies, final weights, optimizer moments and replay buffer, bit for bit."""
    options = dict(train_steps=200, snapshot_every=50, warmup_steps=50, eval_episodes=1, progress=False)
    straight, straight_snapshots = locomotion.train_policies("hopper", cache_dir=tmp_path / "straight", **options)

    collect = OnlineDataModule.collect

    def killed_at_update_130(self, module, vector_steps):
        if self.batches_served == 130:
            raise RuntimeError("killed")
        return collect(self, module, vector_steps)

    monkeypatch.setattr(OnlineDataModule, "collect", killed_at_update_130)
    with pytest.raises(RuntimeError, match="killed"):
        locomotion.train_policies("hopper", cache_dir=tmp_path / "killed", **options)
    monkeypatch.setattr(OnlineDataModule, "collect", collect)
    folder = next((tmp_path / "killed").iterdir())
    checkpoint = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)
    assert int(checkpoint["state_dict"]["num_updates"]) == 100 and not (folder / "done").exists()
    assert checkpoint["OnlineDataModule"]["open_rows"], "the checkpoint was written mid-episode"
    resumed, resumed_snapshots = locomotion.train_policies("hopper", cache_dir=tmp_path / "killed", **options)
    assert resumed_snapshots == straight_snapshots
    ends = [torch.load(run / "checkpoints" / "last.ckpt", weights_only=True) for run in (straight, resumed)]
    for key in ("state_dict", "optimizer_states", "OnlineDataModule"):
        _assert_equal_states(ends[0][key], ends[1][key], key)
    for snapshot in straight_snapshots:
        _assert_equal_states(torch.load(straight / snapshot.path, weights_only=True)["state_dict"],
                             torch.load(resumed / snapshot.path, weights_only=True)["state_dict"], snapshot.path)


def test_level_selection():
    make = lambda updates, score: locomotion.Snapshot(updates, updates, score * 30.0, 1.0, score, "p")
    snapshots = [make(100, 10.0), make(200, 46.0), make(300, 40.5), make(400, 90.0), make(500, 40.0)]
    medium, expert = locomotion.select_levels(snapshots, "Hopper-v5")
    assert (medium.updates, expert.updates) == (200, 400)  # early stopping: the first one within 7.5 of 40
    medium, _ = locomotion.select_levels([make(100, 10.0), make(200, 20.0), make(300, 90.0)], "Hopper-v5")
    assert medium.updates == 200  # none within the tolerance: the closest


# ----------------------------------------------------------------------------------------------------------------
# Through the CLI: the shipped configs, offline-to-online fine-tuning
# ----------------------------------------------------------------------------------------------------------------


class RecordStartWeights(L.Callback):
    """Saves the actor's first layer and the observation statistics as training starts."""

    def __init__(self, out_file: str):
        self.out_file = out_file

    def on_train_start(self, trainer, pl_module):
        torch.save({"actor": pl_module.state_dict()["actor.net.0.weight"].clone(),
                    "obs_mean": pl_module.obs_mean.clone(), "updates": int(pl_module.num_updates)}, self.out_file)


QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def test_offline_to_online_finetuning_through_the_cli(minari_root, tmp_path, monkeypatch):
    """Offline AWAC (configs/awac/locomotion.yaml) on a tiny hopper medium-replay, then online fine-tuning from its
    weights with configs/awac/finetune_locomotion.yaml: a new run that starts from the offline weights and
    statistics, counts updates from 0, collects one transition per update and keeps the offline data."""
    dataset_id = "lit-offrl/hopper/medium-replay-v0"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # see one_torch_thread
    offline = run_cli(["fit", "--config", str(REPO / "configs/awac/locomotion.yaml"), "--data.dataset_id", dataset_id,
                       "--data.eval_episodes", "0", "--trainer.max_steps", "20", *QUIET], minari_root, tmp_path)
    assert offline.returncode == 0, offline.stderr[-3000:]
    offline_ckpt = next(tmp_path.glob("lightning_logs/version_0/checkpoints/last.ckpt"))
    record = tmp_path / "start.pt"
    online = run_cli(["fit", "--config", str(REPO / "configs/awac/finetune_locomotion.yaml"),
                      "--finetune_from", str(offline_ckpt), "--data.offline_dataset_id", dataset_id,
                      "--data.capacity", "1000", "--data.eval_episodes", "2", "--trainer.max_steps", "40",
                      "--trainer.val_check_interval", "20", "--trainer.log_every_n_steps", "10", *QUIET,
                      "--trainer.callbacks+=test_online.RecordStartWeights",
                      f"--trainer.callbacks.init_args.out_file={record}"], minari_root, tmp_path, REPO / "tests")
    assert online.returncode == 0, online.stderr[-3000:]
    assert "fine-tuning from the weights of" in online.stderr
    before, start = torch.load(offline_ckpt, weights_only=False), torch.load(record)
    assert torch.equal(start["actor"], before["state_dict"]["actor.net.0.weight"])
    assert torch.equal(start["obs_mean"], before["state_dict"]["obs_mean"]) and start["updates"] == 0
    after = torch.load(tmp_path / "lightning_logs/version_1/checkpoints/last.ckpt", weights_only=False)
    assert int(after["state_dict"]["num_updates"]) == 40
    data = after["OnlineDataModule"]
    assert (data["env_steps"], data["batches_served"], data["buffer"]["size"]) == (40, 40, 40)
    assert after["datamodule_hyper_parameters"]["offline_dataset_id"] == dataset_id
    events = list((tmp_path / "lightning_logs/version_1").glob("events.out.tfevents.*"))
    scalars = EventAccumulator(str(events[0].parent)).Reload()
    assert [e.step for e in scalars.Scalars("val/normalized_score")] == [19, 39]
    assert "train/episode_return" in scalars.Tags()["scalars"]
    # `--ckpt_path last` finds the fine-tuning run (not the offline one) by its data module and offline dataset
    from lit_offrl.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["cli.py"])
    main(["fit", "--config", str(REPO / "configs/awac/finetune_locomotion.yaml"), "--data.offline_dataset_id",
          dataset_id, "--data.capacity", "1000", "--data.eval_episodes", "0", "--trainer.max_steps", "50",
          "--ckpt_path", "last", *QUIET])
    final = torch.load(tmp_path / "lightning_logs/version_1/checkpoints/last.ckpt", weights_only=False)
    assert int(final["state_dict"]["num_updates"]) == 50 and final["OnlineDataModule"]["env_steps"] == 50


def test_cli_errors_are_one_line(tmp_path, monkeypatch, capsys):
    from lit_offrl.cli import main

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["cli.py"])
    model = SAC(11, 3, hidden_dims=(16, 16))
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, tmp_path / "sac.ckpt")
    common = ["fit", "--data", "OnlineDataModule", "--data.env_id", "Hopper-v5", "--data.eval_episodes", "0", *QUIET]
    cases = [(["--model", "SAC", "--finetune_from", str(tmp_path / "sac.ckpt")], "size mismatch"),
             (["--model", "AWAC", "--finetune_from", str(tmp_path / "sac.ckpt")], "do not fit AWAC"),
             (["--model", "SAC", "--finetune_from", "nowhere.ckpt"], "no such file"),
             (["--model", "SAC", "--finetune_from", str(tmp_path / "sac.ckpt"), "--ckpt_path", "x.ckpt"], "not both"),
             # raised while jsonargparse instantiates the data module, which wraps it: still one line, status 2
             (["--model", "SAC", "--data.env_id", "CartPole-v1"], "bounded continuous (Box) actions")]
    for args, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            main([*common, *args])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


def test_online_sac_config_trains(minari_root, tmp_path, monkeypatch):
    """configs/sac/online_hopper.yaml (shortened) trains online through the CLI entry point."""
    from lit_offrl.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["cli.py"])
    main(["fit", "--config", str(REPO / "configs/sac/online_hopper.yaml"), "--data.warmup_steps", "100",
          "--data.capacity", "1000", "--data.eval_episodes", "1", "--trainer.max_steps", "20", *QUIET])
    state = torch.load(next(tmp_path.glob("lightning_logs/*/checkpoints/last.ckpt")), weights_only=False)
    assert int(state["state_dict"]["num_updates"]) == 20 and state["OnlineDataModule"]["env_steps"] == 120
    assert state["datamodule_hyper_parameters"]["env_id"] == "Hopper-v5"
