import AxeBuilder from '@axe-core/playwright';
import { expect, Page, Response } from '@playwright/test';
import { mkdirSync } from 'node:fs';

export const KEYCLOAK = 'http://localhost:8080';

/** The app under test (the config's baseURL): the single process on :3000, or the cluster of
 * scripts/test.sh on :3100 (APP_URL). */
export const APP = process.env.APP_URL ?? 'http://localhost:3000';

/** Development users of keycloak/demo-realm.json (password: `<name>-dev-pw`). */
export type DevUser = 'alice' | 'erin' | 'paul' | 'nora';

/** Signs in through Keycloak's real login page, starting from `from` (a public page's "Sign in"
 * link, or a gated page, which sends the browser to Keycloak itself) and coming back to it. */
export async function signIn(page: Page, user: DevUser, from = '/') {
  await page.goto(from);
  if (new URL(page.url()).origin !== KEYCLOAK) {
    await page.getByRole('link', { name: 'Sign in', exact: true }).click();
  }
  await keycloakSignIn(page, user, `${user}-dev-pw`);
  await page.waitForURL((url) => url.origin !== KEYCLOAK);
  await expect(page.getByTestId('signed-in-as')).toBeVisible();
}

/** Signs `username` (password `password`) in on Keycloak's page the browser is on. */
export async function keycloakSignIn(page: Page, username: string, password: string) {
  await page.waitForURL((url) => url.origin === KEYCLOAK);
  await page.locator('#username').fill(username);
  await page.locator('#password').fill(password);
  await page.locator('#kc-login').click();
}

/** Three base64url segments, the first starting like a JSON object: a JWT. */
export const JWT = /eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*/;

/** Collects every response the page receives from the app, to scan them later. */
export function recordAppResponses(page: Page, appOrigin: string) {
  const seen: Response[] = [];
  page.on('response', (r) => {
    if (new URL(r.url()).origin === appOrigin) seen.push(r);
  });
  return seen;
}

/** Where the tests render the pictures of the README: an ignored folder, so that a test run leaves
 * `git status` clean. `scripts/screenshots.sh` copies them to docs/screenshots/ on purpose. */
export const SHOTS = process.env.SCREENSHOT_DIR ?? '../target/screenshots';
mkdirSync(SHOTS, { recursive: true });

/** axe-core's serious and critical violations on the page as it is now, each named by `where`. */
export async function seriousViolations(page: Page, where: string) {
  const result = await new AxeBuilder({ page }).analyze();
  return result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${where}: ${v.id} (${v.impact}) ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
}

/** Waits until the page is hydrated (its session watcher runs), so that a click on an action
 * form runs the action in the page instead of posting the form natively. */
export async function hydrated(page: Page) {
  await expect(page.locator('html[data-session-watch="ready"]')).toHaveCount(1);
}
