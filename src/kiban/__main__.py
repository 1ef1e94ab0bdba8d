"""``python -m kiban``: the same as the ``kiban`` command."""

from kiban.cli import main

if __name__ == "__main__":
    main()
