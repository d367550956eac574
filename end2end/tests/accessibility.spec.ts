import AxeBuilder from '@axe-core/playwright';
import { expect, Page, test } from '@playwright/test';
import { DevUser, KEYCLOAK, signIn } from './helpers';
import { adminLogout } from './keycloak-admin';

// axe-core finds no serious or critical violation on any page, for each development user and
// signed out, the 403 page and the banners included; and the main tasks work with the keyboard.
const REALM = process.env.APP_REALM ?? 'demo-short';
const PAGES = ['/', '/profile', '/notes', '/editor', '/admin', '/staff', '/sessions', '/admin/users', '/no-such-page'];

async function seriousViolations(page: Page, where: string) {
  const result = await new AxeBuilder({ page }).analyze();
  return result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${where}: ${v.id} (${v.impact}) ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
}

async function ready(page: Page) {
  await expect(page.locator('html[data-session-watch="ready"]')).toHaveCount(1);
  await page.waitForLoadState('networkidle');
}

test('@single no page has a serious or critical accessibility violation, for any user', async ({ browser }) => {
  test.setTimeout(180_000);
  const found: string[] = [];
  for (const user of [null, 'alice', 'erin', 'paul', 'nora'] as (DevUser | null)[]) {
    const context = await browser.newContext();
    const page = await context.newPage();
    if (user) await signIn(page, user);
    for (const path of user ? PAGES : ['/', '/no-such-page']) {
      await page.goto(path);
      await ready(page);
      found.push(...(await seriousViolations(page, `${user ?? 'signed out'} ${path}`)));
    }
    await context.close();
  }
  expect(found).toEqual([]);
});

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
