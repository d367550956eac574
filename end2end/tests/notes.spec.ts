import { expect, test } from './console';
import { signIn } from './helpers';

test('editor writes, viewer reads without controls, admin deletes, a user without app roles is kept out', async ({ browser }) => {
  const text = `Release notes draft ${Date.now()}`;

  // The editor creates a note and sees it, with the controls an author has.
  const editor = await (await browser.newContext()).newPage();
  await signIn(editor, 'erin');
  await editor.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Notes' }).click();
  await expect(editor.getByTestId('notes-board')).toBeVisible();
  await editor.getByLabel('New note').fill(text);
  await editor.getByRole('button', { name: 'Post note' }).click();
  const mine = editor.getByTestId('note').filter({ hasText: text });
  await expect(mine).toBeVisible();
  await expect(mine).toContainText('Erin Editor');
  await expect(mine.getByRole('button', { name: 'Edit' })).toBeVisible();
  await expect(mine.getByRole('button', { name: 'Delete' })).toHaveCount(0);
  await mine.getByRole('button', { name: 'Edit' }).click();
  await mine.locator('textarea').fill(`${text} (edited)`);
  await mine.getByRole('button', { name: 'Save' }).click();
  await expect(editor.getByTestId('note').filter({ hasText: `${text} (edited)` })).toBeVisible();

  // The viewer sees it, and no create, edit or delete controls at all.
  const viewer = await (await browser.newContext()).newPage();
  await signIn(viewer, 'paul');
  await viewer.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Notes' }).click();
  const seen = viewer.getByTestId('note').filter({ hasText: text });
  await expect(seen).toBeVisible();
  await expect(viewer.getByTestId('note-composer')).toHaveCount(0);
  await expect(viewer.getByRole('button', { name: 'Edit' })).toHaveCount(0);
  await expect(viewer.getByRole('button', { name: 'Delete' })).toHaveCount(0);

  // The admin deletes it.
  const admin = await (await browser.newContext()).newPage();
  await signIn(admin, 'alice');
  await admin.goto('/notes');
  const target = admin.getByTestId('note').filter({ hasText: text });
  await target.getByRole('button', { name: 'Delete' }).click();
  await expect(admin.getByTestId('note').filter({ hasText: text })).toHaveCount(0);
  await viewer.reload();
  await expect(viewer.getByTestId('note').filter({ hasText: text })).toHaveCount(0);

  // A user with no app role sees neither the link nor the board by URL.
  const outsider = await (await browser.newContext()).newPage();
  await signIn(outsider, 'nora');
  await expect(outsider.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Notes' })).toHaveCount(0);
  const response = await outsider.goto('/notes');
  expect(response?.status()).toBe(403);
  await expect(outsider.getByRole('heading', { name: '403 · Not allowed' })).toBeVisible();
  await expect(outsider.getByTestId('notes-board')).toHaveCount(0);
});
