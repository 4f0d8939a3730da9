"""Assets through both clients on SQLite and PostgreSQL: materializations with their runs,
lineage from upstream keys, listing and bounds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from pydantic import ValidationError

from flowrpc import get_client
from flowrpc.assets import Asset as AssetDeclared
from flowrpc.assets import asset_keys, record_materialization
from flowrpc.client import InvalidRequest, ObjectNotFound
from flowrpc.schemas.objects import Asset
from flowrpc.states import Running

T0 = datetime(2024, 1, 1, tzinfo=UTC)
RAW, CLEAN, REPORT = "s3://bucket/raw.csv", "s3://bucket/clean.csv", "s3://bucket/report.html"


class Task:
    def __init__(self, name: str) -> None:
        self.name = name


async def task_runs(client: Any, *names: str) -> tuple[Any, list[Any]]:
    run = await client.create_flow_run(Task("assets"), state=Running())
    return run, [await client.create_task_run(Task(name), run.id, "0") for name in names]


async def test_materializations_record_runs_and_lineage(client):
    run, (extract, clean, report) = await task_runs(client, "extract", "clean", "report")
    made = await client.create_asset_materialization([RAW], extract.id, timestamp=T0)
    assert [asset.key for asset in made] == [RAW]
    assert isinstance(made[0], Asset)
    await client.create_asset_materialization(
        [CLEAN], clean.id, run.id, upstream_keys=[RAW], timestamp=T0 + timedelta(minutes=1)
    )
    await client.create_asset_materialization(
        [REPORT], report.id, upstream_keys=[CLEAN, RAW], timestamp=T0 + timedelta(minutes=2)
    )
    assets = {asset.key: asset for asset in await client.read_assets()}
    assert sorted(assets) == [CLEAN, RAW, REPORT]
    assert assets[RAW].upstream_keys == []
    assert assets[CLEAN].upstream_keys == [RAW]
    assert assets[REPORT].upstream_keys == [CLEAN, RAW]
    (made_clean,) = assets[CLEAN].materializations
    assert made_clean.task_run_id == clean.id and made_clean.flow_run_id == run.id
    assert made_clean.timestamp == T0 + timedelta(minutes=1)
    # The flow run left out is the task run's own.
    assert assets[REPORT].materializations[0].flow_run_id == run.id


async def test_an_upstream_never_materialized_is_an_asset_without_materializations(client):
    _, (task_run,) = await task_runs(client, "load")
    await client.create_asset_materialization(
        ["db://table"], task_run.id, upstream_keys=["api://x"]
    )
    (upstream,) = await client.read_assets(keys=["api://x"])
    assert upstream.materializations == [] and upstream.materialization_count == 0


async def test_materializations_newest_first_and_bounded(client):
    _, (task_run,) = await task_runs(client, "nightly")
    for day in range(5):
        await client.create_asset_materialization(
            [RAW], task_run.id, timestamp=T0 + timedelta(days=day)
        )
    (asset,) = await client.read_assets(materializations=3)
    assert asset.materialization_count == 5
    assert [m.timestamp for m in asset.materializations] == [
        T0 + timedelta(days=day) for day in (4, 3, 2)
    ]
    (asset,) = await client.read_assets(materializations=0)
    assert asset.materializations == [] and asset.materialization_count == 5


async def test_listing_pages_by_key(client):
    _, (task_run,) = await task_runs(client, "many")
    keys = [f"file://{n}" for n in range(5)]
    await client.create_asset_materialization(keys, task_run.id)
    page = await client.read_assets(limit=2, offset=1)
    assert [asset.key for asset in page] == keys[1:3]
    assert await client.read_assets(keys=[]) == []


async def test_materializations_outlive_their_flow_run(client):
    run, (task_run,) = await task_runs(client, "gone")
    await client.create_asset_materialization([RAW], task_run.id)
    await client.delete_flow_run(run.id)
    (asset,) = await client.read_assets()
    assert asset.materializations[0].task_run_id == task_run.id


async def test_bad_materializations_are_refused(client):
    run, (task_run,) = await task_runs(client, "t")
    with pytest.raises(ObjectNotFound) as refused:
        await client.create_asset_materialization([RAW], uuid4())
    assert refused.value.reason == "TASK_RUN_NOT_FOUND"
    with pytest.raises(InvalidRequest) as refused:
        await client.create_asset_materialization([RAW], task_run.id, uuid4())
    assert "belongs to flow run" in str(refused.value)
    with pytest.raises(InvalidRequest) as refused:
        await client.create_asset_materialization([], task_run.id)
    assert "asset_keys" in str(refused.value)
    with pytest.raises(InvalidRequest) as refused:
        await client.create_asset_materialization(["x" * 513], task_run.id)
    assert "asset_keys[0]" in str(refused.value) and "512" in str(refused.value)
    with pytest.raises(InvalidRequest) as refused:
        await client.read_assets(materializations=1001)
    assert "materializations" in str(refused.value)
    assert await client.read_assets() == []


def test_the_engine_helper_records_through_the_sync_client(api_url):
    with get_client(sync_client=True) as client:
        run = client.create_flow_run(Task("pipeline"), state=Running())
        extract, clean = (client.create_task_run(Task(n), run.id, "0") for n in ("e", "c"))
        record_materialization(client, [RAW], extract)
        made = record_materialization(
            client,
            [AssetDeclared(key=CLEAN), CLEAN],  # the same key twice is one asset
            clean,
            upstream=[RAW, CLEAN],  # never its own upstream
        )
        assert [(a.key, a.upstream_keys) for a in made] == [(CLEAN, [RAW])]
        (raw,) = client.read_assets(keys=[RAW])
    assert raw.materializations[0].task_run_id == extract.id
    assert raw.materializations[0].flow_run_id == run.id


@pytest.mark.parametrize(
    "key", ["no-scheme/path", "s3://with space", "", "s3://" + "k" * 508, "://missing"]
)
def test_asset_keys_are_uris_of_at_most_512_characters(key):
    with pytest.raises(ValidationError):
        AssetDeclared(key=key)


def test_valid_asset_keys():
    assert asset_keys(["s3://b/k.csv", AssetDeclared(key="file:///tmp/x"), "s3://b/k.csv"]) == [
        "s3://b/k.csv",
        "file:///tmp/x",
    ]
    assert AssetDeclared(key="s3://" + "k" * 507).key.endswith("k")
