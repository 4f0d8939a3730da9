"""@materialize through a real server: materializations recorded with their runs, lineage
inferred from the task graph, declared dependencies, with_options."""

from __future__ import annotations

import pytest

from flowrpc import flow, task
from flowrpc.assets import materialize


def test_asset_tasks_record_materializations_and_their_lineage(client):
    @materialize("s3://lake/raw.csv")
    def extract():
        return [3, 1, 2]

    @materialize("s3://lake/clean.csv", asset_deps=["postgres://crm/customers"])
    def clean(rows):
        return sorted(rows)

    @task
    def plain(rows):
        return rows

    @materialize("s3://lake/report.html")
    def report(rows):
        return f"{len(rows)} rows"

    @flow
    def pipeline():
        raw = extract()
        cleaned = clean.submit(raw)
        return report(plain(cleaned.result()))

    state = pipeline(return_state=True)
    assert state.result() == "3 rows"
    flow_run_id = state.state_details.flow_run_id
    assets = {asset.key: asset for asset in client.read_assets()}
    assert set(assets) >= {
        "s3://lake/raw.csv",
        "s3://lake/clean.csv",
        "s3://lake/report.html",
        "postgres://crm/customers",
    }
    assert sorted(assets["s3://lake/clean.csv"].upstream_keys) == [
        "postgres://crm/customers",
        "s3://lake/raw.csv",
    ]
    # report was fed through a plain task, not by an asset task: no inferred upstream.
    assert assets["s3://lake/report.html"].upstream_keys == []
    [made] = assets["s3://lake/raw.csv"].materializations
    assert made.flow_run_id == flow_run_id
    assert client.read_task_run(made.task_run_id).name.startswith("extract-")


def test_with_options_changes_keys_and_dependencies(client):
    @materialize("file:///tmp/a.txt")
    def write():
        return "a"

    moved = write.with_options(assets=["file:///tmp/b.txt"], asset_deps=["s3://x/y"], retries=1)
    assert [a.key for a in moved.assets] == ["file:///tmp/b.txt"] and moved.retries == 1
    assert [a.key for a in write.assets] == ["file:///tmp/a.txt"]

    @flow
    def run():
        write(), moved()

    run()
    assets = {asset.key: asset for asset in client.read_assets()}
    assert assets["file:///tmp/b.txt"].upstream_keys == ["s3://x/y"]
    assert assets["file:///tmp/a.txt"].materialization_count == 1


def test_asset_keys_are_checked_at_decoration():
    with pytest.raises(ValueError, match="must be a URI with a scheme"):
        materialize("not a uri")(lambda: None)
