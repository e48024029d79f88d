// Every runs operation of the official JS client against two pods (LANGGRAPH_URL, LANGGRAPH_URL_B).
// Prints one JSON object of what the servers answered; tests/e2e/test_background_runs.py checks it.
import { clientFor } from "./client.mjs";

const a = clientFor();
const b = clientFor(process.env.LANGGRAPH_URL_B);
const out = {};

const thread = await a.threads.create();
out.thread_id = thread.thread_id;
const run = await a.runs.create(thread.thread_id, "ledger", {
  input: { tag: "js", delay: 0.3 }, streamMode: ["values", "updates"], streamResumable: true,
});
out.created = run;
const joined = [];
for await (const part of b.runs.joinStream(thread.thread_id, run.run_id, { lastEventId: "-1" })) {
  joined.push(part.event);
}
out.joinStreamEvents = joined;
out.joined = await b.runs.join(thread.thread_id, run.run_id);
out.got = await b.runs.get(thread.thread_id, run.run_id);
out.listed = await b.runs.list(thread.thread_id, { limit: 5, status: "success" });
out.waited = await a.runs.wait(thread.thread_id, "ledger", { input: { tag: "wait" } });
const streamed = [];
for await (const part of a.runs.stream(thread.thread_id, "ledger", { input: { tag: "stream" }, streamMode: "updates" })) {
  streamed.push(part.event);
}
out.streamed = streamed;

const long = await a.runs.create(thread.thread_id, "ledger", { input: { tag: "long", delay: 600 } });
await b.runs.cancel(thread.thread_id, long.run_id, true, "interrupt");
out.cancelled = await b.runs.get(thread.thread_id, long.run_id);
try {
  const busy = await a.runs.create(thread.thread_id, "ledger", { input: { tag: "held", delay: 600 } });
  out.rejectHolder = busy.run_id;
  await b.runs.create(thread.thread_id, "ledger", { input: { tag: "no" }, multitaskStrategy: "reject" });
  out.rejected = null;
} catch (error) {
  out.rejected = { status: error.status };
}
await b.runs.cancelMany({ threadId: thread.thread_id, runIds: [out.rejectHolder], action: "rollback" });
out.batch = await a.runs.createBatch([
  { assistantId: "ledger", input: { tag: "b1" } }, { assistantId: "ledger", input: { tag: "b2" } },
]);
const stateless = await a.runs.create(null, "ledger", { input: { tag: "stateless" }, onCompletion: "keep" });
out.stateless = stateless;
out.statelessJoined = await b.runs.join(stateless.thread_id, stateless.run_id);
await a.runs.delete(thread.thread_id, run.run_id);
out.afterDelete = (await a.runs.list(thread.thread_id, { limit: 20 })).map((r) => r.run_id);
console.log(JSON.stringify(out));
