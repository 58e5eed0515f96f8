"""``python -m lit_offrl.recipes FAMILY COMMAND ...``: the recipe families' own commands (training the policies a
recipe drives, their status, AntMaze's build and probe), e.g. ``python -m lit_offrl.recipes antmaze status``.

Running a recipe module itself (``python -m lit_offrl.recipes.antmaze``) executes it a second time as
``__main__`` after the package's import has already registered it (runpy's "found in sys.modules" warning, and
two copies of its classes); dispatching from here runs the one imported module's ``main``.
"""

from __future__ import annotations

import sys

FAMILIES = ("antmaze", "adroit")


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in FAMILIES:
        given = f"'{argv[0]}'" if argv else "nothing"
        raise SystemExit(f"python -m lit_offrl.recipes: got {given}; give a recipe family first, one of "
                         f"{', '.join(FAMILIES)} (e.g. python -m lit_offrl.recipes antmaze status)")
    import importlib

    importlib.import_module(f"lit_offrl.recipes.{argv[0]}").main(argv[1:])


if __name__ == "__main__":
    main()
