"""What the async and sync clients share: configuration, stubs, nesting of `with` blocks."""

from __future__ import annotations

from typing import Any

from flowrpc.client.channel import ChannelConfig


class BaseClient:
    def __init__(self, config: ChannelConfig) -> None:
        self._config = config
        self._channel: Any = None
        self._stubs: dict[type, Any] = {}
        self._depth = 0  # nested `with client:` blocks share one channel

    @property
    def api_url(self) -> str:
        """The grpc target this client connects to."""
        return self._config.target

    def _rpc(self, stub_cls: type, method: str) -> Any:
        if self._channel is None:
            raise RuntimeError(
                "The client is not open: use it inside `async with get_client() as client:` "
                "(or `with get_client(sync_client=True) as client:`)"
            )
        stub = self._stubs.get(stub_cls)
        if stub is None:
            stub = self._stubs[stub_cls] = stub_cls(self._channel)
        return getattr(stub, method)

    def _enter(self, open_channel: Any) -> None:
        if self._depth == 0:
            self._channel = open_channel()
        self._depth += 1

    def _exit(self) -> Any:
        """The channel to close once the outermost block exits, else None."""
        self._depth -= 1
        if self._depth > 0:
            return None
        channel, self._channel = self._channel, None
        self._stubs.clear()
        return channel

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.api_url!r})"
