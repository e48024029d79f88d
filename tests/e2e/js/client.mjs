// What the scripts here share: the official JS client on a server (LANGGRAPH_URL by default; no
// retries, so a failure shows at once) and the HTTP status of a call that is expected to fail.
import { Client } from "@langchain/langgraph-sdk";

export function clientFor(url = process.env.LANGGRAPH_URL) {
  return new Client({ apiUrl: url, callerOptions: { maxRetries: 0 } });
}

// The HTTP status of a call expected to fail (null when it succeeds, which the tests reject).
export async function statusOf(call) {
  try {
    await call();
    return null;
  } catch (error) {
    if (typeof error?.status !== "number") throw error;
    return error.status;
  }
}
