// stream_mode "messages" and "events" through the official JS client (LANGGRAPH_URL; joins on LANGGRAPH_URL_B).
// Prints one JSON object of the events it got; tests/e2e/test_stream_modes.py checks it.
import { clientFor } from "./client.mjs";

const a = clientFor();
const b = clientFor(process.env.LANGGRAPH_URL_B);
const input = { messages: [{ role: "user", content: "When does my order ship?" }] };
const collect = async (stream) => {
  const parts = [];
  for await (const part of stream) parts.push([part.event, part.data]);
  return parts;
};
const out = {};

const thread = await a.threads.create();
out.messages = await collect(a.runs.stream(thread.thread_id, "chatty", { input, streamMode: "messages" }));
out.events = await collect(a.runs.stream(null, "chatty", { input, streamMode: "events" }));
const run = await a.runs.create(thread.thread_id, "chatty", { input, streamMode: "messages" });
out.joined = await collect(b.runs.joinStream(thread.thread_id, run.run_id));
console.log(JSON.stringify(out));
