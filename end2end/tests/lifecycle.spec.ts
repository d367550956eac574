import { expect, test } from './console';
import { APP, signIn } from './helpers';
import { adminLogout } from './keycloak-admin';

// scripts/test.sh runs the app against the realm `demo-short`: access tokens live 10 seconds,
// and the server refreshes them 3 seconds before they expire (APP_SESSION_REFRESH_MARGIN_SECS).
const REALM = process.env.APP_REALM ?? 'demo-short';
const TOKEN_SECONDS = 10;
const MARGIN_SECONDS = 3;

test('a user idle on a page stays signed in past several token lifetimes, and gated UI keeps working', async ({ page }) => {
  // session.keep_alive = "activity": after the click, the page's timer refreshes once, then only
  // asks how the session stands (Keycloak's idle limit, 15 minutes here, is far).
  test.setTimeout(90_000);
  const refreshes: number[] = [];
  page.on('response', (r) => {
    if (r.url().endsWith('/auth/refresh')) refreshes.push(r.status());
  });
  await signIn(page, 'erin');
  const nav = page.getByRole('navigation', { name: 'Main' });
  await nav.getByRole('link', { name: 'Editor' }).click();
  await expect(page.getByTestId('editor-page')).toContainText("Editor's desk");
  // How the session stands, without refreshing it (?idle=1 refreshes nothing).
  const accessEnd = async () =>
    (await (await page.request.post('/auth/refresh?idle=1')).json()).access_expires_at as number;
  const before = await accessEnd();

  await page.waitForTimeout(3.5 * TOKEN_SECONDS * 1000);

  // Every refresh the page asked for succeeded. (With session.keep_alive = "activity" the page's
  // timer refreshes after the click only if nothing refreshed since: the editor page's server
  // function may have found the tokens due first.)
  expect(refreshes.every((s) => s === 200)).toBe(true);
  await expect(page.getByTestId('session-ended')).toHaveCount(0);
  await expect(page.getByTestId('signed-in-as')).toHaveText('Erin Editor');
  // Server functions behind the gates still answer: the server refreshed the tokens.
  const desk = page.waitForResponse((r) => r.url().endsWith('/api/editor_desk'));
  await nav.getByRole('link', { name: 'Profile' }).click();
  await nav.getByRole('link', { name: 'Editor' }).click();
  expect((await desk).status()).toBe(200);
  await expect(page.getByTestId('editor-page')).toContainText('/staff/editors');
  // Three token lifetimes later, the answer above needed fresh tokens: they were refreshed.
  expect(await accessEnd()).toBeGreaterThan(before);
});

// Keycloak's "sign out" of a user ends all their sessions but sends one back-channel logout (for
// one of them); the others learn at their next refresh. These tests start with no session left.
test('an admin ending the session in Keycloak signs the open page out without a reload', async ({ page }) => {
  await adminLogout(REALM, 'paul');
  await signIn(page, 'paul');
  const nav = page.getByRole('navigation', { name: 'Main' });
  await nav.getByRole('link', { name: 'Profile' }).click();
  await expect(page.getByTestId('profile')).toContainText('Paul Plain');
  let reloaded = false;
  page.on('framenavigated', (f) => { if (f === page.mainFrame()) reloaded = true; });

  await adminLogout(REALM, 'paul');

  await expect(page.getByTestId('session-ended')).toBeVisible({ timeout: 10_000 });
  await expect(page.getByTestId('signed-in-as')).toHaveCount(0);
  await expect(page.getByTestId('profile')).toHaveCount(0);
  await expect(page.getByTestId('sign-in-needed')).toContainText('Your session has ended');
  expect(reloaded).toBe(false);
  // The sign-in button comes back to the same page.
  await expect(page.getByTestId('session-ended').getByRole('link', { name: 'Sign in again' }))
    .toHaveAttribute('href', '/auth/login?return_to=%2Fprofile');
});

test('signing out in one tab signs out the other tabs of the browser without a reload', async ({ context }) => {
  const first = await context.newPage();
  await signIn(first, 'alice');
  const second = await context.newPage();
  await second.goto('/admin');
  await expect(second.getByTestId('admin-page')).toBeVisible();
  let reloaded = false;
  second.on('framenavigated', (f) => { if (f === second.mainFrame()) reloaded = true; });

  await first.getByRole('button', { name: 'Sign out' }).click();
  await first.waitForURL((url) => url.origin === APP && url.pathname === '/');
  await expect(first.getByRole('link', { name: 'Sign in', exact: true })).toBeVisible();

  await expect(second.getByTestId('session-ended')).toBeVisible({ timeout: 8_000 });
  await expect(second.getByTestId('admin-page')).toHaveCount(0);
  await expect(second.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Admin' })).toHaveCount(0);
  expect(reloaded).toBe(false);
});

test('the browser side follows the server settings: tabs talk on the channel named in Leptos.toml', async ({ context }) => {
  // auth.channel is "kc-leptos-session" in the demo's Leptos.toml (the library's default is
  // another name): the server hands it to the page during hydration.
  const listener = await context.newPage();
  await listener.goto('/');
  await listener.evaluate(() => {
    const heard: unknown[] = [];
    (window as unknown as { heard: unknown[] }).heard = heard;
    new BroadcastChannel('kc-leptos-session').onmessage = (e) => heard.push(e.data);
  });
  const other = await context.newPage();
  await other.goto('/'); // a page that has just loaded tells the other tabs to look
  await expect
    .poll(() => listener.evaluate(() => (window as unknown as { heard: unknown[] }).heard.length))
    .toBeGreaterThan(0);
});

test('an idle tab stops refreshing after the last input and asks nothing more until its end; a key press keeps it alive again', async ({ page }) => {
  test.setTimeout(90_000);
  await signIn(page, 'erin');
  // The last input: a click.
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Profile' }).click();
  await expect(page.getByTestId('profile')).toContainText('Erin Editor');
  await page.waitForTimeout(1_000); // the tab is elected and its event stream is open
  const seen: { what: string; at: number }[] = [];
  page.on('request', (r) => {
    const url = new URL(r.url());
    seen.push({ what: `${r.method()} ${url.pathname}${url.search}`, at: Date.now() });
  });

  const windowSeconds = 3 * TOKEN_SECONDS;
  await page.waitForTimeout(windowSeconds * 1000);

  // Nothing but the timer's checks: no polling, no reconnection of the stream, no server function.
  expect(seen.map((r) => r.what).filter((w) => !w.startsWith('POST /auth/refresh'))).toEqual([]);
  const refreshes = seen.filter((r) => r.what === 'POST /auth/refresh');
  const idle = seen.filter((r) => r.what === 'POST /auth/refresh?idle=1');
  // At most the one refresh the click earned, then one check that refreshes nothing and is told
  // to come back at the session's end (once per token lifetime would be three or four).
  expect(refreshes.length, JSON.stringify(seen)).toBeLessThanOrEqual(1);
  expect(idle.length, JSON.stringify(seen)).toBe(1);
  for (const r of refreshes) expect(r.at).toBeLessThan(idle[0].at);
  await expect(page.getByTestId('session-ended')).toHaveCount(0);

  // A key press wakes the timer, which refreshes (keeps Keycloak's session alive) at once.
  const woken = page.waitForRequest((r) => r.method() === 'POST' && r.url().endsWith('/auth/refresh'), { timeout: 5_000 });
  await page.keyboard.press('Shift');
  expect((await (await woken).response())?.status()).toBe(200);
  await expect(page.getByTestId('signed-in-as')).toHaveText('Erin Editor');
});

test('a back-channel logout reaches every open tab of the browser within 2 seconds, without polling', async ({ context }) => {
  await adminLogout(REALM, 'paul');
  const first = await context.newPage();
  await signIn(first, 'paul');
  const second = await context.newPage();
  await second.goto('/profile');
  await expect(second.getByTestId('profile')).toContainText('Paul Plain');
  await second.waitForTimeout(1_000); // one of the tabs is elected and holds the event stream

  // Keycloak ends the session and posts the back-channel logout to the app before it answers.
  await adminLogout(REALM, 'paul');
  const loggedOutAt = Date.now();

  await expect(first.getByTestId('session-ended')).toBeVisible({ timeout: 2_000 });
  await expect(second.getByTestId('session-ended')).toBeVisible({ timeout: Math.max(1, 2_000 - (Date.now() - loggedOutAt)) });
  expect(Date.now() - loggedOutAt).toBeLessThan(2_000);
  await expect(second.getByTestId('profile')).toHaveCount(0);
  await expect(first.getByTestId('signed-in-as')).toHaveCount(0);
});
