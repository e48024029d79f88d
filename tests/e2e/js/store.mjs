// Every store operation of the official JS client (LANGGRAPH_URL; a store with a semantic index on "text").
// Prints one JSON object of what the server answered; tests/e2e/test_store.py checks it against the
// service and PostgreSQL. A call that fails unexpectedly throws: node exits non-zero, the test fails.
import { clientFor, statusOf } from "./client.mjs";

const client = clientFor();
const ns = ["js", process.env.TAG];
const out = {};

await client.store.putItem([...ns, "pets"], "dog", { text: "dogs bark loudly at the mailman", kind: "pet" });
await client.store.putItem([...ns, "pets"], "cat", { text: "cats purr quietly on the sofa", kind: "pet" }, { ttl: 30 });
await client.store.putItem([...ns, "food"], "soup", { text: "tomato soup with basil", kind: "food" }, { index: false });
await client.store.putItem([...ns, "pets", "old"], "fish", { text: "a goldfish", kind: "pet" });
out.dog = await client.store.getItem([...ns, "pets"], "dog");
out.cat = await client.store.getItem([...ns, "pets"], "cat", { refreshTtl: true });
out.missing = await client.store.getItem(ns, "nope");
out.filtered = await client.store.searchItems(ns, { filter: { kind: "pet" }, limit: 10 });
out.query = await client.store.searchItems(ns, { query: "which dogs bark", limit: 2 });
out.queryFood = await client.store.searchItems(ns, { query: "basil soup", limit: 10 });
out.pageOne = await client.store.searchItems(ns, { limit: 2, offset: 0 });
out.pageTwo = await client.store.searchItems(ns, { limit: 2, offset: 2 });
out.namespaces = await client.store.listNamespaces({ prefix: ns });
out.namespacesSuffix = await client.store.listNamespaces({ prefix: ns, suffix: ["pets"] });
out.namespacesDepth = await client.store.listNamespaces({ prefix: ns, maxDepth: 3 });
out.namespacesPage = await client.store.listNamespaces({ prefix: ns, limit: 1, offset: 1 });
await client.store.putItem([...ns, "pets"], "dog", { text: "dogs sleep all day", kind: "pet" });
out.dogAgain = await client.store.getItem([...ns, "pets"], "dog");
await client.store.deleteItem([...ns, "pets"], "dog");
out.afterDelete = await client.store.getItem([...ns, "pets"], "dog");
out.reservedNamespace = await statusOf(() => client.store.putItem(["langgraph"], "k", {}));
out.badTtl = await statusOf(() => client.store.putItem(ns, "k", {}, { ttl: -1 }));
console.log(JSON.stringify(out));
