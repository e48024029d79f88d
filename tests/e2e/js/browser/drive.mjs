// Drives tests/e2e/js/browser/page.js in Debian's headless Chromium with playwright-core: open the page
// (PAGE_URL), wait for its run to pause, reload, wait for the thread list, click Approve, wait for the
// answer. Prints one JSON object: what the page reported at each step and what Chromium logged.
import { chromium } from "playwright-core";

const DEADLINE = 180_000;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", headless: true, timeout: DEADLINE,
  args: ["--no-sandbox", "--disable-background-networking"],
});
const out = { console: [] };
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(DEADLINE);
  page.on("console", (m) => out.console.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => out.console.push(`pageerror: ${e.message}`));
  const settle = async (...phases) => {
    await page.waitForFunction((wanted) => wanted.includes(document.body.dataset.phase), phases, { timeout: DEADLINE });
    return page.evaluate(() => window.__report);
  };
  await page.goto(process.env.PAGE_URL);
  out.first = await settle("streamed", "error");
  if (out.first.phase === "streamed") {
    await page.reload();
    out.second = await settle("listed", "error");
    if (out.second.phase === "listed") {
      await page.click("#approve");
      out.third = await settle("done", "error");
      out.answerShown = await page.textContent("#answer");
    }
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
