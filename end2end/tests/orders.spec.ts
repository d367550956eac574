import { allowConsole, expect, test } from './console';
import { APP, JWT, KEYCLOAK, recordAppResponses, signIn } from './helpers';

// The Orders page: its data lives in another service (examples/orders-api, started by
// scripts/test.sh on 127.0.0.1:4001). The browser calls /remote/orders on the app; the library
// forwards the call with a token exchanged for orders-api. What a user may do there is the
// service's decision (its roles read and create), shown on the page as it comes back.

/** The realm of the app under test (the cluster has its own). */
const REALM = process.env.APP_REALM ?? 'demo-short';

test('alice places an order through the app, and orders-api saw a token made for it alone', async ({ page }) => {
  const responses = recordAppResponses(page, APP);
  await signIn(page, 'alice');
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Orders' }).click();
  await expect(page.getByRole('heading', { name: 'Orders', level: 1 })).toBeVisible();
  const seen = page.getByTestId('orders-seen');
  // Exchanged: the audience is orders-api only (the session's own token names demo-app).
  await expect(seen.locator('dt:has-text("Audience") + dd')).toHaveText('orders-api');
  await expect(seen.locator('dt:has-text("Asked for by") + dd')).toHaveText('demo-app');

  const item = `a blue mug ${Date.now()}`;
  await page.getByLabel('New order').fill(item);
  const placed = page.waitForRequest((r) => r.url() === `${APP}/remote/orders` && r.method() === 'POST');
  await page.getByRole('button', { name: 'Place order' }).click();
  const request = await placed;
  expect(request.headers()['x-csrf'], 'the page sends the anti-forgery header').toBe('1');
  const list = page.getByRole('list', { name: 'Your orders' });
  await expect(list.getByText(item)).toBeVisible();
  await expect(page.getByLabel('New order')).toHaveValue('');

  // Nothing the app sent the browser on the way holds a token, and the service's cookie stayed out.
  for (const r of responses.filter((r) => new URL(r.url()).pathname.startsWith('/remote/'))) {
    expect(await r.text(), `body of ${r.url()}`).not.toMatch(JWT);
    expect(r.headers()['set-cookie'], `cookies of ${r.url()}`).toBeUndefined();
  }
  expect(responses.some((r) => new URL(r.url()).pathname === '/remote/orders')).toBe(true);

  // Kept by the service: there after a reload.
  await page.reload();
  await expect(page.getByRole('list', { name: 'Your orders' }).getByText(item)).toBeVisible();

});

test('paul reads his orders, and the page says why his order was refused', async ({ page }) => {
  allowConsole(/status of 403 .*\/remote\/orders/, 'orders-api refuses paul the role create (403) on purpose');
  await signIn(page, 'paul', '/orders');
  await expect(page.getByTestId('orders')).toBeVisible();
  await expect(page.getByTestId('orders-seen').locator('dt:has-text("User") + dd')).not.toBeEmpty();
  await page.getByLabel('New order').fill('a red mug');
  await page.getByRole('button', { name: 'Place order' }).click();
  await expect(page.getByRole('alert').filter({ hasText: 'The order was not placed' })).toHaveText(
    'The order was not placed: the role orders-api:create is needed.',
  );
});

test('a page of another origin cannot use the signed-in browser to call /remote/orders', async ({ page, request }) => {
  allowConsole(/status of 403 .*\/remote\/orders\?m=cross-/, "the app refuses the other origin's GET (403) on purpose");
  allowConsole(/ERR_FAILED .*\/remote\/orders\?m=cross-/, "Chromium stops the other origin's POST at its preflight, on purpose");
  await signIn(page, 'alice');
  // Keycloak's origin (another port of the same site: the session cookie, SameSite=Lax, still
  // goes with its requests to the app).
  await page.goto(`${KEYCLOAK}/realms/${REALM}/.well-known/openid-configuration`);
  const marker = `cross-${Date.now()}`;
  const outcome = await page.evaluate(async ({ app, marker }) => {
    const results: string[] = [];
    try {
      const r = await fetch(`${app}/remote/orders?m=${marker}`, { credentials: 'include', mode: 'no-cors' });
      results.push(`get:${r.type}`);
    } catch (e) {
      results.push(`get:threw`);
    }
    try {
      await fetch(`${app}/remote/orders?m=${marker}`, {
        method: 'POST',
        credentials: 'include',
        headers: { 'x-csrf': '1', 'content-type': 'application/json' },
        body: JSON.stringify({ item: 'forged' }),
      });
      results.push('post:answered');
    } catch (e) {
      results.push('post:threw');
    }
    return results;
  }, { app: APP, marker });
  // The POST with the header needs a CORS preflight, which the app never grants: the browser
  // stops it. The GET goes (opaque), and the app refuses it for its Origin.
  expect(outcome).toEqual(['get:opaque', 'post:threw']);
  const log = await (await request.get('http://127.0.0.1:4001/_requests')).json();
  expect(JSON.stringify(log), 'no call of that page reached orders-api').not.toContain(marker);
});
