import { expect, Page, test as base, TestInfo } from '@playwright/test';
import { KEYCLOAK } from './helpers';

// Every browser test of the demo and of examples/minimal fails on a console error or warning
// that the app's pages logged (Keycloak's own pages are Keycloak's business): a newcomer who sees
// one hunts a bug in their own code. A test that causes one on purpose (Keycloak stopped, an
// injected script, a request refused by design) names it with `allowConsole`, and only those
// pass. Pages of the contexts a test opens with `browser.newContext` are watched too.

/** Lets console messages matching `pattern` through in this test, saying why. */
export function allowConsole(pattern: RegExp, why: string) {
  test.info().annotations.push({ type: 'console-allowed', description: `${pattern.source}\u0000${why}` });
}

function allowed(info: TestInfo): RegExp[] {
  return info.annotations
    .filter((a) => a.type === 'console-allowed' && a.description)
    .map((a) => new RegExp((a.description ?? '').split('\u0000')[0]));
}

/** What every test lets through, and why. */
function expected(text: string, where: string, page: string) {
  // The status of a page itself (the 403 and 404 pages answer with their status, by design):
  // Chromium logs it as a failed resource.
  if (text.startsWith('Failed to load resource') && where === page) return true;
  // Chromium's timing hint about the preloaded WebAssembly: a debug build's module takes longer
  // than "a few seconds" to compile on two cores. Not a fault of the page.
  if (/\.wasm was preloaded using link preload but not used within a few seconds/.test(text)) return true;
  return false;
}

/** Collects the errors and warnings `page` logs from the app's origins into `into`. */
export function watchConsole(page: Page, into: string[]) {
  page.on('console', (m) => {
    if (m.type() !== 'error' && m.type() !== 'warning') return;
    const where = m.location().url;
    if (where.startsWith(KEYCLOAK)) return;
    if (expected(m.text(), where, page.url())) return;
    into.push(`${m.type()} on ${page.url()}: ${m.text()} (${where})`);
  });
  page.on('pageerror', (e) => {
    if (!page.url().startsWith(KEYCLOAK)) into.push(`uncaught on ${page.url()}: ${e.message}`);
  });
}

/** Fails the test when its pages logged what it did not allow. */
export function expectCleanConsole(seen: string[], info: TestInfo = test.info()) {
  const ok = allowed(info);
  expect(seen.filter((s) => !ok.some((r) => r.test(s))), 'console errors and warnings').toEqual([]);
}

export const test = base.extend<{ cleanConsole: void }>({
  cleanConsole: [
    async ({ page, browser }, use, info) => {
      const seen: string[] = [];
      watchConsole(page, seen);
      page.context().on('page', (p) => watchConsole(p, seen));
      // The pages of the contexts a test opens itself (a second browser, a second user) too.
      const newContext = browser.newContext.bind(browser);
      browser.newContext = async (options) => {
        const context = await newContext(options);
        context.on('page', (p) => watchConsole(p, seen));
        return context;
      };
      try {
        await use();
      } finally {
        browser.newContext = newContext;
      }
      expectCleanConsole(seen, info);
    },
    { auto: true },
  ],
});

export { expect };
