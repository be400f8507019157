"""``python -m keel``: the same CLI as the ``keel`` console script."""

from keel.cli.main import main

if __name__ == "__main__":
    main()
