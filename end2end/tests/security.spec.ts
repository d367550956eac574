import { expect, test } from './console';
import { KEYCLOAK, signIn } from './helpers';

// The Security page: each button opens Keycloak's own page for an account action (kc_action) and
// comes back with the outcome. Here the user cancels on Keycloak's page, so nothing of the
// development users changes; the library's integration tests change a throw-away user's password
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
