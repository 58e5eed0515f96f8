"""`lit-offrl datasets`: make lit_offrl's recipe datasets and inspect local Minari datasets.

    lit-offrl datasets make lit-offrl/maze2d/umaze-v0 [--steps N] [--seed S]   # build into the Minari root
    lit-offrl datasets make lit-offrl/hopper/medium-v0 [--train-steps N]       # locomotion: SAC run length
    lit-offrl datasets list                                                    # recipe ids and local datasets
    lit-offrl datasets show lit-offrl/maze2d/umaze-v0                          # a local dataset's metadata

The Minari root is `MINARI_DATASETS_PATH` or Minari's default (`~/.minari/datasets`). Bad input (an unknown
id, a bad argument, an id that exists already, a broken dataset to show) prints one `lit-offrl datasets: error: ...`
line on stderr and returns 2; a failed recipe check returns 1. `list` marks broken local datasets (half-written,
unreadable metadata, truncated HDF5) with what is wrong and the fix; `make` deletes a broken folder of its id,
saying so, and builds it again.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import textwrap
import time
from typing import Any, NoReturn

from lit_offrl.errors import DatasetError, UserError

PROG = "lit-offrl datasets"


class _Parser(argparse.ArgumentParser):
    """argparse that raises `UserError` (one line, no usage dump) instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} (see `{self.prog} --help`)")


def _count(minimum: int):
    """argparse type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Make lit_offrl's recipe datasets and inspect local Minari datasets.")
    commands = parser.add_subparsers(dest="command", metavar="{make,list,show}", required=True,
                                     parser_class=_Parser)
    make = commands.add_parser("make", help="build a recipe dataset into the local Minari root",
                               description="Build a recipe dataset into the local Minari root.")
    make.add_argument("dataset_id", metavar="ID", help="a recipe id (see `lit-offrl datasets list`)")
    make.add_argument("--steps", type=_count(1), default=None, metavar="N",
                      help="number of transitions (default: the recipe's, 1,000,000)")
    make.add_argument("--seed", type=_count(0), default=None, metavar="S", help="build seed (default: the recipe's, 0)")
    make.add_argument("--train-steps", type=_count(1), default=None, metavar="N",
                      help="locomotion recipes: updates of the SAC run the levels come from (default: the recipe's, "
                           "200,000)")
    make.set_defaults(handler=_make)
    listing = commands.add_parser("list", help="recipe ids lit_offrl can build and the local datasets",
                                  description="List the recipe ids lit_offrl can build and the local datasets.")
    listing.set_defaults(handler=_list)
    show = commands.add_parser("show", help="a local dataset's metadata",
                               description="Print a local dataset's metadata.")
    show.add_argument("dataset_id", metavar="ID", help="a local Minari dataset id")
    show.set_defaults(handler=_show)
    return parser


def run_tool(prog: str, parser: argparse.ArgumentParser, handler, argv: list[str]) -> int:
    """Parse `argv` and run `handler(args)` for one of the `lit-offrl` tools (datasets, export, record, report):
    a `UserError` prints one `PROG: error: ...` line and returns 2; `--help` returns 0."""
    try:
        return handler(parser.parse_args(argv))
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0


def main(argv: list[str]) -> int:
    """Run `lit-offrl datasets ARGV`; returns the exit status (0 ok, 1 failed recipe check, 2 bad input)."""
    return run_tool(PROG, _parser(), lambda args: args.handler(args), argv)


# ----------------------------------------------------------------------------------------------------------------
# make
# ----------------------------------------------------------------------------------------------------------------


def _make(args: argparse.Namespace) -> int:
    from lit_offrl.data import minari_io, registry

    dataset_id = args.dataset_id
    if dataset_id not in registry.RECIPES:
        raise DatasetError(f"no lit_offrl recipe makes '{dataset_id}'; recipe ids: {', '.join(registry.RECIPES)} "
                           f"(`lit-offrl datasets list` describes them).")
    damage = minari_io.check_local(dataset_id)
    if damage is None and minari_io.is_local(dataset_id):
        raise DatasetError(_exists_message(dataset_id, minari_io.local_root()))
    options = {key: value for key, value in (("steps", args.steps), ("seed", args.seed),
                                             ("train_steps", args.train_steps)) if value is not None}
    if "train_steps" in options and "train_steps" not in inspect.signature(registry.RECIPES[dataset_id]).parameters:
        raise UserError(f"--train-steps applies to the locomotion recipes, not to '{dataset_id}'.")
    if damage is not None:  # what a killed build leaves, or a damaged file: `minari delete` cannot read it
        minari_io.remove_broken(dataset_id, damage)
    print(f"lit_offrl: building '{dataset_id}' in {minari_io.local_root()}", flush=True)
    start = time.perf_counter()
    try:
        dataset = registry.RECIPES[dataset_id](progress=True, **options)
    except FileExistsError:  # created by someone else since the check above
        raise DatasetError(_exists_message(dataset_id, minari_io.local_root())) from None
    except RuntimeError as exc:  # a recipe check failed; nothing was written
        print(f"{PROG}: error: building '{dataset_id}' failed: {exc}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - start
    summary = registry.summarize(dataset)
    normalized = summary["normalized_return"]
    print(f"{dataset_id}: {summary['episodes']:,} episodes, {summary['steps']:,} steps, "
          f"mean return {summary['mean_return']:.2f} (std {summary['std_return']:.2f}), normalized return of the "
          f"data {'n/a' if normalized is None else f'{normalized:.1f}'} (x100; ref_min {summary['ref_min_score']:.2f}, "
          f"ref_max {summary['ref_max_score']:.2f}), built in {seconds:.1f} s")
    return 0


def _exists_message(dataset_id: str, root: Any) -> str:
    return (f"dataset '{dataset_id}' already exists in {root}; delete it first with `minari delete {dataset_id}` "
            f"(same MINARI_DATASETS_PATH) and run make again.")


# ----------------------------------------------------------------------------------------------------------------
# list
# ----------------------------------------------------------------------------------------------------------------


def _local_datasets() -> dict[str, dict | Any]:
    """Local dataset id -> its metadata, or the `minari_io.Damage` that says why it is broken."""
    from lit_offrl.data import minari_io

    local: dict[str, dict | Any] = {}
    for dataset_id in minari_io.local_dataset_ids():
        damage = minari_io.check_local(dataset_id)
        if damage is None:
            path = minari_io.dataset_folder(dataset_id) / "data" / "metadata.json"
            local[dataset_id] = json.loads(path.read_text())
        else:
            local[dataset_id] = damage
    return local


def _list(args: argparse.Namespace) -> int:
    from lit_offrl.data import minari_io, registry

    local = _local_datasets()
    width = max(len(i) for i in [*registry.RECIPES, *local])
    print("Datasets lit_offrl can build (`lit-offrl datasets make ID`; * = already in the local root, "
          "! = there but broken):")
    for dataset_id, description in registry.DESCRIPTIONS.items():
        mark = " " if dataset_id not in local else "*" if isinstance(local[dataset_id], dict) else "!"
        print(f"{mark} {dataset_id:<{width}}  {description}")
    print(f"\nLocal datasets in {minari_io.local_root()}:")
    if not local:
        print("  none")
    for dataset_id, metadata in local.items():
        if isinstance(metadata, dict):
            detail = f"{int(metadata['total_episodes']):,} episodes, {int(metadata['total_steps']):,} steps"
        else:
            detail = (f"BROKEN: {metadata.path}: {metadata.problem}; {minari_io.repair_hint(dataset_id)} "
                      f"(not `minari delete`, which cannot read it)")
        print(f"  {dataset_id:<{width}}  {detail}")
    return 0


# ----------------------------------------------------------------------------------------------------------------
# show
# ----------------------------------------------------------------------------------------------------------------


def _env_summary(spec_json: Any) -> str | None:
    """`ID (key=value, ...)` of a serialized env spec, leaving out long kwargs such as maze maps."""
    if not spec_json:
        return None
    try:
        spec = json.loads(spec_json) if isinstance(spec_json, str) else dict(spec_json)
    except (TypeError, ValueError):
        return str(spec_json)
    kwargs = ", ".join(f"{k}={v!r}" for k, v in (spec.get("kwargs") or {}).items() if len(repr(v)) <= 40)
    limit = spec.get("max_episode_steps")
    extra = ", ".join(part for part in (kwargs, f"max_episode_steps={limit}" if limit else "") if part)
    return f"{spec.get('id')}" + (f" ({extra})" if extra else "")


def _show(args: argparse.Namespace) -> int:
    from minari.storage.local import parse_dataset_id

    from lit_offrl.data import minari_io, registry

    dataset_id = args.dataset_id
    try:
        parse_dataset_id(dataset_id)
    except (ValueError, TypeError):
        raise DatasetError(f"'{dataset_id}' is not a Minari dataset id: ids look like 'namespace/name-vN' "
                           f"(e.g. 'lit-offrl/maze2d/umaze-v0').") from None
    if not minari_io.is_local(dataset_id) and not minari_io.dataset_folder(dataset_id).exists():
        hint = (f"build it with `lit-offrl datasets make {dataset_id}`" if dataset_id in registry.RECIPES
                else f"download it with `minari download {dataset_id}`")
        local = minari_io.local_dataset_ids()
        raise DatasetError(f"'{dataset_id}' is not in the local root {minari_io.local_root()} "
                           f"(local datasets: {', '.join(local) if local else 'none'}); {hint}.")
    dataset = minari_io.open_local(dataset_id)  # a broken dataset: one line naming the file and the fix
    metadata = dataset.storage.metadata
    rows = [
        ("id", dataset_id),
        ("path", str(minari_io.local_root() / dataset_id)),
        ("episodes", f"{dataset.total_episodes:,}"),
        ("steps", f"{dataset.total_steps:,}"),
        ("observation space", str(dataset.observation_space)),
        ("action space", str(dataset.action_space)),
        ("env", _env_summary(metadata.get("env_spec"))),
        ("eval env", _env_summary(metadata.get("eval_env_spec"))),
        ("ref_min_score", metadata.get("ref_min_score")),
        ("ref_max_score", metadata.get("ref_max_score")),
        ("algorithm_name", metadata.get("algorithm_name")),
        ("author", ", ".join(sorted(map(str, metadata["author"]))) if metadata.get("author") else None),
        ("code_permalink", metadata.get("code_permalink")),
        ("minari_version", metadata.get("minari_version")),
    ]
    for name, value in rows:
        print(f"{name + ':':<19}{'n/a' if value is None else value}")
    description = metadata.get("description")
    print("description:")
    print(textwrap.fill(str(description), width=110, initial_indent="  ", subsequent_indent="  ")
          if description else "  n/a")
    return 0
