// Every cron operation of the official JS client against the service at LANGGRAPH_URL.
// Prints one JSON object of what the server answered; tests/e2e/test_crons.py checks it.
import { clientFor } from "./client.mjs";

const client = clientFor();
const out = {};
const assistantId = process.env.ASSISTANT_ID;

out.created = await client.crons.create(assistantId, {
  schedule: "0 9 * * *", timezone: "Europe/Paris", input: { messages: [] }, metadata: { team: "js" },
  onRunCompleted: "keep", endTime: new Date(Date.now() + 86400000).toISOString(),
});
const thread = await client.threads.create();
out.thread_id = thread.thread_id;
out.forThread = await client.crons.createForThread(thread.thread_id, assistantId, {
  schedule: "*/5 * * * *", multitaskStrategy: "enqueue", enabled: false,
});
out.count = await client.crons.count();
out.countForThread = await client.crons.count({ threadId: thread.thread_id });
out.search = await client.crons.search({ sortBy: "created_at", sortOrder: "asc" });
out.searchSelect = await client.crons.search({ select: ["cron_id", "enabled"], enabled: false });
out.updated = await client.crons.update(out.forThread.cron_id, { schedule: "* * * * * */30", enabled: true });
await client.crons.delete(out.created.cron_id);
out.countAfterDelete = await client.crons.count();
try {
  await client.crons.create(assistantId, { schedule: "61 * * * *" });
  out.invalid = null;
} catch (error) {
  out.invalid = { status: error.status, message: String(error.message).slice(0, 300) };
}
console.log(JSON.stringify(out));
