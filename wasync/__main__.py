"""`python -m wasync`."""

from wasync.cli import main

main()
