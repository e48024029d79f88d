// Bundles @langchain/langgraph-sdk's Client for the browser (one ES module) with esbuild: node bundle.mjs OUTFILE.
// Prints one JSON object (the file and its size); tests/e2e/test_browser.py serves it beside page.js.
import { statSync } from "node:fs";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const outfile = process.argv[2];
await build({
  stdin: { contents: 'export { Client } from "@langchain/langgraph-sdk";', resolveDir: dirname(fileURLToPath(import.meta.url)), loader: "js" },
  bundle: true, format: "esm", platform: "browser", target: "chrome120", outfile, logLevel: "warning",
});
console.log(JSON.stringify({ outfile, bytes: statSync(outfile).size }));
