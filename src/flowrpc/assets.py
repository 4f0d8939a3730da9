"""Assets: data a task run produces, named by a URI key (`s3://bucket/key.csv`), and what the
engine records when an asset task completes.

`Asset` is what `@materialize(...)` takes (a key string is turned into one); the engine calls
`record_materialization(client, assets, task_run, upstream)` after an asset task completes, with
the upstream assets it inferred from the task's inputs (an asset task fed by another asset task
depends on it) plus any declared ones. The server keeps each asset, its upstream keys and its
materializations; `client.read_assets()` reads them back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from flowrpc.tasks import Task

__all__ = [
    "Asset",
    "AssetProperties",
    "MaterializingTask",
    "asset_keys",
    "materialize",
    "record_materialization",
]

MAX_KEY_LENGTH = 512  # as in Prefect; the server refuses longer keys
# A URI with a scheme ("s3://...", "postgres://...", "file:///..."): Prefect's rule for keys.
_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://\S+$")


class AssetProperties(BaseModel):
    """Descriptive fields of an asset (kept on the client: the server stores keys and lineage)."""

    model_config = ConfigDict(frozen=True)

    name: str | None = None
    description: str | None = None
    url: str | None = None
    owners: list[str] | None = None


class Asset(BaseModel):
    """An asset, by its key: a URI of at most 512 characters with a scheme and no whitespace."""

    model_config = ConfigDict(frozen=True)

    key: str
    properties: AssetProperties | None = Field(default=None)

    @field_validator("key")
    @classmethod
    def _valid_key(cls, key: str) -> str:
        if len(key) > MAX_KEY_LENGTH:
            raise ValueError(f"Asset key cannot exceed {MAX_KEY_LENGTH} characters")
        if not _KEY.match(key):
            raise ValueError(
                f"Asset key {key[:60]!r} must be a URI with a scheme, such as "
                "'s3://bucket/key.csv', without whitespace"
            )
        return key

    def __hash__(self) -> int:
        return hash(self.key)


def asset_keys(assets: Iterable[Asset | str]) -> list[str]:
    """The keys of `assets` (Asset objects or key strings, validated), in order, each once."""
    keys: list[str] = []
    for item in assets:
        key = item.key if isinstance(item, Asset) else Asset(key=item).key
        if key not in keys:
            keys.append(key)
    return keys


def record_materialization(
    client: Any,
    assets: Sequence[Asset | str],
    task_run: Any,
    upstream: Iterable[Asset | str] = (),
) -> list[Any]:
    """Records through the (sync) client that `task_run` (a TaskRun, with its flow_run_id)
    materialized `assets` from the `upstream` assets; returns the server's Asset records.
    An asset never lists itself as its own upstream."""
    keys = asset_keys(assets)
    upstream_keys = [key for key in asset_keys(upstream) if key not in keys]
    return client.create_asset_materialization(
        keys, task_run.id, task_run.flow_run_id, upstream_keys=upstream_keys
    )


# ---- @materialize ----


def _assets(items: Iterable[Asset | str] | None) -> list[Asset]:
    return [item if isinstance(item, Asset) else Asset(key=item) for item in items or ()]


class MaterializingTask(Task):
    """A task whose successful runs materialize `assets` (Prefect's @materialize)."""

    def __init__(
        self,
        fn: Any,
        assets: Sequence[Asset | str],
        asset_deps: Sequence[Asset | str] | None = None,
        materialized_by: str | None = None,
        **task_options: Any,
    ) -> None:
        super().__init__(fn, **task_options)
        self.assets = _assets(assets)
        if not self.assets:
            raise ValueError("@materialize needs at least one asset key")
        self.asset_deps = _assets(asset_deps)
        self.materialized_by = materialized_by

    def with_options(
        self,
        assets: Sequence[Asset | str] | None = None,
        asset_deps: Sequence[Asset | str] | None = None,
        **options: Any,
    ) -> MaterializingTask:
        """A copy with other task options, other asset keys (`assets=`) or other declared
        upstream assets (`asset_deps=`)."""
        clone = super().with_options(**options)
        clone.assets = list(self.assets) if assets is None else _assets(assets)
        clone.asset_deps = list(self.asset_deps) if asset_deps is None else _assets(asset_deps)
        clone.materialized_by = self.materialized_by
        return clone  # type: ignore[return-value]


def materialize(
    *assets: Asset | str,
    by: str | None = None,
    asset_deps: Sequence[Asset | str] | None = None,
    **task_options: Any,
) -> Any:
    """`@materialize("s3://bucket/out.csv", ...)`: a task whose successful runs record that they
    materialized these assets, from the assets of the asset tasks that fed them (inferred from
    its inputs) and `asset_deps`. Takes @task's options too."""
    checked = _assets(assets)

    def decorate(fn: Any) -> MaterializingTask:
        return MaterializingTask(fn, checked, asset_deps, by, **task_options)

    return decorate
