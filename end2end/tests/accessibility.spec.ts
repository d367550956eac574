import { Page } from '@playwright/test';
import { expect, test } from './console';
import { KEYCLOAK, seriousViolations, signIn } from './helpers';
import { adminLogout } from './keycloak-admin';

// axe-core finds no serious or critical violation on the banners (every page, for each
// development user and signed out, the 403 and 404 pages included, is checked by the same pass as
// hydration.spec.ts); and the main tasks work with the keyboard.
const REALM = process.env.APP_REALM ?? 'demo-short';

async function ready(page: Page) {
  await expect(page.locator('html[data-session-watch="ready"]')).toHaveCount(1);
  await page.waitForLoadState('networkidle');
}

test('@single the session-ended banner and the sign-in panel have no serious accessibility violation', async ({ page }) => {
  await adminLogout(REALM, 'paul');
  await signIn(page, 'paul', '/profile');
  await ready(page);
  await adminLogout(REALM, 'paul');
  await expect(page.getByTestId('session-ended')).toBeVisible({ timeout: 10_000 });
  expect(await seriousViolations(page, 'session ended')).toEqual([]);
});

/** Presses Tab until the focused element is the one `target` finds (at most 40 times). */
async function tabTo(page: Page, target: ReturnType<Page['getByRole']>) {
  for (let i = 0; i < 40; i++) {
    await page.keyboard.press('Tab');
    if (await target.evaluate((el) => el === document.activeElement).catch(() => false)) return;
  }
  throw new Error(`Tab never reached ${target}`);
}

test('@single signing in, navigating, posting a note and signing out work with the keyboard alone', async ({ page }) => {
  await page.goto('/');
  await ready(page);
  await tabTo(page, page.getByRole('link', { name: 'Sign in', exact: true }));
  await page.keyboard.press('Enter');
  await page.waitForURL((url) => url.origin === KEYCLOAK);
  await expect(page.locator('#username')).toBeFocused();
  await page.keyboard.type('erin');
  await page.keyboard.press('Tab');
  await page.keyboard.type('erin-dev-pw');
  await page.keyboard.press('Enter');
  await page.waitForURL((url) => url.origin !== KEYCLOAK);
  await expect(page.getByTestId('signed-in-as')).toHaveText('Erin Editor');
  await ready(page);

  await tabTo(page, page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Notes' }));
  await page.keyboard.press('Enter');
  await expect(page.getByTestId('notes-board')).toBeVisible();
  const body = `typed with the keyboard ${Date.now()}`;
  await tabTo(page, page.getByRole('textbox', { name: 'New note' }));
  await page.keyboard.type(body);
  await page.keyboard.press('Tab');
  await expect(page.getByRole('button', { name: 'Post note' })).toBeFocused();
  await page.keyboard.press('Enter');
  await expect(page.getByText(body)).toBeVisible();

  await tabTo(page, page.getByRole('button', { name: 'Sign out' }));
  await page.keyboard.press('Enter');
  await expect(page.getByRole('link', { name: 'Sign in', exact: true })).toBeVisible();
  await expect(page.getByTestId('signed-in-as')).toHaveCount(0);
});
