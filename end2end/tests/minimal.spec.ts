import { Page } from '@playwright/test';
import { expect, test } from './console';
import { DevUser, KEYCLOAK } from './helpers';

// examples/minimal: the app made by following the README's "Add Keycloak to your Leptos app",
// started by scripts/test.sh on http://localhost:3002 with its own client (minimal-app).
const MINIMAL = process.env.MINIMAL_URL ?? 'http://localhost:3002';

async function signInFromHome(page: Page, user: DevUser) {
  await page.goto(`${MINIMAL}/`);
  await page.getByRole('link', { name: 'Sign in', exact: true }).click();
  await page.waitForURL((url) => url.origin === KEYCLOAK);
  await page.locator('#username').fill(user);
  await page.locator('#password').fill(`${user}-dev-pw`);
  await page.locator('#kc-login').click();
  await page.waitForURL((url) => url.origin === MINIMAL);
}

test('examples/minimal: an admin signs in through Keycloak, lands on the protected page and sees the admin-only component', async ({ page }) => {
  // Signed out: no gated component, and the protected page sends the browser to Keycloak.
  await page.goto(`${MINIMAL}/`);
  await expect(page.getByRole('heading', { name: 'Welcome to Leptos!' })).toBeVisible();
  await expect(page.getByTestId('admin-only')).toHaveCount(0);
  const protectedPage = await page.request.get(`${MINIMAL}/account`, { maxRedirects: 0 });
  expect(protectedPage.status()).toBe(302);
  expect(protectedPage.headers()['location']).toBe('/auth/login?return_to=%2Faccount');

  await signInFromHome(page, 'alice');
  await expect(page).toHaveURL(`${MINIMAL}/account`);
  await expect(page.getByTestId('account')).toHaveText('Your account');
  await page.getByRole('link', { name: 'Home' }).click();
  await expect(page.getByTestId('admin-only')).toBeVisible();
  // Hydrated: the page's own interactivity works next to the gated UI.
  await page.getByRole('button', { name: /Click Me/ }).click();
  await expect(page.getByRole('button', { name: 'Click Me: 1' })).toBeVisible();
  // The browser holds no token: the session cookie is HttpOnly and opaque.
  const cookies = await page.context().cookies(MINIMAL);
  const session = cookies.find((c) => c.name === 'minimal_session');
  expect(session?.httpOnly).toBe(true);
  expect(session?.value).not.toMatch(/^eyJ/);
});

test('examples/minimal: a user without the realm role admin does not see the gated component', async ({ page }) => {
  await signInFromHome(page, 'paul');
  await expect(page.getByTestId('account')).toHaveText('Your account');
  await page.getByRole('link', { name: 'Home' }).click();
  await expect(page.getByRole('heading', { name: 'Welcome to Leptos!' })).toBeVisible();
  await expect(page.getByRole('link', { name: 'Account' })).toBeVisible();
  await expect(page.getByTestId('admin-only')).toHaveCount(0);
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL((url) => url.origin === MINIMAL && url.pathname === '/');
  await expect(page.getByRole('link', { name: 'Sign in', exact: true })).toBeVisible();
});

test('examples/minimal: the URL cargo-leptos prints (127.0.0.1) lands on the public URL, signed out without an error, and signing in works', async ({ page }) => {
  const printed = MINIMAL.replace('localhost', '127.0.0.1');
  const answers: number[] = [];
  page.on('response', (r) => { if (new URL(r.url()).origin !== KEYCLOAK) answers.push(r.status()); });
  await page.goto(`${printed}/?from=terminal`);
  // Sent to localhost before any cookie; silent sign-on there finds no Keycloak session.
  await expect(page).toHaveURL(`${MINIMAL}/?from=terminal`);
  await expect(page.getByRole('heading', { name: 'Welcome to Leptos!' })).toBeVisible();
  await expect(page.getByRole('link', { name: 'Sign in', exact: true })).toBeVisible();
  expect(answers.filter((s) => s >= 400), `answers: ${answers.join(', ')}`).toHaveLength(0);
  expect(await page.context().cookies(printed), 'no cookie on 127.0.0.1').toHaveLength(0);
  await signInFromHome(page, 'alice');
  await expect(page).toHaveURL(`${MINIMAL}/account`);
  await expect(page.getByTestId('account')).toHaveText('Your account');
});
