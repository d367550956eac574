import { defineConfig } from '@playwright/test';

// The app (http://localhost:3000) and Keycloak (http://localhost:8080) are started by
// scripts/test.sh. The browser is Debian's Chromium; Playwright never downloads one of its own.
//
// `pictures` renders the README's pictures (documentation, asserting nothing: not counted as a
// test). Two projects of tests, which scripts/test.sh runs at the same time as separate processes: `brief` (the
// app on :3004 against the realm demo-brief, whose tests mostly wait on Keycloak's short session
// clocks) and `main` (everything else), the latter twice: against the single process (:3000,
// realm demo-short) and against the cluster (APP_URL=http://localhost:3100, APP_REALM
// demo-cluster). They share no user session: each realm has its own users. Within a run, tests
// run one at a time (they share the realm's development users).
export default defineConfig({
  testDir: './tests',
  timeout: 60_000,
  expect: { timeout: 10_000 },
  fullyParallel: false,
  workers: 1,
  retries: 0,
  forbidOnly: !!process.env.CI,
  reporter: [['list']],
  projects: [
    // PW_OUTPUT_DIR: the cluster's run of `main` beside the single process's keeps its own.
    { name: 'main', testIgnore: /(brief|outage|screenshots)\.spec\.ts/, outputDir: process.env.PW_OUTPUT_DIR ?? './test-results/main' },
    { name: 'brief', testMatch: /brief\.spec\.ts/, outputDir: './test-results/brief' },
    // Keycloak cut off from an app of its own (:3006, started by the test), run after `brief` in
    // the same process, beside `main`.
    { name: 'outage', testMatch: /outage\.spec\.ts/, outputDir: './test-results/outage' },
    // Not tests: the README's pictures, taken from the running single process after `main`.
    { name: 'pictures', testMatch: /screenshots\.spec\.ts/, outputDir: './test-results/pictures' },
  ],
  use: {
    baseURL: process.env.APP_URL ?? 'http://localhost:3000',
    browserName: 'chromium',
    headless: true,
    trace: 'retain-on-failure',
    screenshot: 'only-on-failure',
    launchOptions: {
      executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--no-first-run',
        '--disable-sync',
        '--disable-quic',
      ],
    },
  },
});
