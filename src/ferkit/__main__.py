"""Allow `python -m ferkit ...` (and `torchrun -m ferkit ...`)."""

from ferkit.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
