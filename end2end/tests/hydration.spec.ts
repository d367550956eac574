import { Browser, Page } from '@playwright/test';
import { expect, test } from './console';
import { DevUser, seriousViolations, signIn } from './helpers';

// What the server renders is what the hydrated page shows: for each user and each page, the same
// navigation links, the same parts of the page and the same headings, with scripts blocked and
// with scripts running. No link appears or disappears after hydration. The same pass runs axe-core
// on every hydrated page (and the 404 page): no serious or critical accessibility violation, for
// each development user and signed out; one visit of each page serves both checks.
const PAGES = ['/', '/profile', '/notes', '/editor', '/admin', '/staff', '/sessions', '/security', '/orders', '/admin/users'];
/** Checked by axe only: a page outside the router. */
const AXE_ONLY = ['/no-such-page'];

async function snapshot(page: Page) {
  return page.evaluate(() => ({
    nav: [...document.querySelectorAll('nav[aria-label="Main"] a')].map((a) => a.textContent?.trim()),
    who: document.querySelector('[data-testid="signed-in-as"]')?.textContent ?? null,
    signInLink: !!document.querySelector('header a[href^="/auth/login"]'),
    parts: [...document.querySelectorAll('main [data-testid]')].map((e) => e.getAttribute('data-testid')),
    headings: [...document.querySelectorAll('main h1, main h2')].map((h) => h.textContent?.trim()),
  }));
}

async function compare(browser: Browser, user: DevUser | null, pages: string[], found: string[]) {
  const who = user ?? 'signed out';
  const live = await browser.newContext();
  const page = await live.newPage();
  if (user) await signIn(page, user);
  else await page.goto('/');
  const blocked = await browser.newContext({ javaScriptEnabled: false, storageState: await live.storageState() });
  const still = await blocked.newPage();
  for (const path of pages) {
    await still.goto(path);
    const rendered = await snapshot(still);
    await page.goto(path);
    await expect(page.locator('html[data-session-watch="ready"]')).toHaveCount(1);
    await page.waitForLoadState('networkidle');
    const hydrated = await snapshot(page);
    expect(hydrated, `${who} on ${path}`).toEqual(rendered);
    expect(rendered.nav.length, `${path} has a navigation`).toBeGreaterThan(0);
    found.push(...(await seriousViolations(page, `${who} ${path}`)));
  }
  for (const path of AXE_ONLY) {
    await page.goto(path);
    await expect(page.locator('html[data-session-watch="ready"]')).toHaveCount(1);
    await page.waitForLoadState('networkidle');
    found.push(...(await seriousViolations(page, `${who} ${path}`)));
  }
  await live.close();
  await blocked.close();
}

test('@single the server-rendered page is what the hydrated page shows, with no serious accessibility violation, for every user', async ({ browser }) => {
  // 1.4 min on an idle machine; beside the two other browser suites of the test command, 1.9 min
  // in one CI run and over 4 min in another (axe-core's runs waiting for the CPU, every page
  // hydrated and checked): the budget is for that.
  test.setTimeout(480_000);
  const found: string[] = [];
  // Two users at a time, each in browser contexts of their own (the test's longest part is
  // Chromium's and axe-core's work, which two cores share): 1.7 -> 1.4 min on an idle machine.
  const lanes: (DevUser | null)[][] = [[null, 'alice', 'erin'], ['paul', 'nora']];
  await Promise.all(lanes.map(async (lane) => {
    for (const user of lane) await compare(browser, user, user ? PAGES : ['/'], found);
  }));
  expect(found, 'serious or critical axe-core violations').toEqual([]);
});
