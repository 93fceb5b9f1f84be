// Single sign-on in the browser, through the provider's real pages (tests/web/test_sso_browser.py starts the
// platform and a test provider, then runs this file alone with DEVPYNODE_E2E_OIDC_ACCOUNT set).
import AxeBuilder from "@axe-core/playwright";
import { expect, test, type Page } from "@playwright/test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const ACCOUNT = process.env.DEVPYNODE_E2E_OIDC_ACCOUNT ?? "";
const EMAIL = process.env.DEVPYNODE_E2E_OIDC_EMAIL ?? "";
const LINKER = process.env.DEVPYNODE_E2E_OIDC_LINK_ACCOUNT ?? "";
const SHOTS = join(process.env.DEVPYNODE_E2E_OUT ?? join(import.meta.dirname, "out"), "screens");

async function screen(page: Page, name: string): Promise<void> {
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
  const results = await new AxeBuilder({ page }).withTags(["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]).analyze();
  const bad = results.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  expect(bad.map((v) => `${v.id} (${v.impact})`), name).toEqual([]);
}

test.describe("single sign-on", () => {
  test.skip(!ACCOUNT, "needs the test provider (tests/web/test_sso_browser.py)");

  test("sign in with the provider, see the linked identity, sign in again without the provider's form", async ({ page }) => {
    await page.goto("/");
    const button = page.getByRole("button", { name: "Sign in with Corp SSO" });
    await expect(button).toBeVisible();
    await screen(page, "sso-01-sign-in");
    await button.click();

    // The provider's own pages: its login form, then its consent screen.
    await page.locator('input[name="login"]').fill(ACCOUNT);
    await page.locator('input[name="password"]').fill("any password");
    await page.getByRole("button", { name: "Sign-in" }).click();
    await page.getByRole("button", { name: "Continue" }).click();

    // Back at /oidc/callback, which finishes over grpc-web and moves on: signed in.
    await expect(page.getByRole("button", { name: "Sign out", exact: true })).toBeVisible();
    expect(new URL(page.url()).search).toBe(""); // the code left the address bar
    const stored = await page.evaluate(() => JSON.stringify(sessionStorage));
    expect(stored).not.toContain("devpynode.oidc.pending"); // the binding is spent

    await page.goto("/account");
    await expect(page.getByText(EMAIL).first()).toBeVisible();
    const identities = page.locator(".identities");
    await expect(identities.getByText("Corp SSO")).toBeVisible();
    await expect(identities.getByRole("button", { name: "Unlink" })).toBeDisabled(); // the only way in
    await expect(page.getByRole("form", { name: "Set a password" })).toBeVisible();
    await screen(page, "sso-02-account");

    // A first password; then the identity may go.
    await page.getByRole("form", { name: "Set a password" }).getByLabel("New password").fill("a fine new password 7");
    await page.getByRole("button", { name: "Set password" }).click();
    await expect(page.getByRole("form", { name: "Change password" })).toBeVisible();
    await expect(identities.getByRole("button", { name: "Unlink" })).toBeEnabled();
  });

  test("a password account links the provider from the account page, then signs in with it", async ({ page }) => {
    const email = `linker-${Date.now()}@example.com`;
    await page.goto("/");
    await page.getByRole("button", { name: "Create one" }).click();
    await page.getByLabel("E-mail").fill(email);
    await page.getByLabel("Password").fill("linker password 12");
    await page.getByLabel("Display name").fill("Linker");
    await page.getByRole("button", { name: "Create an account" }).click();
    await page.getByRole("link", { name: "Account" }).first().click();
    await page.getByRole("button", { name: "Link Corp SSO" }).click();
    await page.locator('input[name="login"]').fill(LINKER);
    await page.locator('input[name="password"]').fill("any password");
    await page.getByRole("button", { name: "Sign-in" }).click();
    await page.getByRole("button", { name: "Continue" }).click();
    await expect(page).toHaveURL(/\/account$/);
    const identities = page.locator(".identities");
    await expect(identities.getByText("Corp SSO")).toBeVisible();
    await expect(identities.getByRole("button", { name: "Unlink" })).toBeEnabled(); // the password stays a way in
    await screen(page, "sso-03-linked");

    // Signed out here, the provider's button leads back into the same account (the provider remembers the
    // person: its session cookie skips its form, as real single sign-on does).
    await page.getByRole("button", { name: "Sign out", exact: true }).click();
    await page.getByRole("button", { name: "Sign in with Corp SSO" }).click();
    await expect(page.getByRole("button", { name: "Sign out", exact: true })).toBeVisible();
    await page.goto("/account");
    await expect(page.getByText(email).first()).toBeVisible();
  });
});
