"""`python -m efficientformer`: the command line."""

from efficientformer.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
