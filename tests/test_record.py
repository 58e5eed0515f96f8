"""`lit-offrl record` (videos and maze trajectory plots of a checkpoint's evaluation episodes) and the training
progress bar (updates, rate, time left, last score, phase)."""

from __future__ import annotations

import json
import os
import re

import imageio.v2 as imageio
import imageio.v3 as iio
import lightning as L
import numpy as np
import pytest

from conftest import MAZE_ID
from lit_offrl import record
from lit_offrl.algos import BRAC, PLAS, TD3BC, LatentEM
from lit_offrl.callbacks import UpdatesProgressBar
from lit_offrl.data.datamodule import OfflineDataModule
from lit_offrl.evaluation import make_vector_env, rollout


def fit(model, dm, root, max_steps, callbacks=(), ckpt_path=None, **trainer_args):
    """Fit on the CPU without a logger, checkpoints or evaluation unless asked; returns the trainer."""
    L.seed_everything(0, verbose=False)
    args = dict(max_steps=max_steps, max_epochs=-1, accelerator="cpu", logger=False, enable_checkpointing=False,
                enable_model_summary=False, default_root_dir=root, callbacks=list(callbacks), num_sanity_val_steps=0,
                enable_progress_bar=any(isinstance(c, UpdatesProgressBar) for c in callbacks), limit_val_batches=0)
    if "val_check_interval" in trainer_args:
        del args["limit_val_batches"]
    trainer = L.Trainer(**{**args, **trainer_args})
    trainer.fit(model, dm, ckpt_path=ckpt_path)
    return trainer


@pytest.fixture(scope="module")
def checkpoint(maze_root, tmp_path_factory):
    """A TD3+BC checkpoint after 3 updates on the session's small PointMaze UMaze dataset."""
    folder = tmp_path_factory.mktemp("record_run")
    with pytest.MonkeyPatch.context() as patch:  # module scope: no monkeypatch fixture
        patch.setenv("MINARI_DATASETS_PATH", str(maze_root))
        trainer = fit(TD3BC(8, 2, hidden_dims=(32, 32)), OfflineDataModule(MAZE_ID, batch_size=64, eval_episodes=0),
                      folder, max_steps=3)
        path = folder / "checkpoints" / "last.ckpt"
        trainer.save_checkpoint(path)
    return path


@pytest.fixture
def minari_root(maze_root, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(maze_root))
    monkeypatch.delenv("MUJOCO_GL", raising=False)  # record sets it; restored after the test


def png_size(path):
    image = iio.imread(path)
    return image.shape[1], image.shape[0], image


def test_record_writes_episode_videos_with_every_frame_and_the_maze_plot(checkpoint, minari_root, tmp_path, capsys):
    """Two cut episodes at 64x48: each MP4 holds the reset frame plus one per step (8 frames for 7 steps) at the
    asked size; trajectories.png shows the maze (walls and free cells) with the paths; episodes.json names the
    seeds (the run's eval_seed onwards) and lengths. MUJOCO_GL was unset, so record chose a headless backend."""
    out = tmp_path / "rec"
    status = record.main([str(checkpoint), "--episodes", "2", "--max-steps", "7", "--out", str(out),
                          "--width", "64", "--height", "48", "--dataset-episodes", "5"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "cannot render" not in captured.err
    assert os.environ["MUJOCO_GL"] in ("egl", "osmesa")
    for index in (0, 1):
        video = out / f"episode_{index}.mp4"
        reader = imageio.get_reader(video)
        assert reader.count_frames() == 8
        frame = reader.get_data(0)
        assert frame.shape == (48, 64, 3) and frame.std() > 5  # a picture, not a blank frame
        reader.close()
    summary = json.loads((out / "episodes.json").read_text())
    assert [e["seed"] for e in summary["episodes"]] == [1_000_000, 1_000_001]
    assert [(e["length"], e["cut"], e["frames"]) for e in summary["episodes"]] == [(7, True, 8)] * 2
    assert summary["model"] == "TD3BC" and summary["updates"] == 3 and summary["dataset"] == MAZE_ID
    plot = out / "trajectories.png"
    assert plot.stat().st_size > 20_000
    width, height, image = png_size(plot)
    assert width > 1.5 * height  # two panels side by side
    gray = (np.abs(image[..., :3].astype(int) - 77).max(-1) < 4).mean()  # the walls' 0.3 gray
    assert 0.1 < gray < 0.8
    assert "episode 1 (seed 1000001)" in captured.out and "(cut by --max-steps)" in captured.out


def test_without_rendering_one_line_says_what_to_install_and_the_plot_shows_validations_episodes(
        checkpoint, minari_root, tmp_path, capsys, monkeypatch):
    """EGL made unavailable (its context raises as a missing libEGL does): one warning line names the Debian
    packages, no video is written, exit status 0, and the plot and the returns are still there. The returns are
    those of the run's validation rollouts on the same seeds (full episodes, deterministic policy)."""
    from gymnasium.envs.mujoco import mujoco_rendering

    def no_egl(width, height):
        raise ImportError("Unable to load EGL library")

    monkeypatch.setenv("MUJOCO_GL", "egl")
    monkeypatch.setitem(mujoco_rendering._ALL_RENDERERS, "egl", no_egl)
    out = tmp_path / "rec"
    status = record.main([str(checkpoint), "--episodes", "2", "--out", str(out), "--dataset-episodes", "3"])
    captured = capsys.readouterr()
    assert status == 0
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("lit-offrl record: warning: cannot render with MUJOCO_GL=egl (ImportError: Unable "
                               "to load EGL library); no video written")
    assert "apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri libopengl0" in lines[0] and "libosmesa6" in lines[0]
    assert not list(out.glob("episode_*"))
    assert (out / "trajectories.png").stat().st_size > 20_000
    summary = json.loads((out / "episodes.json").read_text())
    assert [e["video"] for e in summary["episodes"]] == [None, None]

    model, _ = record.load_checkpoint_model(checkpoint)
    dm = OfflineDataModule(MAZE_ID, eval_episodes=2)
    returns, lengths = rollout(lambda obs: model.act(obs).numpy(), make_vector_env(dm.make_eval_env, 2),
                               [1_000_000, 1_000_001], dm.observation_space)
    assert [e["return"] for e in summary["episodes"]] == pytest.approx(returns.tolist())
    assert [e["length"] for e in summary["episodes"]] == lengths.tolist() == [300, 300]


def test_bad_input_is_one_line_with_status_2(tmp_path, capsys):
    missing = tmp_path / "missing.ckpt"
    assert record.main([str(missing)]) == 2
    assert capsys.readouterr().err.strip() == f"lit-offrl record: error: {missing}: no such checkpoint file."
    assert record.main(["x.ckpt", "--format", "avi"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lit-offrl record: error: argument --format: invalid choice: 'avi'") and "\n" not in err


def test_a_users_mujoco_gl_is_kept_else_a_headless_backend_is_chosen():
    environ = {"MUJOCO_GL": "glfw"}
    assert record.choose_gl_backend(environ) == "glfw" and environ == {"MUJOCO_GL": "glfw"}
    environ = {}
    assert record.choose_gl_backend(environ) in ("egl", "osmesa") and environ["MUJOCO_GL"] in ("egl", "osmesa")


# ------------------------------------------------------------------------------------------------ progress bar
def bar_lines(text: str) -> list[str]:
    """The successive states of a tqdm bar written to a non-terminal (carriage returns between them)."""
    return [line.strip() for line in re.split(r"[\r\n]", text) if line.strip()]


def test_phase_names_follow_the_update_counter():
    brac, plas = BRAC(4, 2, behavior_steps=3), PLAS(4, 2, vae_pretrain_steps=5, vae_hidden_dims=(8,))
    latent = LatentEM(4, 2, horizon=2, vae_steps=10, return_steps=5, vae_hidden_dims=(8,), hidden_dims=(8,))
    seen = {}
    for module, updates in ((brac, (0, 2, 3)), (plas, (4, 5)), (latent, (0, 9, 10, 15, 99))):
        for count in updates:
            module._updates = count
            seen[type(module).__name__, count] = UpdatesProgressBar.description(module)
    assert seen == {
        ("BRAC", 0): "BRAC phase 1/2 behavior policy (to 3)", ("BRAC", 2): "BRAC phase 1/2 behavior policy (to 3)",
        ("BRAC", 3): "BRAC phase 2/2 agent",
        ("PLAS", 4): "PLAS phase 1/2 VAE (to 5)", ("PLAS", 5): "PLAS phase 2/2 policy and critics",
        ("LatentEM", 0): "LatentEM phase 1/3 VAE and V (to 10)",
        ("LatentEM", 9): "LatentEM phase 1/3 VAE and V (to 10)",
        ("LatentEM", 10): "LatentEM phase 2/3 V and return model (to 15)", ("LatentEM", 15): "LatentEM phase 3/3 EM",
        ("LatentEM", 99): "LatentEM phase 3/3 EM"}
    assert UpdatesProgressBar.description(TD3BC(4, 2)) == "TD3BC"
    assert UpdatesProgressBar.description(BRAC(4, 2, behavior_steps=0)) == "BRAC"


def test_progress_bar_shows_updates_rate_time_left_phase_and_last_score(maze_root, monkeypatch, tmp_path, capsys):
    """BRAC with a 3-update behavior phase, 5 updates, one evaluation at update 5: the bar counts updates
    (n/5), names the phase it is in, shows updates/s and the time left, and after the evaluation the normalized
    score with the update it was measured at; Lightning's epoch label and v_num are gone."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(maze_root))
    dm = OfflineDataModule(MAZE_ID, batch_size=32, eval_episodes=1)
    model = BRAC(8, 2, behavior_steps=3, actor_hidden_dims=(16,), critic_hidden_dims=(16,), behavior_hidden_dims=(16,))
    fit(model, dm, tmp_path, max_steps=5, callbacks=[UpdatesProgressBar(refresh_rate=1)], val_check_interval=5,
        logger=L.pytorch.loggers.CSVLogger(tmp_path))
    lines = [line for line in bar_lines(capsys.readouterr().out) if not line.startswith("Validation")]
    by_count = {int(m.group(1)): line for line in lines if (m := re.search(r"\| (\d)/5 \[", line))}
    assert set(by_count) == {0, 1, 2, 3, 4, 5}
    assert by_count[2].startswith("BRAC phase 1/2 behavior policy (to 3):  40%|")
    assert by_count[4].startswith("BRAC phase 2/2 agent:  80%|")
    assert re.search(r"4/5 \[\d\d:\d\d<\d\d:\d\d, +[\d.]+ updates/s\]$", by_count[4]), by_count[4]
    final = lines[-1]
    score = re.search(r"5/5 \[\d\d:\d\d<00:00, +[\d.]+ updates/s, score=(-?[\d.]+) at update 5\]$", final)
    assert score, final
    assert float(score.group(1)) == pytest.approx(float(model.trainer.callback_metrics["val/normalized_score"]),
                                                  abs=0.05)
    assert not any("Epoch" in line or "v_num" in line or "perf/" in line for line in lines)


def test_a_resumed_run_bar_starts_at_the_checkpoints_update_count(maze_dm, tmp_path, capsys):
    trainer = fit(TD3BC(8, 2, hidden_dims=(16,)), maze_dm, tmp_path, max_steps=3)
    trainer.save_checkpoint(tmp_path / "three.ckpt")
    fit(TD3BC(8, 2, hidden_dims=(16,)), maze_dm, tmp_path, max_steps=5, callbacks=[UpdatesProgressBar()],
        ckpt_path=str(tmp_path / "three.ckpt"))
    counts = [int(m.group(1)) for line in bar_lines(capsys.readouterr().out) if (m := re.search(r"\| (\d)/5 ", line))]
    assert counts and counts[0] == 3 and counts[-1] == 5 and set(counts) == {3, 4, 5}, counts


# ------------------------------------------------------------------------------------------- RecordVideo callback
def test_record_video_logs_an_animated_evaluation_episode_to_tensorboard(maze_root, monkeypatch, tmp_path):
    """Every 2nd evaluation (updates 2, 4, 6 -> only 4) the callback logs the first validation episode, cut to 5
    steps, as an animated GIF image at the update count: 64x48, the reset frame plus 5 step frames (Pillow merges
    identical frames, adding their durations, so the total duration counts the frames)."""
    from io import BytesIO

    from PIL import Image, ImageSequence
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from lit_offrl.callbacks import RecordVideo

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(maze_root))
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    logger = L.pytorch.loggers.TensorBoardLogger(tmp_path, name="run")
    fit(TD3BC(8, 2, hidden_dims=(16,)), OfflineDataModule(MAZE_ID, batch_size=32, eval_episodes=1), tmp_path,
        max_steps=6, val_check_interval=2, logger=logger,
        callbacks=[RecordVideo(every_n_validations=2, max_steps=5, width=64, height=48, frame_every=1)])
    events = EventAccumulator(logger.log_dir, size_guidance={"images": 0})
    events.Reload()
    images = events.Images("val/episode_video")
    assert [image.step for image in images] == [4]
    gif = Image.open(BytesIO(images[0].encoded_image_string))
    assert gif.format == "GIF" and gif.size == (64, 48) == (images[0].width, images[0].height)
    durations = [frame.info["duration"] for frame in ImageSequence.Iterator(gif)]
    assert len(durations) >= 2 and sum(durations) == 6 * 20  # PointMaze renders at 50 fps: 20 ms a frame
