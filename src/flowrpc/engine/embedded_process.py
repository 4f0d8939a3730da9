"""The embedded server's process, started by engine/embedded.py: serves with the embedded
settings, prints "serving <address>" (or why it could not start) as its first line, and stops
gracefully once its stdin closes (its parent exited or died)."""

from __future__ import annotations

import sys

from flowrpc.engine.embedded import embedded_settings


def main() -> None:
    from flowrpc.server.app import start_in_thread

    settings = embedded_settings()
    try:
        server = start_in_thread(settings, name="flowrpc-embedded")
    except Exception as error:
        print(f"the embedded server could not start: {error}", flush=True)
        sys.exit(1)
    print(f"serving 127.0.0.1:{server.port}", flush=True)
    sys.stdin.read()  # returns at end of file: when the parent closes the pipe or dies
    server.stop(settings.grace_seconds)


if __name__ == "__main__":
    main()
