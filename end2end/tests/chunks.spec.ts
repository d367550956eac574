import { Page } from '@playwright/test';
import { allowConsole, expect, test } from './console';
import { hydrated, signIn } from './helpers';

// The demo is split (cargo leptos build --split, #[lazy_route]): every page but the home page is
// a WebAssembly chunk that the browser fetches when the page is first visited. These tests check
// what a user would: the home page does not download the other pages' code, a visit to a page
// fetches its chunk and the page works, a page loaded first hydrates (it answers clicks), and a
// chunk that cannot be fetched shows a notice with a Reload link instead of a dead page.

/** The route chunk of a page: wasm-split names it after the route's view
 * (`split___<route>_view_<hash>.<content hash>.wasm`). */
const CHUNK = /\/pkg\/split___([a-z]+)_route_view_[^/]*\.wasm$/;

/** The chunk of a note's editor (`#[lazy] fn note_editor`). */
const EDITOR = /\/pkg\/split_note_editor_[^/]*\.wasm$/;

/** Records the names of the route chunks the page fetches. */
function routeChunks(page: Page) {
  const seen: string[] = [];
  page.on('request', (r) => {
    const m = CHUNK.exec(new URL(r.url()).pathname);
    if (m) seen.push(m[1]);
  });
  return seen;
}

test('a page is fetched as its own chunk when it is first visited, and works', async ({ page }) => {
  const chunks = routeChunks(page);
  await signIn(page, 'alice');
  await hydrated(page);
  await page.waitForLoadState('networkidle');
  expect(chunks, 'the home page fetches no page chunk').toEqual([]);

  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Profile' }).click();
  await expect(page.getByTestId('username')).toHaveText('alice');
  expect(chunks).toEqual(['profile']);

  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Admin', exact: true }).click();
  await expect(page.getByTestId('admin-page')).toBeVisible();
  await expect(page.getByTestId('admin-page')).toContainText('demo-app');
  expect(chunks).toEqual(['profile', 'admin']);

  // Back to a page already visited: its code is there, nothing is fetched again.
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Profile' }).click();
  await expect(page.getByTestId('username')).toHaveText('alice');
  expect(chunks).toEqual(['profile', 'admin']);
});

test('a page loaded first hydrates with its chunk and answers clicks; the note editor comes with the first Edit', async ({ page }) => {
  await signIn(page, 'alice', '/notes');
  const chunks = routeChunks(page);
  const editor: string[] = [];
  page.on('request', (r) => { if (EDITOR.test(new URL(r.url()).pathname)) editor.push(r.url()); });
  await page.goto('/notes');
  await hydrated(page);
  expect(chunks).toContain('notes');
  // The notes board is the chunk's code. Edit is a button that only the hydrated page answers
  // (no form, no request): it opens the note's editor in place, whose code is a chunk of its own,
  // fetched on the first click only.
  const text = `chunk test ${Date.now()}`;
  await page.locator('#new-note').fill(text);
  await page.getByRole('button', { name: 'Post note' }).click();
  const mine = page.getByTestId('note').filter({ hasText: text });
  await expect(mine).toBeVisible();
  expect(editor, 'the editor is not fetched before Edit').toEqual([]);
  await mine.getByRole('button', { name: 'Edit' }).click();
  await expect(mine.getByRole('button', { name: 'Save' })).toBeVisible();
  expect(editor).toHaveLength(1);
  await mine.getByRole('button', { name: 'Cancel' }).click();
  await mine.getByRole('button', { name: 'Delete' }).click();
  await expect(page.getByTestId('note').filter({ hasText: text })).toHaveCount(0);
});

test('a page chunk that cannot be fetched shows a notice with a Reload link that works', async ({ page }) => {
  allowConsole(/load callback should succeed|split|Failed to fetch|ERR_FAILED|unreachable|RuntimeError/i,
    'the test cuts the chunk off on purpose: the loader and the panic hook log it');
  await signIn(page, 'alice');
  await hydrated(page);
  await page.waitForLoadState('networkidle');
  await page.route(CHUNK, (route) => route.abort('failed'));
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Profile' }).click();
  const notice = page.getByTestId('kc-failure');
  await expect(notice).toBeVisible();
  await expect(notice).toHaveAttribute('role', 'alert');
  await expect(notice).toContainText('could not be loaded');

  // The network is back: Reload brings a working page.
  await page.unroute(CHUNK);
  await notice.getByRole('link', { name: 'Reload' }).click();
  await expect(page.getByTestId('signed-in-as')).toBeVisible();
  await hydrated(page);
  await expect(page.getByTestId('kc-failure')).toHaveCount(0);
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Profile' }).click();
  await expect(page.getByTestId('username')).toHaveText('alice');
});
