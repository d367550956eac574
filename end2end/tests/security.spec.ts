import { expect, test } from './console';
import { KEYCLOAK, signIn } from './helpers';
import { createUser, deleteUser } from './keycloak-admin';

// The Security page: each button opens Keycloak's own page for an account action (kc_action) and
// comes back with the outcome, and the page lists how the account signs in. alice only cancels on
// Keycloak's page, so nothing of the development users changes; a throw-away user adds a passkey
// with Chromium's virtual authenticator; the library's integration tests change another's password
// and delete another (tests/integration/account_actions.rs).

test('alice opens Keycloak\'s password page from Security, cancels, and the page says so', async ({ page }) => {
  await signIn(page, 'alice');
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Security' }).click();
  await expect(page.getByRole('heading', { name: 'Security', level: 1 })).toBeVisible();
  await page.getByRole('link', { name: 'Change password' }).click();
  await page.waitForURL((url) => url.origin === KEYCLOAK);
  await expect(page.locator('#password-new')).toBeVisible();
  await page.getByRole('button', { name: 'Cancel' }).click();
  await page.waitForURL((url) => url.origin !== KEYCLOAK);
  expect(new URL(page.url()).pathname).toBe('/security');
  await expect(page.getByTestId('account-action-outcome')).toHaveText('Cancelled: your password was not changed.');
  await expect(page.getByTestId('signed-in-as')).toBeVisible();
});

test('deleting the account needs the confirmation ticked first', async ({ page }) => {
  await signIn(page, 'alice', '/security');
  const form = page.getByTestId('delete-account');
  await form.getByRole('button', { name: 'Delete my account' }).click();
  // The browser refuses the form until the box is ticked: still here, nothing sent to Keycloak.
  await expect(page).toHaveURL(/\/security$/);
  const missing = await form.getByRole('checkbox').evaluate((box) => (box as HTMLInputElement).validity.valueMissing);
  expect(missing, 'the confirmation is required').toBe(true);
});

test('a passkey added from Security with a (virtual) authenticator is listed there and signs in alone', async ({ page, context }) => {
  const realm = process.env.APP_REALM ?? 'demo-short';
  const username = await createUser(realm, 'passkey');
  // Chromium's virtual authenticator (the DevTools protocol's WebAuthn domain): a platform
  // authenticator that keeps discoverable credentials and verifies the user.
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true },
  });
  page.on('dialog', (dialog) => dialog.accept('Test laptop'));
  await page.goto('/security');
  await page.waitForURL((url) => url.origin === KEYCLOAK);
  await page.locator('#username').fill(username);
  await page.locator('#password').fill(`${username}-dev-pw`);
  await page.locator('#kc-login').click();
  await page.waitForURL((url) => url.origin !== KEYCLOAK);
  const passkeys = page.getByTestId('sign-in-methods').locator('dd[data-kind="webauthn-passwordless"]');
  await expect(passkeys).toHaveText('not set up');

  await page.getByRole('link', { name: 'Add a passkey' }).click();
  await page.waitForURL((url) => url.origin === KEYCLOAK);
  await page.getByRole('button', { name: /Register/ }).click();
  await page.waitForURL((url) => url.origin !== KEYCLOAK, { timeout: 20_000 });
  await expect(page.getByTestId('account-action-outcome')).toHaveText('Your passkey was added.');
  await expect(passkeys).not.toHaveText('not set up');
  // The key is on the (virtual) device, Keycloak holds only its public part.
  const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
  expect(credentials.filter((c) => c.isResidentCredential)).toHaveLength(1);

  // Signed out (Keycloak's session too), the passkey alone signs in: no username, no password.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await expect(page.getByRole('link', { name: 'Sign in', exact: true })).toBeVisible();
  await page.goto('/security');
  await page.waitForURL((url) => url.origin === KEYCLOAK);
  // Keycloak's page asks the browser for a passkey as it loads (conditional mediation), which
  // Chromium's virtual authenticator answers by itself; otherwise its "Sign in with Passkey"
  // button does. Nothing is typed either way.
  const back = page.waitForURL((url) => url.origin !== KEYCLOAK, { timeout: 20_000 });
  await page.locator('#authenticateWebAuthnButton').click({ timeout: 5_000 }).catch(() => undefined);
  await back;
  expect(new URL(page.url()).pathname).toBe('/security');
  await expect(page.getByTestId('signed-in-as')).toBeVisible();
  await expect(passkeys).not.toHaveText('not set up');
  const me = await (await page.request.get('/api/v1/me')).json();
  expect(me.username).toBe(username);
  // A passkey is a sign-in at level 1 in the demo realm's flow (the password form offers it).
  expect(me.acr).toBe('password');
  const after = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
  expect(after.credentials[0].signCount, 'the passkey signed the sign-in').toBeGreaterThan(credentials[0].signCount);
  await deleteUser(realm, username);
});
