import { expect, test } from './console';
import { KEYCLOAK, keycloakSignIn, signIn } from './helpers';
import { createUser, deleteUser, grantClientRole, userExists } from './keycloak-admin';

// The Security page: each button opens Keycloak's own page for an account action (kc_action) and
// comes back with the outcome, and the page lists how the account signs in. alice only cancels on
// Keycloak's page, so nothing of the development users changes; throw-away users change their
// password, add a passkey with Chromium's virtual authenticator and sign in with it, and delete
// their account with a second tab open (tests/integration/account_actions.rs does the same over
// HTTP).

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
  const visited: string[] = [];
  page.on('framenavigated', (frame) => {
    if (frame === page.mainFrame()) visited.push(new URL(frame.url()).origin);
  });
  await page.goto('/security');
  // Keycloak's page asks the browser for a passkey as it loads (conditional mediation), which
  // Chromium's virtual authenticator answers by itself, often before this test looks; otherwise
  // its "Sign in with Passkey" button does. Nothing is typed either way.
  if (new URL(page.url()).origin === KEYCLOAK) {
    await page.locator('#authenticateWebAuthnButton').click({ timeout: 5_000 }).catch(() => undefined);
  }
  await page.waitForURL((url) => url.origin !== KEYCLOAK && url.pathname === '/security', { timeout: 20_000 });
  expect(visited, 'the sign-in went through Keycloak').toContain(KEYCLOAK);
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

test('a password changed from Security signs in afterwards, and the old one no longer does', async ({ page }) => {
  const realm = process.env.APP_REALM ?? 'demo-short';
  const username = await createUser(realm, 'password');
  const [old, changed] = [`${username}-dev-pw`, `${username}-changed-pw`];
  await page.goto('/security');
  await keycloakSignIn(page, username, old);
  await page.waitForURL((url) => url.origin !== KEYCLOAK);
  await page.getByRole('link', { name: 'Change password' }).click();
  await page.waitForURL((url) => url.origin === KEYCLOAK);
  await page.locator('#password-new').fill(changed);
  await page.locator('#password-confirm').fill(changed);
  await page.locator('#password-confirm').press('Enter');
  await page.waitForURL((url) => url.origin !== KEYCLOAK);
  await expect(page.getByTestId('account-action-outcome')).toHaveText('Your password was changed.');

  await page.getByRole('button', { name: 'Sign out' }).click();
  await expect(page.getByRole('link', { name: 'Sign in', exact: true })).toBeVisible();
  await page.goto('/security');
  await keycloakSignIn(page, username, old);
  await expect(page.locator('#input-error, .pf-m-error, [id^="input-error"]').first()).toBeVisible();
  expect(new URL(page.url()).origin, 'the old password is refused').toBe(KEYCLOAK);
  await page.locator('#password').fill(changed);
  await page.locator('#kc-login').click();
  await page.waitForURL((url) => url.origin !== KEYCLOAK);
  await expect(page.getByTestId('signed-in-as')).toBeVisible();
  await deleteUser(realm, username);
});

test('deleting the account from one tab signs the other tab out and Keycloak forgets the user', async ({ context }) => {
  const realm = process.env.APP_REALM ?? 'demo-short';
  const username = await createUser(realm, 'delete');
  await grantClientRole(realm, username, 'account', 'delete-account');
  const here = await context.newPage();
  await here.goto('/security');
  await keycloakSignIn(here, username, `${username}-dev-pw`);
  await here.waitForURL((url) => url.origin !== KEYCLOAK);
  const other = await context.newPage();
  await other.goto('/profile');
  await expect(other.getByTestId('signed-in-as')).toBeVisible();

  const form = here.getByTestId('delete-account');
  await form.getByRole('checkbox').check();
  await form.getByRole('button', { name: 'Delete my account' }).click();
  await here.waitForURL((url) => url.origin === KEYCLOAK);
  // Keycloak may ask for the password again, then for the confirmation, then says it is done.
  for (let step = 0; step < 3; step++) {
    if (await here.getByText('User deleted successfully').count()) break;
    if (await here.locator('#password').count()) {
      await here.locator('#password').fill(`${username}-dev-pw`);
      await here.locator('#kc-login').click();
    } else {
      await here.getByRole('button', { name: 'Confirm' }).click();
    }
    await here.waitForLoadState();
  }
  await expect(here.getByText('User deleted successfully')).toBeVisible();

  // The other tab is told, without a reload, once the app has checked with Keycloak (at its
  // next refresh: the tokens of these realms live 10 s).
  await expect(other.getByTestId('signed-in-as')).toHaveCount(0, { timeout: 30_000 });
  expect(await userExists(realm, username), 'Keycloak no longer has the user').toBe(false);
});
