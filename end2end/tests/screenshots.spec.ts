import { expect, Page, test } from '@playwright/test';
import { DevUser, SHOTS, signIn } from './helpers';

// Renders the pictures of docs/screenshots/ (shown in the README) from the running app into
// SHOTS (target/screenshots/), so that they stay true: each development user's home page, the 403
// page, "My sessions", the user directory and Security. scripts/screenshots.sh updates the committed ones.
// The session-ending banner's picture is taken by brief.spec.ts. One process only. Documentation,
// not a test: the project `pictures`, run after the tests and outside their count.
test.use({ viewport: { width: 1100, height: 720 } });

async function shoot(page: Page, name: string) {
  await expect(page.locator('html[data-session-watch="ready"]')).toHaveCount(1);
  await page.waitForLoadState('networkidle');
  await page.screenshot({ path: `${SHOTS}/${name}.png` });
}

test('@docs pictures of what each development user sees', async ({ browser }) => {
  test.setTimeout(120_000);
  for (const user of [null, 'alice', 'erin', 'paul', 'nora'] as (DevUser | null)[]) {
    const context = await browser.newContext();
    const page = await context.newPage();
    if (user) await signIn(page, user);
    else await page.goto('/');
    await page.goto('/');
    await shoot(page, `home-${user ?? 'signed-out'}`);
    if (user === 'paul') {
      await page.goto('/admin');
      await shoot(page, 'forbidden-403');
    }
    if (user === 'alice') {
      await page.goto('/sessions');
      await shoot(page, 'my-sessions');
      await page.goto('/admin/users');
      await shoot(page, 'user-directory');
      // As it looks back from Keycloak's password page after a cancel.
      await page.goto('/security?account_action=update-password&outcome=cancelled');
      await shoot(page, 'security');
    }
    await context.close();
  }
});
