"""`python -m flowrpc.cli`: the `flowrpc` command."""

from flowrpc.cli import main

main()
