"""``python -m ledger.cli``: the ``credits`` command without the console script."""

from ledger.cli.app import main

if __name__ == "__main__":
    main()
