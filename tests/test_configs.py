"""The shipped YAML configs: each one trains through the CLI, and the trainer presets compose with them."""

from __future__ import annotations

import sys

import pytest
import yaml

from conftest import FAST, REPO, run_cli


ALGORITHM_CONFIGS = sorted(str(p.relative_to(REPO)) for p in REPO.glob("configs/*/*.yaml")
                           if p.parent.name != "trainer" and "OnlineDataModule" not in p.read_text())
# Online configs (OnlineDataModule: no dataset_id) are trained by tests/test_online.py.

# Domains whose datasets come from the Minari hub (no local recipe yet): their configs name one of these ids.
HUB_IDS = {
    "antmaze": {f"D4RL/antmaze/{maze}-v1" for maze in ("umaze", "umaze-diverse", "medium-play", "medium-diverse",
                                                         "large-play", "large-diverse")},
    "adroit": {f"D4RL/{task}/{data}-v2" for task in ("pen", "door", "hammer", "relocate")
               for data in ("human", "cloned", "expert")},
    "kitchen": {f"D4RL/kitchen/{data}-v2" for data in ("complete", "partial", "mixed")},
}
# (obs_dim, action_dim) of every dataset of a domain, as lit_offrl flattens its observations (every key of a dict
# space). Read from gymnasium_robotics 1.4.2: Minari's D4RL/antmaze/*-v1 were recorded on AntMaze_*-v4 (dict obs:
# observation 27 + achieved_goal 2 + desired_goal 2; D4RL's own flat antmaze obs is 29); AdroitHand{Pen,Door,Hammer,
# Relocate}-v1; D4RL/kitchen/* on FrankaKitchen-v1 with the dataset's four tasks_to_complete (observation 59 + goals:
# microwave 1, kettle 7, light switch 2, slide cabinet 1, bottom burner 2, both achieved and desired).
DOMAIN_SHAPES = {
    "antmaze": {(31, 8)},
    "adroit": {(45, 24), (39, 28), (46, 26), (39, 30)},   # pen, door, hammer, relocate
    "kitchen": {(81, 9), (83, 9)},                        # complete / partial (slide cabinet), mixed (bottom burner)
}
DOMAIN_CONFIGS = sorted(config for config in ALGORITHM_CONFIGS if config.rsplit("/", 1)[-1][:-5] in HUB_IDS)
# Training through the CLI takes seconds per config (the suite is near its time limit): every pointmaze /
# locomotion config, and of the hub domains' configs the one with the most data and model options (reward scale and
# shift, raw states, the Lagrange penalty); the in-process test below parses and builds the others.
TRAINED_CONFIGS = [config for config in ALGORITHM_CONFIGS if config not in DOMAIN_CONFIGS] + [
    "configs/cql/antmaze.yaml"]


@pytest.mark.parametrize("config", ["configs/quickstart.yaml", *TRAINED_CONFIGS])
def test_shipped_config_trains(config, maze_root, tmp_path, monkeypatch, capsys):
    """Every pointmaze / locomotion config and one hub-domain config (the dataset swapped for the small test
    maze) trains a few updates; test_domain_configs_parse_and_build_their_model covers the other domain configs.
    Through the CLI's `main` in this process: a subprocess per config would spend most of its time importing."""
    from lit_offrl.cli import main

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(maze_root))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lit-offrl"])
    try:
        main(["fit", "--config", str(REPO / config), *FAST, "--trainer.max_steps", "4", "--data.eval_episodes", "1"])
    except SystemExit as exc:
        assert exc.code in (0, None), capsys.readouterr().err[-3000:]
    saved = yaml.safe_load(next(tmp_path.glob("lightning_logs/*/config.yaml")).read_text())
    assert saved["model"]["class_path"].rsplit(".", 1)[-1] == yaml.safe_load((REPO / config).read_text())["model"]["class_path"]


@pytest.mark.parametrize("preset, key, value", [("cpu", "accelerator", "cpu"), ("cpu", "precision", "32-true"),
                                                ("ddp", "strategy", "ddp"),
                                                ("bf16", "precision", "bf16-mixed"), ("gpu", "accelerator", "gpu")])
def test_trainer_presets_compose_with_an_algorithm_config(preset, key, value, maze_root, tmp_path):
    result = run_cli(["fit", "--config", str(REPO / "configs/td3bc/pointmaze.yaml"), "--config",
                      str(REPO / f"configs/trainer/{preset}.yaml"), "--print_config"], maze_root, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = yaml.safe_load(result.stdout)
    assert printed["trainer"][key] == value
    assert printed["model"]["init_args"]["alpha"] == 2.5 and printed["trainer"]["max_steps"] == 1_000_000


def test_compiled_preset_composes_with_an_algorithm_config(maze_root, tmp_path):
    result = run_cli(["fit", "--config", str(REPO / "configs/td3bc/pointmaze.yaml"), "--config",
                      str(REPO / "configs/trainer/compiled.yaml"), "--print_config"], maze_root, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = yaml.safe_load(result.stdout)
    assert [c["class_path"] for c in printed["trainer"]["callbacks"]] == ["lit_offrl.callbacks.CompileUpdate"]
    assert printed["data"]["init_args"]["updates_per_step"] == 8 and printed["trainer"]["max_steps"] % 8 == 0


@pytest.mark.parametrize("config", ["configs/quickstart.yaml", *ALGORITHM_CONFIGS])
def test_shipped_config_names_a_dataset_the_project_can_build(config):
    """The dataset a config trains on by default is one `lit-offrl datasets make` builds (the hub is unreachable, and
    test_shipped_config_trains swaps the dataset, so a wrong default id would otherwise first fail in a user's run)."""
    from lit_offrl.recipes import RECIPES

    dataset_id = yaml.safe_load((REPO / config).read_text())["data"]["dataset_id"]
    domain = config.rsplit("/", 1)[-1][:-5]
    if domain in HUB_IDS and dataset_id not in RECIPES:  # (a local recipe for the domain may come later)
        assert dataset_id in HUB_IDS[domain], f"{config}: {dataset_id!r} is not a recipe's id nor a Minari {domain} id"
    else:
        assert dataset_id in RECIPES, f"{config}: {dataset_id!r} is not one of the recipes' ids"


def test_domain_configs_parse_and_build_their_model(tmp_path, monkeypatch):
    """Every AntMaze / Adroit / Kitchen config parses with the CLI's own parser (so every key is an argument of the
    model, the data module or the trainer, with a value of its type) and its model builds, with the YAML's values,
    for the shapes of every dataset of its domain. In process, without the datasets (they come from the hub)."""
    import importlib

    from lit_offrl.cli import LitOffRLCLI

    class ParseOnly(LitOffRLCLI):
        def before_instantiate_classes(self) -> None:
            pass

        def instantiate_classes(self) -> None:
            pass

    assert {config.rsplit("/", 1)[-1][:-5] for config in DOMAIN_CONFIGS} == set(HUB_IDS), DOMAIN_CONFIGS
    monkeypatch.setattr(sys, "argv", ["lit-offrl"])  # LightningCLI warns when it is given args and pytest's argv
    parser = ParseOnly(args=["--config", str(REPO / DOMAIN_CONFIGS[0])], run=False).parser
    parser.exit_on_error = False  # raise instead of printing usage and exiting
    misspelled = tmp_path / "misspelled.yaml"
    misspelled.write_text((REPO / "configs/iql/antmaze.yaml").read_text().replace("expectile:", "expectle:"))
    with pytest.raises(Exception, match="expectle"):  # the parser is strict: an unknown key fails
        parser.parse_args(["--config", str(misspelled)])

    problems = []
    for config in DOMAIN_CONFIGS:
        try:
            parsed = parser.parse_args(["--config", str(REPO / config)])
        except Exception as exc:
            problems.append(f"{config}: {str(exc)[:600]}")
            continue
        given = yaml.safe_load((REPO / config).read_text())["model"]["init_args"]
        init_args = {k: v for k, v in parsed.model.init_args.as_dict().items() if k not in ("obs_dim", "action_dim")}
        module, _, name = parsed.model.class_path.rpartition(".")
        algorithm = getattr(importlib.import_module(module), name)
        if "horizon" in init_args and parsed.data.init_args.sequence_length != init_args["horizon"]:
            problems.append(f"{config}: data.sequence_length {parsed.data.init_args.sequence_length} != model.horizon")
        for obs_dim, action_dim in sorted(DOMAIN_SHAPES[config.rsplit("/", 1)[-1][:-5]]):
            try:
                model = algorithm(obs_dim=obs_dim, action_dim=action_dim, **init_args)
            except Exception as exc:
                problems.append(f"{config} with obs_dim {obs_dim}, action_dim {action_dim}: {type(exc).__name__}: {exc}")
                continue
            plain = {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in model.hparams.items()}
            differing = {k: (v, plain.get(k)) for k, v in given.items() if plain.get(k) != v}
            if differing:
                problems.append(f"{config}: the model's hyperparameters differ from the YAML's: {differing}")
    assert not problems, "\n".join(problems)
