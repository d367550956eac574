import { allowConsole, expect, test } from './console';
import { APP, JWT, KEYCLOAK, hydrated, recordAppResponses, signIn } from './helpers';

test('the admin sees the admin link and opens the admin page', async ({ page }) => {
  await signIn(page, 'alice');
  const nav = page.getByRole('navigation', { name: 'Main' });
  await expect(nav.getByRole('link', { name: 'Admin' })).toBeVisible();
  await expect(nav.getByRole('link', { name: 'Editor' })).toBeVisible();
  // A client-side navigation: the hydrated app calls the admin server function. (Before
  // hydration the click is a plain page load, which the server renders without that call.)
  await hydrated(page);
  const overview = page.waitForResponse((r) => r.url().endsWith('/api/admin_overview'));
  await nav.getByRole('link', { name: 'Admin' }).click();
  expect((await overview).status()).toBe(200);
  await expect(page).toHaveURL(/\/admin$/);
  await expect(page.getByRole('heading', { name: 'Administration' })).toBeVisible();
  await expect(page.getByTestId('admin-page')).toContainText('http://localhost:8080/realms/demo');
});

test('the plain user sees no admin link and gets the 403 page by URL', async ({ page }) => {
  await signIn(page, 'paul');
  const nav = page.getByRole('navigation', { name: 'Main' });
  await expect(nav.getByRole('link', { name: 'Profile' })).toBeVisible();
  await expect(nav.getByRole('link', { name: 'Admin' })).toHaveCount(0);
  await expect(nav.getByRole('link', { name: 'Editor' })).toHaveCount(0);
  const response = await page.goto('/admin');
  expect(response?.status()).toBe(403);
  await expect(page.getByRole('heading', { name: '403 · Not allowed' })).toBeVisible();
  await expect(page.getByTestId('admin-page')).toHaveCount(0);
});

test('the editor reaches the editor page through the group', async ({ page }) => {
  await signIn(page, 'erin');
  const nav = page.getByRole('navigation', { name: 'Main' });
  await expect(nav.getByRole('link', { name: 'Admin' })).toHaveCount(0);
  await nav.getByRole('link', { name: 'Editor' }).click();
  await expect(page).toHaveURL(/\/editor$/);
  const desk = page.getByTestId('editor-page');
  await expect(desk).toContainText("Editor's desk");
  await expect(desk).toContainText('/staff/editors');
  await nav.getByRole('link', { name: 'Profile' }).click();
  await expect(page.getByTestId('client-roles')).toContainText('editor');
  await expect(page.getByTestId('groups')).toContainText('/staff/editors');
});

test('a signed-out visit to a gated page signs in and comes back to it', async ({ page }) => {
  await page.goto('/editor');
  await page.waitForURL((url) => url.origin === KEYCLOAK);
  await page.locator('#username').fill('erin');
  await page.locator('#password').fill('erin-dev-pw');
  await page.locator('#kc-login').click();
  await expect(page).toHaveURL(`${APP}/editor`);
  await expect(page.getByTestId('editor-page')).toBeVisible();
});

test('sign-out returns to the public page signed out, and back does not bring the session back', async ({ page }) => {
  await signIn(page, 'paul', '/');
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Profile' }).click();
  await expect(page.getByTestId('profile')).toContainText('Paul Plain');
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL((url) => url.origin === APP && url.pathname === '/');
  await expect(page.getByRole('link', { name: 'Sign in', exact: true })).toBeVisible();
  await expect(page.getByTestId('signed-in-as')).toHaveCount(0);

  await page.goBack();
  // The profile is not kept by the browser (no-store): going back asks the app again, which has
  // no session and sends the browser to sign in; Keycloak's session ended too, so Keycloak asks
  // for the password.
  await page.waitForURL((url) => url.origin === KEYCLOAK);
  await expect(page.locator('#username')).toBeVisible();
  await expect(page.getByText('Paul Plain')).toHaveCount(0);
  await page.goto('/profile');
  await page.waitForURL((url) => url.origin === KEYCLOAK);
  await expect(page.locator('#username')).toBeVisible();
});

test('no response the browser receives from the app contains a token, sign-out included', async ({ page, context }) => {
  const responses = recordAppResponses(page, APP);
  const requested: string[] = [];
  page.on('request', (r) => requested.push(r.url()));
  await signIn(page, 'alice');
  const nav = page.getByRole('navigation', { name: 'Main' });
  await nav.getByRole('link', { name: 'Profile' }).click();
  await expect(page.getByTestId('profile')).toBeVisible();
  await nav.getByRole('link', { name: 'Editor' }).click();
  await expect(page.getByTestId('editor-page')).toBeVisible();
  await nav.getByRole('link', { name: 'Admin' }).click();
  await expect(page.getByTestId('admin-page')).toBeVisible();
  // Another API called as the user through the app (/remote/orders): its answers are scanned too.
  await nav.getByRole('link', { name: 'Orders' }).click();
  await page.getByLabel('New order').fill(`token scan order ${Date.now()}`);
  await page.getByRole('button', { name: 'Place order' }).click();
  await expect(page.getByRole('list', { name: 'Your orders' })).toBeVisible();
  await nav.getByRole('link', { name: 'Notes' }).click();
  const text = `token scan ${Date.now()}`;
  await page.getByLabel('New note').fill(text);
  await page.getByRole('button', { name: 'Post note' }).click();
  const note = page.getByTestId('note').filter({ hasText: text });
  await note.getByRole('button', { name: 'Edit' }).click();
  await note.locator('textarea').fill(`${text} edited`);
  await note.getByRole('button', { name: 'Save' }).click();
  await page.getByTestId('note').filter({ hasText: `${text} edited` }).getByRole('button', { name: 'Delete' }).click();
  await expect(page.getByTestId('note').filter({ hasText: text })).toHaveCount(0);
  // The page's timer (a refresh, or after the last input a check with ?idle=1) answers too.
  await page.waitForResponse((r) => new URL(r.url()).pathname === '/auth/refresh', { timeout: 10_000 });
  await page.reload();
  await expect(page.getByTestId('notes-board')).toBeVisible();

  // The session's event stream never ends by itself, so its body is read here, in the page.
  const pushed = await page.evaluate(() => new Promise<string>((resolve) => {
    const stream = new EventSource('/auth/events');
    stream.addEventListener('status', (e) => { stream.close(); resolve((e as MessageEvent).data); });
  }));
  expect(pushed).toContain('"signed_in":true');
  expect(pushed).not.toMatch(JWT);
  expect(pushed).not.toContain('refresh_token');

  expect(responses.length).toBeGreaterThan(5);
  expect(responses.some((r) => r.url().endsWith('/auth/events'))).toBe(true);
  for (const r of responses) {
    const headers = JSON.stringify(await r.allHeaders());
    expect(headers, `headers of ${r.url()}`).not.toMatch(JWT);
    if (r.status() >= 300 && r.status() < 400) continue;
    if (r.headers()['content-type'] === 'text/event-stream') continue; // read above
    const body = await r.text().catch(() => '');
    expect(body, `body of ${r.url()}`).not.toMatch(JWT);
    expect(body).not.toContain('refresh_token');
  }
  // Signed in: exactly one session cookie, HttpOnly, Lax, gone when the browser closes.
  const sessions = (await context.cookies(APP)).filter((c) => c.name === 'kc_leptos_session');
  expect(sessions, 'one session cookie').toHaveLength(1);
  expect(sessions[0].expires, 'a browser-session cookie (session.persistent_cookie is off)').toBe(-1);
  for (const cookie of await context.cookies(APP)) {
    if (cookie.name === 'kc_leptos_session') {
      expect(cookie.httpOnly).toBe(true);
      expect(cookie.sameSite).toBe('Lax');
    }
    if (!cookie.name.startsWith('KEYCLOAK_') && !cookie.name.startsWith('AUTH_SESSION')) {
      expect(cookie.value).not.toMatch(JWT);
    }
  }
  expect(await page.evaluate(() => document.cookie)).not.toContain('kc_leptos_session');

  // Sign-out too: no token in its answer, nor in any URL the browser is sent to.
  const before = responses.length;
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL((url) => url.origin === APP && url.pathname === '/');
  await expect(page.getByRole('link', { name: 'Sign in', exact: true })).toBeVisible();
  expect(responses.length).toBeGreaterThan(before);
  for (const r of responses.slice(before)) {
    expect(JSON.stringify(await r.allHeaders()), `headers of ${r.url()}`).not.toMatch(JWT);
    if (r.status() >= 300 && r.status() < 400) continue;
    if (r.headers()['content-type'] === 'text/event-stream') continue;
    expect(await r.text().catch(() => ''), `body of ${r.url()}`).not.toMatch(JWT);
  }
  for (const url of requested) expect(url).not.toMatch(JWT);
});

test('an injected inline script is blocked by the content security policy, and the page still hydrates', async ({ page }) => {
  allowConsole(/Content Security Policy/, 'the injected script is refused, which is the point');
  const blocked: string[] = [];
  page.on('console', (m) => {
    if (/Content Security Policy/i.test(m.text())) blocked.push(m.text());
  });
  // A stand-in for stored XSS: every page of the app arrives with a script the app did not write,
  // under the app's own headers. In <head>: one in <body> would also break hydration (Leptos
  // hydrates the body node by node), which is not what this test is about.
  await page.route(`${APP}/**`, async (route) => {
    if (route.request().resourceType() !== 'document') return route.continue();
    const response = await route.fetch({ maxRedirects: 0 });
    const html = await response.text();
    await route.fulfill({
      response,
      body: html.replace('</head>', '<script>window.__injected = true;</script></head>'),
    });
  });
  await signIn(page, 'alice');
  expect(await page.evaluate(() => (window as unknown as { __injected?: boolean }).__injected)).toBeUndefined();
  expect(blocked.length).toBeGreaterThan(0);
  await hydrated(page);
  // Hydrated: a click in the navigation is handled in the browser and calls a server function.
  const overview = page.waitForResponse((r) => r.url().endsWith('/api/admin_overview'));
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Admin' }).click();
  expect((await overview).status()).toBe(200);
  await expect(page.getByRole('heading', { name: 'Administration' })).toBeVisible();
});
