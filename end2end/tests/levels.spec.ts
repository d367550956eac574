import { createHmac } from 'node:crypto';
import { expect, test } from './console';
import { KEYCLOAK, keycloakSignIn, seriousViolations } from './helpers';
import { createUser, deleteUser, grantRealmRole } from './keycloak-admin';

// Levels of authentication in Chromium, on Keycloak's real pages: otto (an admin of the demo
// realms whose authenticator app has a known secret) signs in with his password, which is level
// `password`; a user's details in the directory (and its JSON for programs) need `otp`, so the
// page prompts him, and Keycloak asks only for the authenticator's code (it knows the browser).
// The code is computed here (RFC 6238), as his phone would.

/** otto's authenticator secret, as keycloak/demo-realm.json imports it. */
const OTTO_TOTP_SECRET = 'otto-totp-dev-secret';

/** The RFC 6238 code of `secret` now (HMAC-SHA1, 6 digits, 30 s), keyed by its bytes as Keycloak
 * stores it (a string), or by the bytes an authenticator app reads from the Base32 key. */
function totp(secret: string | Buffer, now = Date.now()): string {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(now / 1000 / 30)));
  const key = typeof secret === 'string' ? Buffer.from(secret, 'utf8') : secret;
  const h = createHmac('sha1', key).update(counter).digest();
  const offset = h[h.length - 1] & 0x0f;
  return String((h.readUInt32BE(offset) & 0x7fffffff) % 1_000_000).padStart(6, '0');
}

/** The bytes of a Base32 key as Keycloak shows it ("JM4G S52E …"). */
function base32(text: string): Buffer {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of text.replace(/[\s=]/g, '').toUpperCase()) {
    const v = alphabet.indexOf(c);
    if (v < 0) throw new Error(`not Base32: ${c}`);
    bits += v.toString(2).padStart(5, '0');
  }
  const bytes = bits.match(/.{8}/g) ?? [];
  return Buffer.from(bytes.map((b) => parseInt(b, 2)));
}

test('otto verifies with his authenticator to see a user\'s details, which the page and the API both asked for', async ({ page }) => {
  await page.goto('/admin/users?q=otto');
  await keycloakSignIn(page, 'otto', 'otto-dev-pw');
  await page.waitForURL((url) => url.origin !== KEYCLOAK);
  const row = page.getByTestId('directory-user').filter({ has: page.getByText('otto', { exact: true }) });
  await expect(row).toHaveCount(1);

  // A password sign-in: the JSON for programs says which level would do (RFC 9470), and the
  // page prompts instead of the detail.
  const before = await page.request.get('/api/v1/users?search=otto&page=0');
  expect(before.status()).toBe(401);
  expect(before.headers()['www-authenticate']).toContain('error="insufficient_user_authentication"');
  expect(before.headers()['www-authenticate']).toContain('acr_values="otp"');
  await row.getByRole('link', { name: 'Details' }).click();
  const prompt = page.getByTestId('level-prompt');
  await expect(prompt).toContainText("A user's details needs a stronger sign-in");
  await expect(page.getByTestId('user-detail')).toHaveCount(0);
  expect(await seriousViolations(page, 'the prompt')).toEqual([]);
  const detailUrl = new URL(page.url());
  expect(detailUrl.searchParams.get('detail')).toBeTruthy();

  await prompt.getByRole('link', { name: 'Verify with your authenticator' }).click();
  await page.waitForURL((url) => url.origin === KEYCLOAK);
  await expect(page.locator('#password'), 'only the code is asked').toHaveCount(0);
  await page.locator('#otp').fill(totp(OTTO_TOTP_SECRET));
  await page.locator('#kc-login').click();
  await page.waitForURL((url) => url.origin !== KEYCLOAK);
  expect(new URL(page.url()).pathname + new URL(page.url()).search).toBe(detailUrl.pathname + detailUrl.search);

  const detail = page.getByTestId('user-detail');
  await expect(detail).toBeVisible();
  await expect(detail.locator('dd[data-fact="authenticator"]')).toHaveText('yes');
  await expect(detail.getByTestId('detail-sessions')).toContainText('demo-app');
  await expect(page.getByTestId('level-prompt')).toHaveCount(0);
  expect(await seriousViolations(page, "a user's details")).toEqual([]);
  const after = await page.request.get('/api/v1/users?search=otto&page=0');
  expect(after.status()).toBe(200);
  const found = await after.json();
  expect(found.users.map((u: { username: string }) => u.username)).toContain('otto');
});

test('an admin sets up an authenticator app from Security with a computed code, and it is then asked for a user\'s details', async ({ page }) => {
  const realm = process.env.APP_REALM ?? 'demo-short';
  const username = await createUser(realm, 'totp');
  await grantRealmRole(realm, username, 'admin');
  await page.goto('/security');
  await keycloakSignIn(page, username, `${username}-dev-pw`);
  await page.waitForURL((url) => url.origin !== KEYCLOAK);
  const authenticator = page.getByTestId('sign-in-methods').locator('dd[data-kind="otp"]');
  await expect(authenticator).toHaveText('not set up');

  // Keycloak's page, as a person with a phone: "Unable to scan?" shows the key to type in.
  await page.getByRole('link', { name: 'Set up an authenticator app' }).click();
  await page.waitForURL((url) => url.origin === KEYCLOAK);
  await page.locator('#mode-manual').click();
  const key = base32((await page.locator('#kc-totp-secret-key').textContent()) ?? '');
  await page.locator('#totp').fill(totp(key));
  await page.locator('#userLabel').fill('Test phone');
  await page.locator('#saveTOTPBtn').click();
  await page.waitForURL((url) => url.origin !== KEYCLOAK);
  await expect(page.getByTestId('account-action-outcome')).toHaveText('Your authenticator app is set up.');
  await expect(authenticator).toHaveText('Test phone');

  // A user's details need the code: Keycloak asks for it (the code of the next 30 s: the one
  // just used is spent, and Keycloak accepts its neighbour).
  await page.goto(`/admin/users?q=${username}`);
  await page.getByTestId('directory-user').getByRole('link', { name: 'Details' }).click();
  await page.getByTestId('level-prompt').getByRole('link', { name: 'Verify with your authenticator' }).click();
  await page.waitForURL((url) => url.origin === KEYCLOAK);
  await page.locator('#otp').fill(totp(key, Date.now() + 30_000));
  await page.locator('#kc-login').click();
  await page.waitForURL((url) => url.origin !== KEYCLOAK);
  await expect(page.getByTestId('user-detail').locator('dd[data-fact="authenticator"]')).toHaveText('yes');
  await deleteUser(realm, username);
});
