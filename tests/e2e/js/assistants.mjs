// Every assistants operation of the official JS client (LANGGRAPH_URL; graphs of ASSISTANT_GRAPHS).
// Prints one JSON object of what the server answered; tests/e2e/test_assistants.py checks it against
// the service and PostgreSQL. A call that fails unexpectedly throws: node exits non-zero, the test fails.
import { clientFor, statusOf } from "./client.mjs";

const client = clientFor();
const tag = process.env.TAG;
const out = {};

const id = crypto.randomUUID();
out.id = id;
out.created = await client.assistants.create({
  graphId: "contextual", assistantId: id, name: `Alpha ${tag}`, description: "made by js",
  context: { model: "large" }, metadata: { js: tag },
});
out.again = await client.assistants.create({ graphId: "support", assistantId: id, name: "other", ifExists: "do_nothing" });
out.raised = await statusOf(() => client.assistants.create({ graphId: "support", assistantId: id, ifExists: "raise" }));
out.got = await client.assistants.get(id);
out.updated = await client.assistants.update(id, { context: { model: "v2" }, metadata: { owner: "js" }, name: `Beta ${tag}` });
out.versions = await client.assistants.getVersions(id);
out.versionsByMetadata = await client.assistants.getVersions(id, { metadata: { owner: "js" } });
out.versionsPage = await client.assistants.getVersions(id, { limit: 1, offset: 1 });
out.latest = await client.assistants.setLatest(id, 1);
out.missingVersion = await statusOf(() => client.assistants.setLatest(id, 99));

const second = await client.assistants.create({ graphId: "support", name: `Gamma ${tag}`, metadata: { js: tag } });
out.second = second;
out.search = await client.assistants.search({ metadata: { js: tag }, sortBy: "name", sortOrder: "asc" });
out.searchSelect = await client.assistants.search({ metadata: { js: tag }, graphId: "support", select: ["assistant_id", "name"] });
out.searchPage = await client.assistants.search({ metadata: { js: tag }, limit: 1, includePagination: true });
out.count = await client.assistants.count({ metadata: { js: tag } });
out.countByGraph = await client.assistants.count({ metadata: { js: tag }, graphId: "contextual" });
out.countByName = await client.assistants.count({ name: tag.toUpperCase() });

out.graph = await client.assistants.getGraph("nested");
out.graphXray = await client.assistants.getGraph("nested", { xray: true });
out.graphXray1 = await client.assistants.getGraph("nested", { xray: 1 });
out.schemas = await client.assistants.getSchemas(id);
out.subgraphs = await client.assistants.getSubgraphs("nested");
out.subgraphsRecurse = await client.assistants.getSubgraphs("nested", { recurse: true });
out.subgraphsAt = await client.assistants.getSubgraphs("nested", { namespace: "inner" });

// Runs use the assistant's current version (1 again: context model "large").
out.seen = (await client.runs.wait(null, id, { input: {} })).seen;
const thread = await client.threads.create();
out.threadId = thread.thread_id;
await client.runs.wait(thread.thread_id, second.assistant_id, { input: { messages: [{ role: "user", content: "hi" }] } });
out.threadMetadata = (await client.threads.get(thread.thread_id)).metadata;
await client.assistants.delete(second.assistant_id, { deleteThreads: true });
out.deletedGet = await statusOf(() => client.assistants.get(second.assistant_id));
out.deletedThreadGet = await statusOf(() => client.threads.get(thread.thread_id));
out.deletedAgain = await statusOf(() => client.assistants.delete(second.assistant_id));
out.unknownGraph = await statusOf(() => client.assistants.create({ graphId: "no-such-graph" }));
console.log(JSON.stringify(out));
