from flowrpc.v1 import flow_run_service_pb2 as fr
from flowrpc.v1 import flow_service_pb2 as fl


async def test_create_and_get(stubs):
    flow = (await stubs.flows.CreateFlow(fl.CreateFlowRequest(name="etl"))).flow
    created = await stubs.flow_runs.CreateFlowRun(fr.CreateFlowRunRequest(flow_id=flow.id))
    got = await stubs.flow_runs.GetFlowRun(fr.GetFlowRunRequest(id=created.flow_run.id))
    print(got)
    assert got.flow_run.state.name == "Pending"
