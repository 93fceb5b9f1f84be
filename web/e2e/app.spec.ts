// The web app end to end through the platform's Envoy: accounts, streamed chat (reload mid-answer, stop),
// a second member live, three tabs, a resumed 20 MB upload, thumbnails, token refresh, admin, sign out, API docs,
// keyboard-only chat, and every page at phone and desktop widths without horizontal overflow.
// Each screen is saved as a screenshot and scanned with axe-core (no serious or critical violation allowed).
import AxeBuilder from "@axe-core/playwright";
import { expect, test, type Browser, type BrowserContext, type Page } from "@playwright/test";
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const OUT = process.env.DEVPYNODE_E2E_OUT ?? join(import.meta.dirname, "out");
const SHOTS = join(OUT, "screens");
mkdirSync(SHOTS, { recursive: true });
const ADMIN_EMAIL = process.env.DEVPYNODE_E2E_ADMIN_EMAIL ?? "admin@example.com";
const ADMIN_PASSWORD = process.env.DEVPYNODE_E2E_ADMIN_PASSWORD ?? "correct horse battery";
const RUN = randomBytes(4).toString("hex");
const ALICE = { email: `alice-${RUN}@example.com`, password: "alice password 1", name: "Alice" };
const BOB = { email: `bob-${RUN}@example.com`, password: "bob password 12", name: "Bob" };

/** Saves a screenshot of the screen and fails on any serious or critical accessibility violation. */
async function screen(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
  const results = await new AxeBuilder({ page }).withTags(["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]).analyze();
  const bad = results.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  expect(bad.map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(" ")).join("; ")}`), name).toEqual([]);
}

async function register(page: Page, who: typeof ALICE): Promise<void> {
  await page.goto("/");
  await page.getByRole("button", { name: "Create one" }).click();
  await page.getByLabel("E-mail").fill(who.email);
  await page.getByLabel("Password").fill(who.password);
  await page.getByLabel("Display name").fill(who.name);
  await page.getByRole("button", { name: "Create an account" }).click();
  await expect(page.getByRole("button", { name: "Sign out", exact: true })).toBeVisible();
}

async function signIn(page: Page, email: string, password: string): Promise<void> {
  await page.goto("/");
  await page.getByLabel("E-mail").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("button", { name: "Sign out", exact: true })).toBeVisible();
}

function words(count: number, tag: string): string {
  return Array.from({ length: count }, (_, i) => `${tag}${i}`).join(" ");
}

const assistant = (page: Page) => page.locator("article.message.assistant");

test.describe.serial("the web app", () => {
  let browser: Browser;
  let alice: BrowserContext;
  let page: Page;
  let conversationUrl = "";

  test.beforeAll(async ({ browser: shared }) => {
    browser = shared;
    alice = await browser.newContext();
    page = await alice.newPage();
  });

  test("register, sign out, sign in", async () => {
    await page.goto("/");
    await expect(page.getByRole("heading", { name: "Sign in" })).toBeVisible();
    await screen(page, "01-sign-in");
    await register(page, ALICE);
    await expect(page.getByRole("heading", { name: "Chat" })).toBeVisible();
    // Over TLS the browser speaks HTTP/2 to Envoy (no six-connection limit); plain HTTP is HTTP/1.1.
    const protocol = await page.evaluate(() => (performance.getEntriesByType("navigation")[0] as PerformanceNavigationTiming).nextHopProtocol);
    expect(protocol).toBe(page.url().startsWith("https:") ? "h2" : "http/1.1");
    await screen(page, "02-chat-empty");
    await page.getByRole("button", { name: "Sign out", exact: true }).click();
    await expect(page.getByRole("status")).toHaveText("You signed out.");
    await signIn(page, ALICE.email, ALICE.password);
    // A wrong password is refused with the server's words, on the page.
    const other = await browser.newPage();
    await other.goto("/");
    await other.getByLabel("E-mail").fill(ALICE.email);
    await other.getByLabel("Password").fill("not the password");
    await other.getByRole("button", { name: "Sign in" }).click();
    await expect(other.getByRole("alert")).toContainText(/password|credentials/i);
    // Switching to "Create an account" clears it; a refused registration says why, once.
    await other.getByRole("button", { name: "Create one" }).click();
    await expect(other.getByRole("alert")).toHaveCount(0);
    await other.getByLabel("E-mail").fill(ALICE.email);
    await other.getByLabel("Password").fill("another password 1");
    await other.getByLabel("Display name").fill("Alice again");
    await other.getByRole("button", { name: "Create an account" }).click();
    const refusal = other.getByRole("alert");
    await expect(refusal).toHaveCount(1);
    await expect(refusal).toContainText(/cannot be created|already/i);
    const said = (await refusal.innerText()).split(" · ");
    expect(new Set(said.map((part) => part.replace(/^\w+: /, "").toLowerCase())).size, said.join(" | ")).toBe(said.length);
    await other.close();
  });

  test("chat streams builtin/echo; a reload mid-answer shows it whole; stop ends an answer", async () => {
    // The start page takes the first message at once: it makes the conversation with the chosen model.
    const picker = page.getByLabel("Model");
    const options = (await picker.locator("option").allTextContents()).map((o) => o.trim().toLowerCase());
    expect(options.filter((o) => o === "default" || o === "")).toEqual([]); // one automatic choice, not two
    await picker.selectOption("builtin/echo");
    const first = words(60, "alpha");
    await page.getByLabel("Message").fill(first);
    await page.getByRole("button", { name: "Send", exact: true }).click();
    await expect(page).toHaveURL(/\/c\/[0-9a-f-]{36}$/);
    conversationUrl = page.url();

    // The answer streams: seen part-way, growing, then complete.
    const answer = assistant(page).last();
    await expect(answer).toHaveAttribute("data-state", "STREAMING");
    await expect(answer).toContainText("alpha5 ");
    const partial = (await answer.locator(".message-text").innerText()).length;
    await expect(answer).toHaveAttribute("data-state", "COMPLETE");
    expect((await answer.locator(".message-text").innerText()).length).toBeGreaterThan(partial);
    await expect(answer.locator(".message-text")).toHaveText(first);

    // Reload in the middle of an answer: the text so far, then the rest, with nothing missing or doubled.
    const second = words(120, "beta");
    await page.getByLabel("Message").fill(second);
    await page.getByRole("button", { name: "Send", exact: true }).click();
    await expect(assistant(page).last()).toContainText("beta10 ");
    await page.reload();
    const resumed = assistant(page).last();
    await expect(resumed).toHaveAttribute("data-state", "STREAMING"); // still going after the reload
    await expect(resumed).toContainText("beta10 ");
    await expect(resumed).toHaveAttribute("data-state", "COMPLETE", { timeout: 30_000 });
    await expect(resumed.locator(".message-text")).toHaveText(second);
    await expect(page.locator(".conversation")).toHaveAttribute("data-gaps", "0");

    // Stop: the answer ends where it was, marked stopped.
    await page.getByLabel("Message").fill(words(200, "gamma"));
    await page.getByRole("button", { name: "Send", exact: true }).click();
    const stopped = assistant(page).last();
    await expect(stopped).toContainText("gamma5 ");
    await stopped.getByRole("button", { name: "Stop answer" }).click();
    await expect(stopped).toHaveAttribute("data-state", "CANCELLED");
    await expect(stopped.getByText("stopped")).toBeVisible();
    expect((await stopped.locator(".message-text").innerText()).length).toBeLessThan(words(200, "gamma").length);

    // Markdown renders, and raw HTML from a message stays text.
    await page.getByLabel("Message").fill("**bold** <img src=x onerror=alert(1)> `code`");
    await page.getByRole("button", { name: "Send", exact: true }).click();
    const markdown = assistant(page).last();
    await expect(markdown).toHaveAttribute("data-state", "COMPLETE");
    await expect(markdown.locator(".message-text strong")).toHaveText("bold");
    await expect(markdown.locator(".message-text code")).toHaveText("code");
    await expect(markdown.locator(".message-text img")).toHaveCount(0);
    await expect(markdown.locator(".message-text")).toContainText("<img src=x onerror=alert(1)>");

    // Code is highlighted and has a copy button.
    const source = "```python\ndef twice(x):\n    return 2 * x  # doubled\n```";
    await page.getByLabel("Message").fill(source);
    await page.getByRole("button", { name: "Send", exact: true }).click();
    const code = assistant(page).last();
    await expect(code).toHaveAttribute("data-state", "COMPLETE");
    await expect(code.locator(".code-block .hljs-keyword").first()).toHaveText("def");
    await expect(code.locator(".code-block .hljs-comment")).toHaveText("# doubled");
    await alice.grantPermissions(["clipboard-read", "clipboard-write"]);
    await code.getByRole("button", { name: "Copy code" }).click();
    await expect(code.getByRole("button", { name: "Copied" })).toBeVisible();
    expect(await page.evaluate(() => navigator.clipboard.readText())).toBe("def twice(x):\n    return 2 * x  # doubled");

    // Edit and resend: the message comes back into the box, focused; sent, it is a new message with its answer.
    await page.locator("article.message.user").last().getByRole("button", { name: "Edit and resend" }).click();
    const box = page.getByLabel("Message");
    await expect(box).toHaveValue(source);
    await expect(box).toBeFocused();
    await box.fill("edited question");
    await box.press("Enter");
    await expect(page.locator("article.message.user").last()).toContainText("edited question");
    await expect(assistant(page).last().locator(".message-text")).toHaveText("edited question");
    await expect(assistant(page).last()).toHaveAttribute("data-state", "COMPLETE");

    // Regenerate: the latest answer's question is asked again; the earlier answer stays.
    const answers = await assistant(page).count();
    await assistant(page).last().getByRole("button", { name: "Regenerate" }).click();
    await expect(assistant(page)).toHaveCount(answers + 1);
    await expect(assistant(page).last()).toHaveAttribute("data-state", "COMPLETE");
    await expect(assistant(page).last().locator(".message-text")).toHaveText("edited question");
    await expect(assistant(page).nth(-2).getByRole("button", { name: "Regenerate" })).toHaveCount(0);
    await screen(page, "03-chat");

    // The model is remembered for the next conversation; its title is plain text, not Markdown.
    await page.goto("/");
    await expect(page.getByLabel("Model")).toHaveValue("builtin/echo");
    await page.getByLabel("Message").fill("**Plain** `title` here");
    await page.getByLabel("Message").press("Enter");
    await expect(page).toHaveURL(/\/c\/[0-9a-f-]{36}$/);
    await expect(page.getByRole("heading", { level: 1 })).toHaveText("Plain title here", { timeout: 30_000 });
    await expect(page.getByRole("complementary", { name: "Conversations" }).getByText("Plain title here")).toBeVisible({ timeout: 30_000 });
    await page.goto(conversationUrl);
  });

  test("keyboard only: tab to the message box, type, Enter sends, the focus stays in the box", async () => {
    // A page opened afresh: the first Tab stop skips the navigation; then Tab to "Chat" and Enter.
    await page.goto("/account");
    await expect(page.locator(".account")).toHaveAttribute("data-loaded", "true");
    await page.keyboard.press("Tab");
    await expect(page.getByRole("link", { name: "Skip to content" })).toBeFocused();
    await page.keyboard.press("Tab");
    await page.keyboard.press("Tab");
    await expect(page.getByRole("link", { name: "Chat", exact: true })).toBeFocused();
    await page.keyboard.press("Enter");
    // The start page puts the caret in the message box; Enter makes the conversation and the caret follows.
    await expect(page.getByLabel("Message")).toBeFocused();
    await page.keyboard.type("started from the keyboard");
    await page.keyboard.press("Enter");
    await expect(page).toHaveURL(/\/c\/[0-9a-f-]{36}$/);
    await expect(page.getByLabel("Message")).toBeFocused();
    await expect(assistant(page).last().locator(".message-text")).toHaveText("started from the keyboard");

    // In a conversation, the first stop on chat pages leads past the lists straight to the message box.
    await page.goto(conversationUrl);
    await expect(page.getByText("Live", { exact: true })).toBeVisible();
    await expect(page.getByLabel("Message")).toBeFocused();
    await page.getByRole("link", { name: "Skip to the message box" }).focus();
    await page.keyboard.press("Enter");
    await expect(page.getByLabel("Message")).toBeFocused();
    // From the box, Tab reaches its own buttons next, and Shift+Tab comes back.
    await page.keyboard.press("Tab");
    await expect(page.locator(".composer-actions input[type=file]")).toBeFocused();
    await page.keyboard.press("Shift+Tab");
    await expect(page.getByLabel("Message")).toBeFocused();
    await page.keyboard.type("typed with the keyboard");
    await page.keyboard.press("Enter");
    await expect(page.locator("article.message.user").last()).toContainText("typed with the keyboard");
    await expect(page.getByLabel("Message")).toBeFocused();
    await expect(page.getByLabel("Message")).toHaveValue("");
    await expect(assistant(page).last()).toHaveAttribute("data-state", "COMPLETE");
    // Shift+Enter is a new line, not a send.
    await page.keyboard.type("line one");
    await page.keyboard.press("Shift+Enter");
    await page.keyboard.type("line two");
    await expect(page.getByLabel("Message")).toHaveValue("line one\nline two");
    await page.getByLabel("Message").fill("");
  });

  test("a second member sees messages, typing and reactions live; three tabs are all live", async () => {
    const bobContext = await browser.newContext();
    const bob = await bobContext.newPage();
    await register(bob, BOB);
    await page.getByLabel("Invite by e-mail").fill(BOB.email);
    await page.getByRole("button", { name: "Invite" }).click();
    await expect(page.getByText(/Invited/)).toBeVisible();
    // An invitation is not a membership: Bob joins when he accepts it.
    await bob.goto("/");
    await bob.getByRole("list", { name: "Invitations" }).getByRole("button", { name: "Accept" }).click();
    await expect(page.getByText("2 members: you, Bob")).toBeVisible();

    await bob.goto(conversationUrl);
    await expect(bob.getByText("Live", { exact: true })).toBeVisible();
    await expect(assistant(bob).first()).toContainText("alpha0");

    // Typing shows on the other side, then goes.
    await page.getByLabel("Message").fill("hello Bob");
    await expect(bob.locator(".typing")).toHaveText("Alice typing…");
    await screen(bob, "04-member-typing");

    // A message reaches the other member live, answer and all.
    await page.getByRole("button", { name: "Send", exact: true }).click();
    await expect(bob.locator("article.message.user").last()).toContainText("hello Bob");
    await expect(bob.locator("article.message.user").last().locator("header strong")).toHaveText("Alice");
    await expect(assistant(bob).last()).toHaveAttribute("data-state", "COMPLETE");
    await expect(assistant(bob).last().locator(".message-text")).toHaveText("hello Bob");

    // Bob reacts; Alice sees it without reloading.
    await bob.locator("article.message.user").last().getByRole("button", { name: "thumbs up" }).click();
    await expect(page.locator("article.message.user").last().getByRole("button", { name: "thumbs up, 1" })).toBeVisible();

    // Three tabs of Alice's, each live: Bob's next message and its answer reach all of them.
    const tabs = [page, await alice.newPage(), await alice.newPage()];
    for (const tab of tabs.slice(1)) {
      await tab.goto(conversationUrl);
      await expect(tab.getByText("Live", { exact: true })).toBeVisible();
    }
    const line = words(40, "delta");
    await bob.getByLabel("Message").fill(line);
    await bob.getByRole("button", { name: "Send", exact: true }).click();
    for (const tab of tabs) {
      await expect(tab.locator("article.message.user").last()).toContainText("delta39");
      await expect(assistant(tab).last().locator(".message-text")).toHaveText(line, { timeout: 30_000 });
      await expect(assistant(tab).last()).toHaveAttribute("data-state", "COMPLETE");
    }
    await screen(tabs[2], "05-third-tab");
    for (const tab of tabs.slice(1)) await tab.close();
    await bobContext.close();
  });

  test("a 20 MB upload shows progress and resumes after a reload; thumbnails, download, delete", async () => {
    const big = join(OUT, `big-${RUN}.bin`);
    writeFileSync(big, randomBytes(20 * 1024 * 1024));
    // Parts go out over a slow link here, so there is an upload in flight to interrupt.
    await page.route("**/devpynode.files.v1.FileService/UploadPart", async (route) => {
      await new Promise((resolve) => setTimeout(resolve, 250));
      await route.continue().catch(() => undefined); // the reload below cuts the part in flight

    });
    await page.getByRole("link", { name: "Files" }).click();
    await expect(page.getByRole("heading", { name: "Files" })).toBeVisible();
    await page.getByTestId("upload-input").setInputFiles(big);
    const progress = page.locator(".upload-progress progress");
    await expect
      .poll(async () => Number(await progress.getAttribute("value")), { timeout: 30_000 })
      .toBeGreaterThan(4 * 1024 * 1024);
    await screen(page, "06-upload-progress");
    await page.reload();
    await expect(page.getByRole("region", { name: "Unfinished uploads" })).toContainText(`big-${RUN}.bin`);
    await page.unroute("**/devpynode.files.v1.FileService/UploadPart", { behavior: "ignoreErrors" });
    await page.getByTestId("upload-input").setInputFiles(big);
    await expect(page.locator(".upload-progress")).toContainText("resumed at");
    const row = page.locator("tr", { hasText: `big-${RUN}.bin` });
    await expect(row).toContainText("20.0 MiB", { timeout: 60_000 });
    await expect(page.getByRole("region", { name: "Unfinished uploads" })).toHaveCount(0);

    // An image gets a thumbnail, shown in the list.
    const picture = join(OUT, `screen-${RUN}.png`);
    writeFileSync(picture, await page.screenshot());
    await page.getByTestId("upload-input").setInputFiles(picture);
    const thumbnail = page.getByRole("img", { name: `Thumbnail of screen-${RUN}.png` });
    await expect(thumbnail).toBeVisible({ timeout: 30_000 });
    expect(await thumbnail.evaluate((img: HTMLImageElement) => img.naturalWidth)).toBeGreaterThan(0);
    await screen(page, "07-files");

    // Download gives back the bytes; delete removes the row.
    const download = page.waitForEvent("download");
    await row.getByRole("button", { name: "Download" }).click();
    const saved = await (await download).path();
    const { statSync } = await import("node:fs");
    expect(statSync(saved).size).toBe(20 * 1024 * 1024);
    page.once("dialog", (dialog) => void dialog.accept());
    await row.getByRole("button", { name: "Delete" }).click();
    await expect(row).toHaveCount(0);
  });

  test("an expired access token is refreshed once for a burst of calls", async () => {
    const refreshes: string[] = [];
    page.on("request", (request) => {
      if (request.url().endsWith("/devpynode.auth.v1.AuthService/RefreshToken")) refreshes.push(request.url());
    });
    await page.evaluate(() => {
      const session = JSON.parse(localStorage.getItem("devpynode.session")!);
      // A token the server no longer takes, though the app still thinks it good for an hour.
      session.accessToken = session.accessToken.slice(0, -8) + "AAAAAAAA";
      session.accessExpiresAt = Date.now() + 3_600_000;
      localStorage.setItem("devpynode.session", JSON.stringify(session));
    });
    await page.getByRole("link", { name: "Account" }).click();
    await expect(page.locator(".account")).toHaveAttribute("data-loaded", "true");
    await expect(page.getByRole("cell", { name: "builtin/echo" }).first()).toBeVisible();
    expect(refreshes).toHaveLength(1);
    // Usage over time is a chart; this browser's session has the browser's own address.
    await expect(page.locator(".account svg.chart rect").first()).toBeVisible();
    await expect(page.locator(".sessions li", { hasText: "This browser" })).toContainText("from 127.0.0.1");

    // Another session, then "sign out all other sessions" leaves only this one.
    const elsewhere = await browser.newContext();
    await signIn(await elsewhere.newPage(), ALICE.email, ALICE.password);
    await page.reload();
    await expect(page.locator(".sessions li")).toHaveCount(2);
    await page.getByRole("button", { name: "Sign out all other sessions" }).click();
    await expect(page.locator(".sessions li")).toHaveCount(1);
    await expect(page.locator(".sessions li")).toContainText("This browser");
    await elsewhere.close();

    // An API key: its secret is shown once with a copy button, then only its prefix; revoking it says so.
    await page.getByLabel("Name", { exact: true }).fill("e2e script");
    await page.getByRole("button", { name: "Create key" }).click();
    const secret = page.getByTestId("api-key-secret");
    await expect(secret).toHaveText(/^dpn_[0-9a-f]{32}_[A-Za-z0-9_-]{43}$/);
    await expect(page.getByRole("button", { name: "Copy key" })).toBeVisible();
    const row = page.locator(".api-keys tr", { hasText: "e2e script" });
    await expect(row).toContainText("AI only");
    await expect(row).not.toContainText((await secret.textContent())!);
    await page.getByRole("button", { name: "I have copied it" }).click();
    await expect(secret).toHaveCount(0);
    page.once("dialog", (dialog) => void dialog.accept());
    await row.getByRole("button", { name: "Revoke" }).click();
    await expect(row).toContainText("revoked");

    // Change the password: the repeat must match (the new one signs in at the end of the run).
    await page.getByLabel("Current password").fill(ALICE.password);
    await page.getByLabel("New password", { exact: true }).fill("alice password 2");
    await page.getByLabel("Repeat the new password").fill("alice password 3");
    await expect(page.getByText("The two new passwords differ.")).toBeVisible();
    await expect(page.getByRole("button", { name: "Change password" })).toBeDisabled();
    await page.getByLabel("Repeat the new password").fill("alice password 2");
    await page.getByRole("button", { name: "Change password" }).click();
    await expect(page.getByRole("status").filter({ hasText: "Password changed" })).toBeVisible();
    ALICE.password = "alice password 2";
    await screen(page, "08-account");
  });

  test("an admin disables a user, who is then signed out", async () => {
    const victimContext = await browser.newContext();
    const victim = await victimContext.newPage();
    const carol = { email: `carol-${RUN}@example.com`, password: "carol password 1", name: "Carol" };
    await register(victim, carol);

    const adminContext = await browser.newContext();
    const admin = await adminContext.newPage();
    await signIn(admin, ADMIN_EMAIL, ADMIN_PASSWORD);
    await admin.getByRole("link", { name: "Admin" }).click();
    await expect(admin.getByRole("heading", { name: "Administration" })).toBeVisible();
    // The providers' models: the built-in one at least (no Ollama runs here: it is listed as not answering).
    await expect(admin.getByRole("heading", { name: "Models" })).toBeVisible();
    await expect(admin.locator('tr[data-model="builtin/echo"]')).toBeVisible();
    // No way to disable oneself or change one's own role; the audit log's times carry their zone.
    const self = admin.locator(`tr[data-email="${ADMIN_EMAIL}"]`);
    await expect(self).toContainText("you");
    await expect(self.getByRole("button", { name: /Disable/ })).toHaveCount(0);
    await expect(self.getByRole("combobox")).toBeDisabled();
    await expect(admin.locator("table.audit tbody tr td time").first()).toHaveText(/\d{1,2}:\d{2}:\d{2}\s?\S*\s(UTC|GMT|[A-Z]{2,5}|[+-]\d)/);
    await expect(admin.locator(".admin .hbars .hbar").first()).toBeVisible();
    await admin.getByLabel("Filter by e-mail or name").fill(carol.email);
    await admin.getByRole("button", { name: `Disable ${carol.email}` }).click();
    await expect(admin.locator(`tr[data-email="${carol.email}"]`)).toContainText("disabled");
    await expect(admin.getByRole("cell", { name: "user.disabled" }).first()).toBeVisible();
    // The audit filters: one kind, one account.
    await admin.getByLabel("Kind").fill("user.disabled");
    await admin.getByRole("button", { name: "Filter", exact: true }).click();
    await expect(admin.locator("table.audit tbody tr").first()).toContainText("user.disabled");
    await expect(admin.locator("table.audit tbody tr", { hasNotText: "user.disabled" })).toHaveCount(0);
    await admin.getByRole("button", { name: "Clear filters" }).click();
    await admin.getByLabel("Account").selectOption({ label: carol.email });
    await admin.getByRole("button", { name: "Filter", exact: true }).click();
    await expect(admin.locator("table.audit tbody tr").first()).toBeVisible();
    await expect(admin.locator("table.audit tbody tr", { hasNotText: carol.email })).toHaveCount(0);
    await screen(admin, "09-admin");

    // No reload, no click: the app notices within its check interval and says so.
    await expect(victim.getByRole("heading", { name: "Sign in" })).toBeVisible({ timeout: 30_000 });
    await expect(victim.getByRole("status")).toContainText(/session has ended|disabled/);
    await screen(victim, "10-signed-out");
    await victimContext.close();
    await adminContext.close();
  });

  test("the API reference shows every service with its comments", async () => {
    await page.getByRole("link", { name: "API docs" }).click();
    await expect(page.getByRole("heading", { name: "service devpynode.chat.v1.ChatService" })).toBeVisible();
    await expect(page.getByText("SendMessage posts the caller's message and streams the AI reply").first()).toBeVisible();
    // Who may call each RPC comes from the contract's access option.
    const register = page.locator("dt", { hasText: "rpc Register(" }).locator("xpath=following-sibling::dd[1]");
    await expect(register).toContainText("Callable by: anyone (no token)");
    const listUsers = page.locator("dt", { hasText: "rpc ListUsers(" }).locator("xpath=following-sibling::dd[1]");
    await expect(listUsers).toContainText("Callable by: administrators");
    for (const service of ["AuthService", "UserAdminService", "AIRouterService", "FileService"]) {
      await expect(page.getByRole("heading", { name: new RegExp(`service devpynode\\.\\w+\\.v1\\.${service}$`) })).toBeVisible();
    }
    await screen(page, "11-api-docs");
  });

  test("the REST view gives a curl command for each operation, for this server, that works as copied", async () => {
    await page.goto("/docs");
    await page.getByRole("navigation", { name: "API views" }).getByRole("link", { name: "REST and curl" }).click();
    await expect(page.getByRole("heading", { level: 1, name: "REST API" })).toBeVisible();
    await expect(page.getByRole("heading", { name: "service FileService" })).toBeVisible();
    const origin = new URL(page.url()).origin;
    const create = page.getByRole("region", { name: "CreateConversation: POST /v1/conversations" });
    const curl = (await create.locator("pre").innerText()).trim();
    expect(curl).toContain(`curl -X POST '${origin}/v1/conversations'`);
    expect(curl).toContain('-H "Authorization: Bearer $DEVPYNODE_TOKEN"');
    // The body holds the fields a first call needs, with working values, without the fields the path binds.
    const body = JSON.parse(/-d '(.*)'$/m.exec(curl)?.[1] ?? "null") as Record<string, unknown>;
    expect(Object.keys(body).sort()).toEqual(["model", "title"]);
    const register = page.getByRole("region", { name: "Register: POST /v1/auth:register" });
    await expect(register).toContainText("Register creates an account");
    await expect(register.locator("pre")).not.toContainText("Authorization");
    const download = page.getByRole("region", { name: "DownloadFileBytes: GET /download/v1/files/{file_id}" });
    await expect(download.locator("pre")).toContainText(`${origin}/download/v1/files/FILE_ID`);
    await expect(download.locator("pre")).toContainText("-o FILE_NAME");
    // The command does what it says: its method, URL and body, with the signed-in page's access token.
    const url = /'(http[^']+)'/.exec(curl)?.[1] ?? "";
    const answer = await page.evaluate(
      async ([target, json]) => {
        const token = (JSON.parse(localStorage.getItem("devpynode.session") ?? "{}") as { accessToken?: string }).accessToken;
        const made = await fetch(target, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${token ?? ""}` },
          body: json,
        });
        return { status: made.status, body: (await made.json()) as { conversation?: { title?: string } } };
      },
      [url, JSON.stringify({ ...body, title: "made by the docs' curl" })] as const, // the model as copied
    );
    expect(answer.status).toBe(200);
    expect(answer.body.conversation?.title).toBe("made by the docs' curl");
    await screen(page, "11-api-docs-rest");
  });

  test("deep links open on reload; an unknown path is a page of its own with a way home", async () => {
    await page.goto("/account");
    await expect(page.getByRole("heading", { name: "Account" })).toBeVisible();
    await page.goto(conversationUrl);
    await expect(page.getByText("Live", { exact: true })).toBeVisible();
    await page.goto("/no/such/page");
    await expect(page.getByRole("heading", { name: "Page not found" })).toBeVisible();
    await expect(page.getByRole("heading", { name: "Chat" })).toHaveCount(0);
    await screen(page, "12-not-found");
    await page.getByRole("link", { name: "Go to the start page" }).click();
    await expect(page.getByRole("heading", { name: "Chat" })).toBeVisible();
    await page.goto("/c/not-a-conversation");
    await expect(page.getByRole("heading", { name: "Page not found" })).toBeVisible();
  });

  test("every page fits phone and desktop widths: no sideways scrolling, navigation in a menu on phones", async () => {
    test.setTimeout(270_000); // eight pages at three widths
    const adminContext = await browser.newContext();
    const admin = await adminContext.newPage();
    await signIn(admin, ADMIN_EMAIL, ADMIN_PASSWORD);
    const pages: [Page, string, string][] = [
      [page, "/", "start"],
      [page, conversationUrl, "chat"],
      [page, "/files", "files"],
      [page, "/account", "account"],
      [page, "/docs", "api-docs"],
      [page, "/docs/rest", "api-docs-rest"],
      [page, "/no/such/page", "not-found"],
      [admin, "/admin", "admin"],
    ];
    for (const width of [360, 390, 1280]) {
      for (const [tab, path, name] of pages) {
        await tab.setViewportSize({ width, height: width < 500 ? 780 : 800 });
        await tab.goto(path);
        await expect(tab.getByRole("heading", { level: 1 }).first()).toBeVisible();
        await tab.evaluate(() => document.fonts.ready.then(() => new Promise((resolve) => requestAnimationFrame(resolve))));
        const overflow = await tab.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
        expect(overflow, `${name} at ${width} px scrolls sideways by ${overflow} px`).toBeLessThanOrEqual(0);
        if (width === 390 && ["chat", "account", "admin"].includes(name)) await screen(tab, `13-${name}-390`);
      }
    }
    // On a phone the navigation opens from the menu, and the conversations from their button.
    await page.setViewportSize({ width: 390, height: 780 });
    await page.goto(conversationUrl);
    await expect(page.getByRole("link", { name: "Files" })).toBeHidden();
    await page.getByRole("button", { name: "Menu" }).click();
    await expect(page.getByRole("link", { name: "Files" })).toBeVisible();
    await expect(page.getByRole("button", { name: "Sign out", exact: true })).toBeVisible();
    await page.getByRole("button", { name: "Menu" }).click();
    await expect(page.getByRole("complementary", { name: "Conversations" })).toBeHidden();
    await page.getByRole("button", { name: "Conversations" }).click();
    await expect(page.getByRole("complementary", { name: "Conversations" })).toBeVisible();
    await screen(page, "14-conversations-390");
    await page.getByRole("complementary", { name: "Conversations" }).getByRole("link").filter({ hasText: "Plain title here" }).click();
    await expect(page.getByRole("complementary", { name: "Conversations" })).toBeHidden();
    await page.setViewportSize({ width: 1280, height: 720 });
    await adminContext.close();
  });

  test("sign out ends the session in every tab", async () => {
    const second = await alice.newPage();
    await second.goto("/files");
    await expect(second.getByRole("heading", { name: "Files" })).toBeVisible();
    await page.getByRole("button", { name: "Sign out", exact: true }).click();
    await expect(page.getByRole("heading", { name: "Sign in" })).toBeVisible();
    await expect(second.getByRole("heading", { name: "Sign in" })).toBeVisible();
    expect(await page.evaluate(() => localStorage.getItem("devpynode.session"))).toBeNull();
    // The password changed on the account page is the one that signs in now.
    await signIn(page, ALICE.email, ALICE.password);
    await alice.close();
  });
});
