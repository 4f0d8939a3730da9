// WatchFlowRuns from the client's side: the server's messages (snapshot pages, the marker,
// batches of changes, progress) as one event at a time.
import type { FlowRun } from "./gen/flowrpc/v1/flow_run_pb.js";
import type { WatchFlowRunsResponse } from "./gen/flowrpc/v1/flow_run_service_pb.js";
import type { State } from "./gen/flowrpc/v1/state_pb.js";

/**
 * One event of a watch. "snapshot": a run the filter selected when the watch started (newest
 * first). "marker": the snapshot is complete (sent once; neither is sent when resuming from a
 * cursor). "change": a committed state change of a selected run (`flowRun` as it was right
 * after it, `state` the new state), in commit order. "progress": no matching change for a
 * while. Every event but a snapshot carries a cursor: watching again with it continues right
 * after that event.
 */
export type FlowRunWatchEvent =
  | { readonly type: "snapshot"; readonly flowRun: FlowRun }
  | { readonly type: "marker"; readonly cursor: string }
  | { readonly type: "change"; readonly flowRun: FlowRun; readonly state: State; readonly cursor: string }
  | { readonly type: "progress"; readonly cursor: string };

/** The events one message of the stream carries. */
export function watchEvents(message: WatchFlowRunsResponse): FlowRunWatchEvent[] {
  const { event } = message;
  switch (event.case) {
    case "snapshot":
      return event.value.flowRuns.map((flowRun) => ({ type: "snapshot", flowRun }));
    case "marker":
      return [{ type: "marker", cursor: event.value.cursor }];
    case "changes":
      return event.value.changes.map(({ flowRun, state, cursor }) => ({
        type: "change",
        flowRun: flowRun!,
        state: state ?? flowRun!.state!,
        cursor,
      }));
    case "progress":
      return [{ type: "progress", cursor: event.value.cursor }];
    default:
      return []; // a kind of message newer than this client
  }
}
