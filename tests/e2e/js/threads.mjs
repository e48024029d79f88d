// Every threads operation of the official JS client (LANGGRAPH_URL; the test graphs, ledger among them).
// Prints one JSON object of what the server answered; tests/e2e/test_thread_ops.py checks it against
// the service and PostgreSQL. A call that fails unexpectedly throws: node exits non-zero, the test fails.
import { clientFor, statusOf } from "./client.mjs";

const client = clientFor();
const tag = process.env.TAG;
const out = {};

const id = crypto.randomUUID();
out.id = id;
out.created = await client.threads.create({ threadId: id, graphId: "ledger", metadata: { js: tag, n: 1 } });
out.again = await client.threads.create({ threadId: id, ifExists: "do_nothing", metadata: { other: true } });
out.raised = await statusOf(() => client.threads.create({ threadId: id, ifExists: "raise" }));
out.got = await client.threads.get(id);
out.updated = await client.threads.update(id, { metadata: { n: 2, owner: "js" } });

out.waited = await client.runs.wait(id, "ledger", { input: { tag: "first" } });
out.state = await client.threads.getState(id);
out.updateState = await client.threads.updateState(id, { values: { log: ["manual"] }, asNode: "record" });
out.stateAfter = await client.threads.getState(id);
out.stateAtFirst = await client.threads.getState(id, out.state.checkpoint.checkpoint_id);
out.history = await client.threads.getHistory(id, { limit: 20 });
out.historyOne = await client.threads.getHistory(id, { limit: 1 });
out.historyBefore = await client.threads.getHistory(id, { limit: 20, before: { configurable: { checkpoint_id: out.stateAfter.checkpoint.checkpoint_id } } });
out.historyBeforeRef = await client.threads.getHistory(id, { limit: 20, before: { checkpoint_id: out.stateAfter.checkpoint.checkpoint_id } });
out.historyByMetadata = await client.threads.getHistory(id, { limit: 20, metadata: { source: "update" } });

const other = await client.threads.create({ metadata: { js: tag, n: 3 } });
out.otherId = other.thread_id;
out.search = await client.threads.search({ metadata: { js: tag }, sortBy: "created_at", sortOrder: "asc" });
out.searchSelect = await client.threads.search({ metadata: { js: tag, owner: "js" }, select: ["thread_id", "status"] });
out.searchIds = await client.threads.search({ ids: [other.thread_id] });
out.searchPage = await client.threads.search({ metadata: { js: tag }, limit: 1, offset: 1, sortBy: "created_at", sortOrder: "asc" });
out.count = await client.threads.count({ metadata: { js: tag } });
out.countIdle = await client.threads.count({ metadata: { js: tag }, status: "idle" });

const copy = await client.threads.copy(id);
out.copy = copy;
out.copyState = await client.threads.getState(copy.thread_id);
out.copyWaited = await client.runs.wait(copy.thread_id, "ledger", { input: { tag: "copy" } });
out.stateAfterCopyRun = await client.threads.getState(id);

// The thread stream: every run of the thread as it comes; the client leaves once it has seen the run's values.
const leave = new AbortController();
const joined = [];
const background = await client.runs.create(copy.thread_id, "ledger", { input: { tag: "joined", delay: 0.5 } });
out.backgroundRunId = background.run_id;
for await (const part of client.threads.joinStream(copy.thread_id, { signal: leave.signal })) {
  joined.push({ id: part.id, event: part.event, log: part.event === "values" ? part.data.log : undefined });
  if (part.event === "values" && part.data.log?.includes("joined")) break;
}
leave.abort();
out.joinStream = joined;

out.pruned = await client.threads.prune([id, crypto.randomUUID()], { strategy: "keep_latest" });
out.historyAfterPrune = await client.threads.getHistory(id, { limit: 50 });
await client.threads.delete(copy.thread_id);
out.deletedGet = await statusOf(() => client.threads.get(copy.thread_id));
out.prunedDelete = await client.threads.prune([other.thread_id], { strategy: "delete" });
out.prunedGet = await statusOf(() => client.threads.get(other.thread_id));
out.missingState = await statusOf(() => client.threads.getState(crypto.randomUUID()));
console.log(JSON.stringify(out));
