import { expect, Page, Response } from '@playwright/test';

export const KEYCLOAK = 'http://localhost:8080';

/** Development users of keycloak/demo-realm.json (password: `<name>-dev-pw`). */
export type DevUser = 'alice' | 'erin' | 'paul' | 'nora';

/** Signs in through Keycloak's real login page, starting from `from` (a public page's "Sign in"
 * link, or a gated page, which sends the browser to Keycloak itself) and coming back to it. */
export async function signIn(page: Page, user: DevUser, from = '/') {
  await page.goto(from);
  if (new URL(page.url()).origin !== KEYCLOAK) {
    await page.getByRole('link', { name: 'Sign in', exact: true }).click();
  }
  await page.waitForURL((url) => url.origin === KEYCLOAK);
  await page.locator('#username').fill(user);
  await page.locator('#password').fill(`${user}-dev-pw`);
  await page.locator('#kc-login').click();
  await page.waitForURL((url) => url.origin !== KEYCLOAK);
  await expect(page.getByTestId('signed-in-as')).toBeVisible();
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
