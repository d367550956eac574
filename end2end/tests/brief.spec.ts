import { Page } from '@playwright/test';
import { allowConsole, expect, test } from './console';
import { KEYCLOAK, SHOTS, hydrated, signIn } from './helpers';

// The app instance on http://localhost:3004 (scripts/test.sh), against the realm demo-brief:
// Keycloak sessions idle out after 130 s and end after 160 s at most, demo-app uses front-channel
// logout (session.frontchannel_logout = true), and step-up needs a sign-in within 10 s. One
// process only: the cluster run leaves these out (@single).
const BRIEF = process.env.BRIEF_URL ?? 'http://localhost:3004';
const REALM = 'demo-brief';
/** The app's expiry warning (session.expiry_warning_secs, its default). */
const WARN_SECS = 120;
test.use({ baseURL: BRIEF });

/** Milliseconds until the warning is due for a session that ends at `endsAt` (Unix seconds, as
 * the server answered), plus `slack`: every wait on Keycloak's clocks is derived from the server's
 * answer, never a fixed sleep, so a slow machine only makes the test slower. */
function untilWarning(endsAt: number, slack = 10_000) {
  return Math.max(0, (endsAt - WARN_SECS) * 1000 - Date.now()) + slack;
}

/** Keycloak asks for the password again (a step-up), then comes back. */
async function confirmPassword(page: Page, user: string) {
  await page.waitForURL((url) => url.origin === KEYCLOAK);
  // Keycloak shows the username it re-authenticates, read-only.
  await expect(page.getByText('Please re-authenticate to continue')).toBeVisible();
  const password = page.getByLabel('Password', { exact: true });
  await expect(password).toBeVisible();
  await password.fill(`${user}-dev-pw`);
  await page.getByRole('button', { name: 'Sign In' }).click();
  await page.waitForURL((url) => url.origin === BRIEF);
}

test('@single the session-ending banner extends the session up to the maximum, then asks for a new sign-in, in every tab', async ({ context }) => {
  test.setTimeout(180_000);
  const page = await context.newPage();
  await signIn(page, 'erin', '/profile');
  const other = await context.newPage();
  await other.goto('/');
  await expect(other.getByTestId('signed-in-as')).toHaveText('Erin Editor');
  const before = await (await page.request.post('/auth/refresh')).json();
  expect(before.session_expires_at, 'the session ends at the idle limit').toBeGreaterThan(0);

  // Idle 130 s: within two minutes of the end the banner shows, in both tabs.
  for (const p of [page, other]) {
    const banner = p.getByTestId('session-expiring');
    await expect(banner).toBeVisible({ timeout: untilWarning(before.session_expires_at) });
    await expect(banner).toContainText('Your session ends in');
  }
  await page.screenshot({ path: `${SHOTS}/session-ending-banner.png` });
  // The banner counts down every second; its button keeps the keyboard focus through the ticks,
  // and Enter stays signed in.
  const stay = page.getByRole('button', { name: 'Stay signed in' });
  await stay.focus();
  const counting = await page.getByTestId('session-expiring').textContent();
  await expect(page.getByTestId('session-expiring')).not.toHaveText(counting ?? '');
  await expect(stay).toBeFocused();
  const extended = page.waitForResponse((r) => r.url().endsWith('/auth/extend'));
  await page.keyboard.press('Enter');
  const answer = await (await extended).json();
  // The refresh moved the end, more than the warning away.
  expect(answer.session_expires_at).toBeGreaterThan(before.session_expires_at);
  expect(answer.at_maximum ?? false, `extended at ${Date.now() / 1000}, the session now ends at ${answer.session_expires_at}`).toBe(false);
  for (const p of [page, other]) await expect(p.getByTestId('session-expiring')).toHaveCount(0);

  // Each "Stay signed in" moves the idle end (130 s ahead) until Keycloak's maximum (160 s after
  // the sign-in) caps it; then the banner can only ask for a new sign-in. Every wait comes from
  // the end the server answered, so a slow machine takes longer but never fails.
  let end = answer.session_expires_at;
  let last = answer;
  for (let round = 0; round < 12 && !last.at_maximum; round++) {
    await expect(other.getByTestId('session-expiring')).toBeVisible({ timeout: untilWarning(end) });
    const again = other.waitForResponse((r) => r.url().endsWith('/auth/extend'));
    await other.getByRole('button', { name: 'Stay signed in' }).click();
    last = await (await again).json();
    if (!last.at_maximum) {
      expect(last.session_expires_at, 'a refresh short of the maximum moves the end').toBeGreaterThan(end);
    }
    end = last.session_expires_at;
  }
  expect(last.at_maximum, `the maximum is reached (the session ends at ${end})`).toBe(true);
  for (const p of [page, other]) {
    await expect(p.getByTestId('session-at-maximum')).toBeVisible();
    await expect(p.getByTestId('session-at-maximum')).toContainText('maximum length');
  }
  await expect(page.getByTestId('session-at-maximum').getByRole('link', { name: 'Sign in again' }))
    .toHaveAttribute('href', '/auth/login?return_to=%2Fprofile');
  await page.screenshot({ path: `${SHOTS}/session-at-maximum.png` });
});

test('@single an unattended tab is signed out at Keycloak\'s idle limit, and a tab in use stays signed in past it', async ({ browser }) => {
  test.setTimeout(240_000);
  const [idleContext, usedContext] = [
    await browser.newContext({ baseURL: BRIEF }),
    await browser.newContext({ baseURL: BRIEF }),
  ];
  const [idle, used] = [await idleContext.newPage(), await usedContext.newPage()];
  await signIn(idle, 'paul', '/profile');
  await signIn(used, 'nora', '/profile');
  // Where each session stands, asked without keeping it alive.
  const ends = async (page: Page) => (await (await page.request.post('/auth/refresh?idle=1')).json()).session_expires_at as number;
  const idleEnd = await ends(idle);
  const usedEnd = await ends(used);
  // Someone works in one tab (a key every 8 s); nobody touches the other.
  let typing = true;
  const typist = (async () => {
    while (typing) {
      await used.keyboard.press('Shift');
      await used.waitForTimeout(8_000);
    }
  })();
  // The unattended tab warns, then ends at Keycloak's idle limit (130 s), before its maximum.
  await expect(idle.getByTestId('session-expiring')).toBeVisible({ timeout: untilWarning(idleEnd) });
  await expect(idle.getByTestId('session-ended')).toBeVisible({
    timeout: Math.max(0, idleEnd * 1000 - Date.now()) + 15_000,
  });
  expect(Date.now() / 1000, 'ended at the idle limit, not at the maximum').toBeLessThan(idleEnd + 20);
  // The tab in use is past its own idle limit, and still signed in (its maximum is 160 s).
  await used.waitForTimeout(Math.max(0, (usedEnd + 3) * 1000 - Date.now()));
  typing = false;
  await typist;
  expect(Date.now() / 1000).toBeGreaterThan(usedEnd);
  await expect(used.getByTestId('session-ended')).toHaveCount(0);
  const still = await used.request.post('/api/current_user');
  expect(still.status()).toBe(200);
  expect((await still.json()).username).toBe('nora');
  await idleContext.close();
  await usedContext.close();
});

test('@single signing out at Keycloak ends the app session through front-channel logout', async ({ context }) => {
  const app = await context.newPage();
  await signIn(app, 'nora', '/profile');
  const frontChannel: string[] = [];
  context.on('request', (r) => {
    if (r.url().startsWith(`${BRIEF}/auth/frontchannel-logout`)) frontChannel.push(r.url());
  });
  const keycloak = await context.newPage();
  await keycloak.goto(`${KEYCLOAK}/realms/${REALM}/protocol/openid-connect/logout`);
  await keycloak.getByRole('button', { name: /log ?out/i }).click();
  // Keycloak's page lists the applications it signs out of, each in an iframe of its own.
  await expect(keycloak.getByText('You are logging out from following apps')).toBeVisible();
  await expect.poll(() => frontChannel.length).toBe(1);
  expect(frontChannel[0]).toContain(`iss=${encodeURIComponent(`${KEYCLOAK}/realms/${REALM}`)}`);
  expect(frontChannel[0]).toContain('sid=');
  // The open page hears it at once; a new page is signed out.
  await expect(app.getByTestId('session-ended')).toBeVisible({ timeout: 10_000 });
  await app.goto('/');
  await expect(app.getByRole('link', { name: 'Sign in', exact: true })).toBeVisible();
});

test('@single deleting someone else\'s note with a stale sign-in asks for the password, then completes', async ({ browser }) => {
  // Two waits of 11 s, three sign-ins and two password confirmations through Keycloak, beside
  // two other browser suites: 1.3 min in a passing CI run, over 1.5 min in a failing one.
  test.setTimeout(150_000);
  allowConsole(/status of 401 .*\/api\/delete_note/, 'the server function refuses the stale sign-in (401, step-up) on purpose');
  const erinContext = await browser.newContext({ baseURL: BRIEF });
  const erin = await erinContext.newPage();
  await signIn(erin, 'erin', '/notes');
  const body = `erin's note to moderate ${Date.now()}`;
  await erin.getByLabel('New note').fill(body);
  await erin.getByRole('button', { name: 'Post note' }).click();
  await expect(erin.getByText(body)).toBeVisible();
  await erinContext.close();

  const context = await browser.newContext({ baseURL: BRIEF });
  const page = await context.newPage();
  await signIn(page, 'alice', '/notes');
  const note = page.getByTestId('note').filter({ hasText: body });
  const id = await note.locator('input[name="id"]').inputValue();
  await page.waitForTimeout(11_000); // older than auth.step_up_max_age_secs (10 s here)

  // Calling the server function directly does not get around it.
  const direct = await page.request.post('/api/delete_note', { form: { id } });
  expect(direct.status()).toBe(401);
  // Refused for want of a recent sign-in, not for a lost cookie or any other 401.
  expect(await direct.text()).toContain('StepUpRequired');
  await page.reload();
  await expect(note).toBeVisible();
  // Hydrated first: a click before it posts the form natively, and the page lands on the server
  // function's 401 instead of the step-up.
  await hydrated(page);

  await note.getByRole('button', { name: 'Delete' }).click();
  await confirmPassword(page, 'alice');
  expect(new URL(page.url()).pathname).toBe('/notes');
  await expect(page.getByTestId('notes-board')).toBeVisible();
  await expect(note).toHaveCount(0);

  // The user directory asks the same once the sign-in is stale again.
  await page.waitForTimeout(11_000);
  await page.goto('/admin/users');
  await confirmPassword(page, 'alice');
  expect(new URL(page.url()).pathname).toBe('/admin/users');
  await expect(page.getByTestId('user-directory')).toBeVisible();
  await context.close();
});

test('@single a tab refused its event stream backs off instead of asking every second, and gets it once there is room', async ({ browser }) => {
  test.setTimeout(90_000);
  allowConsole(/status of 429 .*\/auth\/events/, 'the tab is refused its stream (429) on purpose');
  allowConsole(/status of 404 .*\/favicon\.ico/, 'the holder page is /health/live, plain text: Chromium asks for /favicon.ico');
  const context = await browser.newContext({ baseURL: BRIEF });
  // Another page of the same browser, outside the app (no watcher of its own), takes all four
  // streams the session may hold.
  const holder = await context.newPage();
  await signIn(holder, 'paul', '/profile');
  await holder.goto('/health/live');
  // (The app page's own stream may take a moment to be let go: a refused one is tried again.)
  const held = await holder.evaluate(() => new Promise<number>((resolve) => {
    const w = window as unknown as { held: EventSource[] };
    w.held = [];
    let opened = 0;
    const open = () => {
      const s = new EventSource('/auth/events');
      s.addEventListener('status', () => { opened += 1; if (opened === 4) resolve(opened); }, { once: true });
      s.onerror = () => {
        if (s.readyState === EventSource.CLOSED) {
          w.held = w.held.filter((h) => h !== s);
          setTimeout(open, 300);
        }
      };
      w.held.push(s);
    };
    for (let i = 0; i < 4; i++) open();
  }));
  expect(held).toBe(4);
  // The app's tab is refused (429): it asks again after 1, 2, 4, 8… seconds (jittered), not every second.
  const page = await context.newPage();
  const tries: number[] = [];
  const opened: number[] = [];
  page.on('request', (r) => { if (r.url().endsWith('/auth/events')) tries.push(Date.now()); });
  page.on('response', (r) => { if (r.url().endsWith('/auth/events') && r.status() === 200) opened.push(Date.now()); });
  await page.goto('/profile');
  await expect(page.getByTestId('signed-in-as')).toBeVisible();
  await page.waitForTimeout(20_000);
  expect(tries.length, 'it tried').toBeGreaterThanOrEqual(2);
  expect(tries.length, `tries at ${tries.map((t) => t - tries[0]).join(', ')} ms`).toBeLessThanOrEqual(7);
  expect(opened).toHaveLength(0);
  // The other page lets go: the tab's next try opens its stream.
  await holder.evaluate(() => (window as unknown as { held: EventSource[] }).held.forEach((s) => s.close()));
  await expect.poll(() => opened.length, { timeout: 45_000 }).toBeGreaterThan(0);
  await context.close();
});
