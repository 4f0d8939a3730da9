"""`flowrpc flow-run ls|inspect|cancel|delete|history` against a real server, in-process."""

from __future__ import annotations

import json
from types import SimpleNamespace
from uuid import UUID

import pytest
from cli_support import flowrpc, seed, serve

from flowrpc import get_client
from flowrpc.schemas.objects import TaskRunResult
from flowrpc.states import Completed, Failed, Running


@pytest.fixture
def address(tmp_path):
    yield from serve(tmp_path)


def ids(result) -> list[str]:
    assert result.exit_code == 0, result.output
    return [run["id"] for run in json.loads(result.stdout)]


def test_ls_filters_sorts_and_prints_json_or_a_table(address):
    runs = seed(address)
    overdue = [str(run.id) for run in runs.overdue]
    everything = ids(flowrpc(address, "flow-run", "ls", "--json"))
    # Newest expected start first: the future run, then the rest (created now), then the overdue.
    assert everything[0] == str(runs.future.id)
    assert everything[-2:] == overdue[::-1]
    assert len(everything) == 6

    def ls(*flags: str) -> list[str]:
        return ids(flowrpc(address, "flow-run", "ls", "--json", *flags))

    assert ls("--state", "Failed") == [str(runs.failed.id)]
    assert set(ls("--state", "Failed", "--state", "Completed")) == {
        str(runs.completed.id),
        str(runs.failed.id),
    }
    assert set(ls("--state-type", "SCHEDULED", "--since", "-3h", "--until", "now")) == set(overdue)
    assert ls("--state-type", "scheduled", "--since", "+30m") == [str(runs.future.id)]
    assert ls("--flow", "report") == [str(runs.running.id)]
    assert set(ls("--deployment", "nightly")) == {*overdue, str(runs.future.id)}
    assert ls("--flow", "report", "--deployment", "nightly") == []
    assert ls("--tag", "a", "--tag", "b") == [str(runs.running.id)]
    assert ls("--tag", "a", "--tag", "c") == []
    assert ls("--sort", "expected_start_time_asc", "--limit", "2") == overdue

    [failed] = json.loads(flowrpc(address, "flow-run", "ls", "--json", "--state", "Failed").stdout)
    assert failed["state"]["message"] == "disk full" and failed["state_type"] == "FAILED"

    table = flowrpc(address, "flow-run", "ls", "--state-type", "running", "--state", "Running")
    assert table.exit_code == 0
    header, row = table.stdout.splitlines()
    assert header.split()[:4] == ["ID", "FLOW", "NAME", "STATE"]
    assert row.split()[:4] == [str(runs.running.id), "report", runs.running.name, "Running"]


def test_ls_pages_past_200_runs(address):
    flow = SimpleNamespace(name="many")
    with get_client(sync_client=True, api_url=address) as client:
        made = {str(client.create_flow_run(flow).id) for _ in range(205)}
    assert set(ids(flowrpc(address, "flow-run", "ls", "--json", "--limit", "500"))) == made
    assert len(ids(flowrpc(address, "flow-run", "ls", "--json", "--limit", "203"))) == 203


def test_inspect_shows_fields_state_history_and_the_task_graph(address):
    runs = seed(address)
    with get_client(sync_client=True, api_url=address) as client:
        run = runs.completed
        first = client.create_task_run(SimpleNamespace(name="extract"), run.id, "0")
        second = client.create_task_run(
            SimpleNamespace(name="load"),
            run.id,
            "0",
            task_inputs={"rows": [TaskRunResult(id=first.id)]},
        )
        client.set_task_run_state(first.id, Running())
        client.set_task_run_state(first.id, Completed())
        assert client.read_task_run(second.id).state_name == "Pending"

    shown = flowrpc(address, "flow-run", "inspect", str(run.id))
    assert shown.exit_code == 0, shown.output
    text = shown.stdout
    assert f"name             {run.name}" in text
    assert f"flow             etl ({run.flow_id})" in text
    assert "state            Completed" in text
    history = text[text.index("State history") : text.index("Task runs")]
    assert [line.split()[2] for line in history.splitlines()[2:] if line.strip()] == [
        "Pending",
        "Running",
        "Completed",
    ]
    assert "Task runs: 2 (1 dependency): 1 Completed, 1 Pending" in text

    as_json = flowrpc(address, "flow-run", "inspect", str(runs.failed.id), "--json")
    assert as_json.exit_code == 0
    shown = json.loads(as_json.stdout)
    assert shown["flow_run"]["id"] == str(runs.failed.id)
    assert [state["name"] for state in shown["states"]] == ["Pending", "Running", "Failed"]
    assert shown["graph"] == []


def test_inspect_an_unknown_or_malformed_id(address):
    unknown = flowrpc(address, "flow-run", "inspect", "00000000-0000-7000-8000-000000000000")
    assert unknown.exit_code == 1
    assert unknown.stderr.startswith("flowrpc: error: Flow run '00000000-")
    assert unknown.stderr.count("\n") == 1 and "Traceback" not in unknown.output
    malformed = flowrpc(address, "flow-run", "inspect", "not-an-id")
    assert malformed.exit_code == 2 and "Invalid value" in malformed.stderr


def states(address: str, *runs) -> list[str]:
    with get_client(sync_client=True, api_url=address) as client:
        return [client.read_flow_run(run.id).state_name for run in runs]


def test_cancel_by_filter_asks_first_and_leaves_final_runs_alone(address):
    runs = seed(address)
    selected = ("flow-run", "cancel", "--flow", "etl")
    dry = flowrpc(address, *selected, "--dry-run")
    assert (dry.exit_code, dry.stdout) == (0, "3 flow runs would be cancelled\n")

    declined = flowrpc(address, *selected, input="n\n")
    assert declined.exit_code == 1
    assert "Cancel 3 flow runs? [y/N]" in declined.stderr
    assert "nothing cancelled" in declined.stderr
    no_answer = flowrpc(address, *selected)  # stdin closed: no is the answer
    assert no_answer.exit_code == 1 and "nothing cancelled" in no_answer.stderr
    assert states(address, *runs.overdue, runs.future) == ["Scheduled"] * 3

    agreed = flowrpc(address, *selected, input="y\n")
    assert agreed.exit_code == 0, agreed.output
    # Scheduled runs have no infrastructure to stop: Prefect's rules make them Cancelled.
    # (CliRunner echoes the answer into stdout, as a terminal would show it.)
    assert agreed.stdout.endswith("\ncancelled 3 flow runs (3 Cancelled)\n")
    assert states(address, *runs.overdue, runs.future) == ["Cancelled"] * 3
    assert states(address, runs.completed, runs.failed) == ["Completed", "Failed"]

    # --yes asks nothing; a running run goes to Cancelling (its worker would stop it).
    running = flowrpc(
        address, "flow-run", "cancel", "--state-type", "running", "--yes", TTY_COMPATIBLE="1"
    )
    assert (running.exit_code, running.stdout) == (0, "cancelled 1 flow run (1 Cancelling)\n")
    assert "[y/N]" not in running.stderr
    assert "cancelling" in running.stderr and "1/1" in running.stderr
    nothing = flowrpc(address, *selected, "--yes")
    assert (nothing.exit_code, nothing.stdout) == (0, "no flow run to cancel\n")


def test_cancel_by_id_reports_refusals_and_unknown_ids(address):
    runs = seed(address)
    both = flowrpc(address, "flow-run", "cancel", str(runs.future.id), str(runs.completed.id), "-y")
    assert both.exit_code == 1
    assert both.stdout == "cancelled 1 flow run (1 Cancelled)\n"
    assert "1 flow run refused:" in both.stderr
    assert f"{runs.completed.id}: ABORT Run is already in terminal state" in both.stderr
    assert states(address, runs.future, runs.completed) == ["Cancelled", "Completed"]

    unknown = "00000000-0000-7000-8000-000000000000"
    missing = flowrpc(address, "flow-run", "cancel", str(runs.overdue[0].id), unknown, "-y")
    assert missing.exit_code == 1
    assert missing.stderr == f"flowrpc: error: no flow run has the id {unknown}\n"
    assert states(address, runs.overdue[0]) == ["Scheduled"]


def test_cancel_and_delete_need_a_selection(address):
    for command in ("cancel", "delete"):
        bare = flowrpc(address, "flow-run", command, "--yes")
        assert bare.exit_code == 2 and "say which flow runs" in bare.stderr
        mixed = flowrpc(address, "flow-run", command, "--all", "--state", "Late", "--yes")
        assert mixed.exit_code == 2 and "--all selects every flow run" in mixed.stderr


def count(address: str) -> int:
    with get_client(sync_client=True, api_url=address) as client:
        return client.count_flow_runs()


def test_delete_by_filter_by_id_and_all(address):
    runs = seed(address)
    dry = flowrpc(address, "flow-run", "delete", "--deployment", "nightly", "--dry-run")
    assert (dry.exit_code, dry.stdout) == (0, "3 flow runs would be deleted\n")
    declined = flowrpc(address, "flow-run", "delete", "--deployment", "nightly", input="no\n")
    assert declined.exit_code == 1 and "nothing deleted" in declined.stderr
    assert count(address) == 6

    # As in a terminal (TTY_COMPATIBLE): a progress bar on stderr counts the streamed results.
    deleted = flowrpc(
        address, "flow-run", "delete", "--deployment", "nightly", "--yes", TTY_COMPATIBLE="1"
    )
    assert (deleted.exit_code, deleted.stdout) == (0, "deleted 3 flow runs\n")
    assert "deleting" in deleted.stderr and "3/3" in deleted.stderr
    assert count(address) == 3

    by_id = flowrpc(address, "flow-run", "delete", str(runs.failed.id), "--yes")
    assert (by_id.exit_code, by_id.stdout) == (0, "deleted 1 flow run\n")
    again = flowrpc(address, "flow-run", "delete", str(runs.failed.id), "--yes")
    assert again.exit_code == 1 and "no flow run has the id" in again.stderr

    everything = flowrpc(address, "flow-run", "delete", "--all", input="y\n")
    assert everything.exit_code == 0
    assert everything.stdout.endswith("\ndeleted 2 flow runs\n")
    assert count(address) == 0


def test_history_charts_runs_per_state_in_the_window(address):
    seed(address)
    chart = flowrpc(address, "flow-run", "history")
    assert chart.exit_code == 0, chart.output
    lines = chart.stdout.splitlines()
    assert "(24 intervals of 1h)" in lines[0]
    bars = {line.split()[0]: int(line.split()[-1]) for line in lines[1:]}
    # The last day holds the two overdue runs and the three created now; not the future one.
    assert bars == {"Scheduled": 2, "Completed": 1, "Failed": 1, "Running": 1}
    assert "█" * 40 in lines[1]

    ahead = flowrpc(address, "flow-run", "history", "--since", "now", "--until", "+2h", "--json")
    intervals = json.loads(ahead.stdout)
    assert len(intervals) == 24
    counted = [(s["state_name"], s["count_runs"]) for i in intervals for s in i["states"]]
    assert counted == [("Scheduled", 1)]

    narrowed = flowrpc(
        address, "flow-run", "history", "--flow", "report", "--interval", "2h", "--json"
    )
    intervals = json.loads(narrowed.stdout)
    assert len(intervals) == 12
    assert [s["state_name"] for i in intervals for s in i["states"]] == ["Running"]

    empty = flowrpc(address, "flow-run", "history", "--since", "-10d", "--until", "-9d")
    assert empty.exit_code == 0 and "no flow runs in this window" in empty.stdout
    backwards = flowrpc(address, "flow-run", "history", "--since", "now", "--until", "-1h")
    assert backwards.exit_code == 2 and "must be after --since" in backwards.stderr


def test_flow_deployment_and_work_pool_listings(address):
    runs = seed(address)
    with get_client(sync_client=True, api_url=address) as client:
        from flowrpc.schemas.actions import WorkPoolCreate

        client.create_work_pool(WorkPoolCreate(name="k8s", type="kubernetes"))

    flows = json.loads(flowrpc(address, "flow", "ls", "--json").stdout)
    assert [flow["name"] for flow in flows] == ["etl", "report"]
    deployments = json.loads(flowrpc(address, "deployment", "ls", "--json").stdout)
    assert [UUID(d["id"]) for d in deployments] == [runs.deployment_id]
    assert flowrpc(address, "deployment", "ls", "--flow", "report", "--json").stdout == "[]\n"
    pools = json.loads(flowrpc(address, "work-pool", "ls", "--json").stdout)
    assert [(pool["name"], pool["type"]) for pool in pools] == [("k8s", "kubernetes")]

    table = flowrpc(address, "deployment", "ls").stdout.splitlines()
    assert table[1].split()[:3] == ["etl/nightly", str(runs.deployment_id), "no"]
    assert [line.split()[0] for line in flowrpc(address, "flow", "ls").stdout.splitlines()] == [
        "NAME",
        "etl",
        "report",
    ]
    assert flowrpc(address, "work-pool", "ls").stdout.splitlines()[1].split()[:3] == [
        "k8s",
        "kubernetes",
        "no",
    ]
    too_many = flowrpc(address, "flow", "ls", "--limit", "201")
    assert too_many.exit_code == 2


def test_names_and_messages_are_printed_as_they_are(address):
    odd = "[bold]x[/] :smile: [/red]"
    with get_client(sync_client=True, api_url=address) as client:
        run = client.create_flow_run(
            SimpleNamespace(name=odd), name=odd, tags=[odd], state=Failed(message=odd)
        )
    listed = flowrpc(address, "flow-run", "ls")
    assert listed.exit_code == 0, listed.output
    assert listed.stdout.count(odd) == 2  # flow and run names
    shown = flowrpc(address, "flow-run", "inspect", str(run.id))
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.count(odd) >= 4  # name, flow, tags, message (twice: state history)
    assert flowrpc(address, "flow", "ls").stdout.count(odd) == 1
