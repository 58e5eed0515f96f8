"""`python cli.py fit|validate ...`: the lit_offrl CLI from a checkout (same as the `lit-offrl` command)."""

from lit_offrl.cli import main

if __name__ == "__main__":
    main()
