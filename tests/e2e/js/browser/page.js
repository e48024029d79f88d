// A small front end on the JS SDK, as agent-chat-ui works: the service is on another origin (?api=...).
// First visit: create a thread, stream a run of the refunds graph until its interrupt(), remember the
// thread. After a reload: list the threads of the assistant (metadata.assistant_id), show the pending
// interrupt; the Approve button resumes it with a HumanResponse. Every step sets body[data-phase] and
// window.__report, which tests/e2e/js/browser/drive.mjs reads; any failure sets the phase "error".
import { Client } from "./sdk.js";

const params = new URLSearchParams(location.search);
const graphId = params.get("graph") ?? "refunds";
const client = new Client({ apiUrl: params.get("api"), callerOptions: { maxRetries: 0 } });
const ASK = "Please refund $40.50 for order A-1234, it arrived broken.";
const $ = (id) => document.getElementById(id);

function report(phase, data) {
  window.__report = { ...window.__report, ...data, phase };
  $("status").textContent = phase;
  document.body.dataset.phase = phase;
}

function fail(error) {
  report("error", { error: `${error?.name}: ${error?.message}`, errorName: error?.name ?? null, errorStatus: error?.status ?? null });
}

function add(list, text) {
  const item = document.createElement("li");
  item.textContent = text;
  $(list).append(item);
}

async function firstVisit() {
  const thread = await client.threads.create();
  const events = [];
  let interrupt = null;
  const stream = client.runs.stream(thread.thread_id, graphId, {
    input: { messages: [{ role: "user", content: ASK }] }, streamMode: ["values", "updates"],
  });
  for await (const part of stream) {
    events.push(part.event);
    add("events", part.event);
    interrupt = part.data?.__interrupt__ ?? interrupt;
  }
  localStorage.setItem("threadId", thread.thread_id);
  report("streamed", { threadId: thread.thread_id, events, interrupt });
}

async function secondVisit(threadId) {
  const assistant = await client.assistants.get(graphId);
  const threads = await client.threads.search({ metadata: { assistant_id: assistant.assistant_id }, limit: 20 });
  for (const t of threads) add("threads", `${t.thread_id} ${t.status}`);
  const mine = threads.find((t) => t.thread_id === threadId);
  if (!mine) throw new Error(`thread ${threadId} is not among the assistant's threads`);
  const [pending] = Object.values(mine.interrupts).flat();
  const [request] = pending.value;
  $("description").textContent = request.description;
  $("review").hidden = false;
  $("approve").addEventListener("click", () => approve(assistant.assistant_id, threadId).catch(fail), { once: true });
  report("listed", { assistantId: assistant.assistant_id, listed: threads.map((t) => t.thread_id), status: mine.status, request });
}

async function approve(assistantId, threadId) {
  let last = null;
  const stream = client.runs.stream(threadId, assistantId, {
    command: { resume: [{ type: "accept", args: null }] }, streamMode: "values",
  });
  for await (const part of stream) {
    if (part.event === "values") last = part.data;
  }
  const answer = last?.messages?.at(-1)?.content ?? null;
  $("answer").textContent = answer;
  report("done", { answer, decision: last?.decision ?? null });
}

window.__report = {
  browser: { userAgent: navigator.userAgent, nodeProcess: typeof process !== "undefined", origin: location.origin },
};
const remembered = localStorage.getItem("threadId");
(remembered ? secondVisit(remembered) : firstVisit()).catch(fail);
