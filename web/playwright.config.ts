// Browser tests of the web app: Debian's Chromium driven by Playwright, against a running `devpynode serve`
// (tests/web/test_browser.py starts one, plain or with TLS, and runs these with DEVPYNODE_WEB_URL set).
import { defineConfig } from "@playwright/test";

export default defineConfig({
  testDir: "./e2e",
  outputDir: process.env.DEVPYNODE_E2E_OUT ? `${process.env.DEVPYNODE_E2E_OUT}/results` : "./e2e/out/results",
  timeout: 90_000,
  expect: { timeout: 15_000 },
  workers: 1,
  fullyParallel: false,
  reporter: [["list"]],
  use: {
    baseURL: process.env.DEVPYNODE_WEB_URL ?? "http://127.0.0.1:8080",
    ignoreHTTPSErrors: true, // the TLS run uses a certificate from a throwaway test CA
    screenshot: "only-on-failure",
    launchOptions: {
      executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    },
  },
});
