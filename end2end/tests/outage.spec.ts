import { ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, openSync, rmSync } from 'node:fs';
import { createServer, connect, Server, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { allowConsole, expect, test } from './console';
import { hydrated, keycloakSignIn } from './helpers';
import { createUser, deleteUser } from './keycloak-admin';

// Keycloak out of the app's reach while a page is open (catalogue D05: an outage of the identity
// provider is an error, never a sign-out): the page says so, keeps the user signed in, and the
// notice goes once Keycloak answers again, without a reload. The app here is a process of its
// own on http://localhost:3006 (the realm demo-short registers it), started by this test with
// `keycloak.internal_url` on a TCP relay to Keycloak that the test cuts and restores: the
// browser still reaches Keycloak's pages, the app's calls (token, refresh, keys) do not. It runs
// in the process of the `brief` project, beside the main suite (scripts/test.sh), with a user of
// its own. scripts/test.sh names the app's binary and site (KC_APP_BIN, KC_SITE_ROOT).

const PORT = 3006;
const ORIGIN = `http://localhost:${PORT}`;
const REALM = 'demo-short';
/** Access tokens of demo-short live 10 s; the app refreshes them 3 s before they expire. */
const TOKEN_SECONDS = 10;

/** A TCP relay to Keycloak that can be cut (open connections dropped, new ones refused) and
 * restored on the same port. */
class Relay {
  private server: Server | null = null;
  private sockets = new Set<Socket>();
  port = 0;

  async open() {
    const server = createServer((inbound) => {
      const outbound = connect(8080, '127.0.0.1');
      for (const s of [inbound, outbound]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => s.destroy());
      }
      inbound.pipe(outbound).pipe(inbound);
    });
    await new Promise<void>((done, fail) => {
      server.once('error', fail);
      server.listen(this.port, '127.0.0.1', () => done());
    });
    const address = server.address();
    if (address && typeof address === 'object') this.port = address.port;
    this.server = server;
  }

  async cut() {
    const server = this.server;
    this.server = null;
    for (const s of this.sockets) s.destroy();
    if (server) await new Promise<void>((done) => server.close(() => done()));
  }
}

/** The app on :3006 with `keycloak.internal_url` on `relay`, and its data folder; its log goes
 * beside the others. */
async function startApp(relay: Relay): Promise<{ child: ChildProcess; data: string }> {
  const bin = process.env.KC_APP_BIN;
  const site = process.env.KC_SITE_ROOT;
  if (!bin || !site) throw new Error('KC_APP_BIN and KC_SITE_ROOT name the app and its site (scripts/test.sh sets them)');
  const data = mkdtempSync(join(tmpdir(), 'kc-outage-'));
  const log = openSync(join(process.env.KC_LOG_DIR ?? data, 'outage-app.log'), 'a');
  // From the repository's root, where its Leptos.toml is (the tests run in end2end/).
  const child = spawn(bin, [], {
    cwd: join(process.cwd(), '..'),
    env: {
      ...process.env,
      LEPTOS_OUTPUT_NAME: 'kc-leptos', LEPTOS_SITE_ROOT: site, LEPTOS_SITE_PKG_DIR: 'pkg',
      LEPTOS_HASH_FILES: 'true', LEPTOS_SITE_ADDR: `127.0.0.1:${PORT}`, LEPTOS_ENV: 'PROD',
      APP_APP_DATA_DIR: data, APP_SESSION_SQLITE_FILE: join(data, 'sessions.sqlite3'),
      APP_AUTH_PUBLIC_URL: ORIGIN, APP_AUTH_METRICS_ADDR: 'off',
      APP_KEYCLOAK_ISSUER_URL: `http://localhost:8080/realms/${REALM}`,
      APP_KEYCLOAK_INTERNAL_URL: `http://127.0.0.1:${relay.port}`,
      APP_SESSION_REFRESH_MARGIN_SECS: '3',
    },
    stdio: ['ignore', log, log],
  });
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`the app on :${PORT} exited (${child.exitCode}); see outage-app.log`);
    const up = await fetch(`${ORIGIN}/health/live`).then((r) => r.ok, () => false);
    if (up) return { child, data };
    await new Promise((r) => setTimeout(r, 100));
  }
  await stopApp({ child, data });
  throw new Error(`the app on :${PORT} did not answer within 20 s; see outage-app.log`);
}

/** Stops the app (and waits until it has, so that its port is free) and removes its data. */
async function stopApp({ child, data }: { child: ChildProcess; data: string }) {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((done) => child.once('exit', done));
    child.kill('SIGTERM');
    // A graceful shutdown takes a moment; one that hangs is not this test's subject.
    const late = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(late);
  }
  rmSync(data, { recursive: true, force: true });
}

test('@single with Keycloak out of reach the page says so and keeps the user signed in, and the notice goes when it is back', async ({ page }) => {
  test.setTimeout(120_000);
  allowConsole(/status of 503/, 'the session checks answer 503 while Keycloak is out of reach, by design');
  const relay = new Relay();
  await relay.open();
  const app = await startApp(relay);
  let username: string | undefined;
  try {
    username = await createUser(REALM, 'outage');
    const refreshes: number[] = [];
    page.on('response', (r) => {
      if (r.url().startsWith(`${ORIGIN}/auth/refresh`)) refreshes.push(r.status());
    });
    await page.goto(`${ORIGIN}/profile`);
    await keycloakSignIn(page, username, `${username}-dev-pw`);
    await page.waitForURL((url) => url.origin === ORIGIN);
    await expect(page.getByTestId('signed-in-as')).toBeVisible();
    await expect(page.getByTestId('idp-unavailable')).toHaveCount(0);

    await hydrated(page);
    // How the session stands, without refreshing it (?idle=1 refreshes nothing).
    const status = async () => (await (await page.request.post(`${ORIGIN}/auth/refresh?idle=1`)).json());
    const { access_expires_at: expiresAt } = await status();

    await relay.cut();
    // Once the access token has expired, the user does something: the page refreshes, Keycloak
    // cannot be reached, the app answers 503 and the page says so, still signed in.
    await page.waitForTimeout(Math.max(0, expiresAt * 1000 - Date.now()) + 1_000);
    await page.keyboard.press('Shift');
    const notice = page.getByTestId('idp-unavailable');
    await expect(notice).toBeVisible({ timeout: 10_000 });
    await expect(notice).toContainText('cannot be reached');
    await expect(notice).toContainText('You stay signed in');
    expect(refreshes).toContain(503);
    await expect(page.getByTestId('signed-in-as')).toBeVisible();
    await expect(page.getByTestId('session-ended')).toHaveCount(0);
    // It stays while Keycloak stays out of reach: the page tries again (every 5 s), and its
    // retries answer 503 too.
    const first = refreshes.indexOf(503);
    await expect.poll(() => refreshes.length, { timeout: 15_000 }).toBeGreaterThan(first + 1);
    await expect(notice).toBeVisible();
    expect(refreshes.slice(first).every((s) => s === 503), JSON.stringify(refreshes)).toBe(true);

    await relay.open();
    // The page asks again by itself; the refresh goes through and the notice goes.
    await expect(notice).toHaveCount(0, { timeout: (3 * TOKEN_SECONDS + 10) * 1000 });
    expect(refreshes.at(-1)).toBe(200);
    // Because the tokens were refreshed: the access token's end moved.
    expect((await status()).access_expires_at).toBeGreaterThan(expiresAt);
    await expect(page.getByTestId('signed-in-as')).toBeVisible();
    await expect(page.getByTestId('session-ended')).toHaveCount(0);
  } finally {
    await stopApp(app);
    await relay.cut();
    if (username) await deleteUser(REALM, username);
  }
});
