// The measurements of scripts/bench.sh (which builds, sets up and starts Keycloak first).
// Starts the app and oauth2-proxy itself, signs users in through Keycloak's real login form, runs
// wrk, a refresh storm, Chromium, and writes the report (Markdown) and its chart (PNG).
//
// Environment: BENCH_APP_BIN (the server binary), BENCH_SITE_ROOT, BENCH_OUT (the report's path;
// the chart goes next to it), BENCH_SMOKE=1 (seconds-long run with tiny counts, to keep the
// script working), BENCH_OAUTH2_PROXY (its binary), BENCH_CRITERION (the criterion output),
// BENCH_VERSIONS (text), BENCH_ORDERS_API (examples/orders-api's binary: the remote API route's
// upstream; its bare-hop binary, the reference hop on the same stack, is beside it), BENCH_ONLY
// (`streams` or `remote`: those rows alone, printed, for working on them).
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir, cpus, totalmem } from 'node:os';
import { join, dirname, basename } from 'node:path';
import { gzipSync, brotliCompressSync, constants as zlibConstants } from 'node:zlib';
import { chromium } from '@playwright/test';
import { KEYCLOAK, Jar, get, keycloakLogin, adminToken, admin, eachEvent } from './client.mjs';

const SMOKE = process.env.BENCH_SMOKE === '1';
const APP_BIN = must('BENCH_APP_BIN');
const SITE_ROOT = must('BENCH_SITE_ROOT');
const OUT = must('BENCH_OUT');
const PROXY_BIN = must('BENCH_OAUTH2_PROXY');
const ORDERS_BIN = must('BENCH_ORDERS_API');
/** examples/orders-api's bin/bare-hop.rs: a hop on axum and hyper's client with nothing else. */
const BARE_HOP_BIN = join(dirname(ORDERS_BIN), 'bare-hop');
const BARE_HOP = 'http://127.0.0.1:4193';
/** examples/orders-api, where Leptos.toml's remote API route /remote/orders forwards. */
const ORDERS = 'http://127.0.0.1:4001';
const APP = 'http://localhost:3000';
/** The app's operators' address (auth.metrics_addr), where /metrics is served. */
const METRICS_ADDR = '127.0.0.1:9399';
const METRICS = `http://${METRICS_ADDR}`;
const PROXY = 'http://localhost:4180';
const SECRET = process.env.APP_KEYCLOAK_CLIENT_SECRET ?? 'demo-app-dev-secret';
const WRK_SECONDS = SMOKE ? 1 : 10;
const WRK_CONNECTIONS = SMOKE ? 8 : 64;
const STORM_SESSIONS = SMOKE ? 2 : 20;
const STORM_REQUESTS = SMOKE ? 10 : 200;
const LIVE_SESSIONS = SMOKE ? 100 : 10_000;
const STREAMS = Number(process.env.BENCH_STREAMS ?? (SMOKE ? 100 : 10_000));
const IDLE_SECONDS = SMOKE ? 3 : 60;
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
// The repository: the app reads its Leptos.toml there.
const ROOT = new URL('../..', import.meta.url).pathname;

function must(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (run scripts/bench.sh)`);
  return v;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => console.log('bench:', ...a);

// ---------------------------------------------------------------- processes

const children = [];
process.on('exit', () => { for (const c of children) try { c.kill('SIGKILL'); } catch { /* gone */ } });

async function waitFor(url, child, what) {
  for (let i = 0; i < 300; i++) {
    if (child.exitCode !== null) throw new Error(`${what} exited (${child.exitCode})`);
    try { const r = await fetch(url); if (r.status < 500) return; } catch { /* not yet */ }
    await sleep(100);
  }
  throw new Error(`${what} did not answer at ${url}`);
}

async function stop(child) {
  if (child.exitCode !== null) return;
  child.kill('SIGTERM');
  for (let i = 0; i < 100 && child.exitCode === null; i++) await sleep(100);
  if (child.exitCode === null) child.kill('SIGKILL');
}

/** The app on :3000 against `realm`, sessions in a fresh SQLite file. */
async function startApp(realm, extraEnv = {}) {
  const data = mkdtempSync(join(tmpdir(), 'kc-bench-'));
  const child = spawn(APP_BIN, [], {
    env: {
      ...process.env,
      LEPTOS_OUTPUT_NAME: 'kc-leptos', LEPTOS_SITE_ROOT: SITE_ROOT, LEPTOS_SITE_PKG_DIR: 'pkg',
      LEPTOS_HASH_FILES: 'true', LEPTOS_SITE_ADDR: '127.0.0.1:3000', LEPTOS_ENV: 'PROD',
      APP_AUTH_METRICS_ADDR: METRICS_ADDR,
      APP_APP_DATA_DIR: data, APP_SESSION_SQLITE_FILE: join(data, 'sessions.sqlite3'),
      APP_KEYCLOAK_ISSUER_URL: `${KEYCLOAK}/realms/${realm}`, APP_KEYCLOAK_CLIENT_SECRET: SECRET,
      APP_KEYCLOAK_DIRECTORY_CLIENT_SECRET: process.env.APP_KEYCLOAK_DIRECTORY_CLIENT_SECRET ?? 'user-directory-dev-secret',
      RUST_LOG: 'warn', ...extraEnv,
    },
    cwd: ROOT,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  children.push(child);
  await waitFor(`${APP}/health/live`, child, 'the app');
  return { child, db: join(data, 'sessions.sqlite3') };
}

// ---------------------------------------------------------------- signing in, as a browser does

/** Signs `user` in to the app; the session cookie (`name=value`). */
async function appSignIn(user) {
  const jar = new Jar();
  const start = await get(`${APP}/auth/login?return_to=%2F`, jar);
  const back = await keycloakLogin(start.headers.get('location'), user);
  const done = await get(back, jar);
  if (done.status !== 303) throw new Error(`callback: ${done.status}`);
  const session = [...jar.cookies].find(([k]) => k === 'kc_leptos_session');
  if (!session) throw new Error('no session cookie');
  return `${session[0]}=${session[1]}`;
}

/** Signs `user` in through oauth2-proxy; its cookie header. */
async function proxySignIn(user) {
  const jar = new Jar();
  const start = await get(`${PROXY}/oauth2/start?rd=%2F`, jar);
  const back = await keycloakLogin(start.headers.get('location'), user);
  const done = await get(back, jar);
  if (done.status >= 400) throw new Error(`oauth2-proxy callback: ${done.status} ${await done.text()}`);
  return jar.header();
}

/** A client's own access token (client credentials) in the realm demo. */
async function clientToken(clientId, secret) {
  const r = await fetch(`${KEYCLOAK}/realms/demo/protocol/openid-connect/token`, {
    method: 'POST',
    body: new URLSearchParams({ grant_type: 'client_credentials', client_id: clientId, client_secret: secret }),
  });
  return (await r.json()).access_token;
}

async function serviceAccountToken() {
  const r = await fetch(`${KEYCLOAK}/realms/demo/protocol/openid-connect/token`, {
    method: 'POST',
    body: new URLSearchParams({ grant_type: 'client_credentials', client_id: 'notes-reader', client_secret: 'notes-reader-dev-secret' }),
  });
  return (await r.json()).access_token;
}

// ---------------------------------------------------------------- measuring

/** wrk against `url`: requests per second and latency percentiles (ms). */
function wrk(url, headers = {}, seconds = WRK_SECONDS) {
  const args = ['-t2', `-c${WRK_CONNECTIONS}`, `-d${seconds}s`, '--latency'];
  for (const [k, v] of Object.entries(headers)) args.push('-H', `${k}: ${v}`);
  args.push(url);
  const out = execFileSync('wrk', args, { encoding: 'utf8' });
  const rps = Number(out.match(/Requests\/sec:\s+([\d.]+)/)?.[1] ?? NaN);
  const ms = (label) => {
    const m = out.match(new RegExp(`\\s${label}\\s+([\\d.]+)(us|ms|s)`));
    if (!m) return NaN;
    return Number(m[1]) * { us: 0.001, ms: 1, s: 1000 }[m[2]];
  };
  const non2xx = Number(out.match(/Non-2xx or 3xx responses:\s+(\d+)/)?.[1] ?? 0);
  const errors = out.match(/Socket errors:.*/)?.[0] ?? '';
  return { rps, p50: ms('50%'), p99: ms('99%'), non2xx, errors };
}

/** wrk over each of `targets` in turn, `rounds` times; the mean rate, the median latencies. */
function interleaved(targets) {
  const rounds = SMOKE ? 1 : 3;
  const runs = Object.fromEntries(Object.keys(targets).map((k) => [k, []]));
  for (let i = 0; i < rounds; i++) {
    for (const [k, [url, headers]] of Object.entries(targets)) {
      runs[k].push(wrk(url, headers, Math.max(1, Math.round(WRK_SECONDS / 2))));
    }
  }
  const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
  return Object.fromEntries(Object.entries(runs).map(([k, ms]) => [k, {
    rps: mean(ms.map((m) => m.rps)), p50: percentile(ms.map((m) => m.p50), 50),
    p99: percentile(ms.map((m) => m.p99), 50), non2xx: ms.reduce((a, m) => a + m.non2xx, 0),
  }]));
}

async function expectOk(url, headers, what) {
  const r = await fetch(url, { headers, redirect: 'manual' });
  const body = await r.text();
  if (r.status !== 200) throw new Error(`${what}: ${url} answered ${r.status}`);
  return body;
}

async function metric(name) {
  // Metrics are served on the operators' address only (auth.metrics_addr), never the app's port.
  const r = await fetch(`${METRICS}/metrics`);
  if (r.status !== 200) throw new Error(`metrics: ${METRICS}/metrics answered ${r.status}`);
  const text = await r.text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

function rssMb(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(status.match(/VmRSS:\s+(\d+)/)[1]) / 1024;
}

function sql(db, query) {
  return execFileSync('sqlite3', [db, query], { encoding: 'utf8' }).trim();
}

function percentile(values, p) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** A tower-sessions id: 16 random bytes, base64url without padding. */
function sessionId() {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString('base64url');
}

async function browserSignIn(page, base, user) {
  await page.goto(`${base}/`);
  await page.getByRole('link', { name: 'Sign in', exact: true }).click();
  await page.waitForURL((url) => url.origin === KEYCLOAK);
  await page.locator('#username').fill(user);
  await page.locator('#password').fill(`${user}-dev-pw`);
  await page.locator('#kc-login').click();
  await page.waitForURL((url) => url.origin !== KEYCLOAK);
  await page.getByTestId('signed-in-as').waitFor();
}

const ready = () => document.documentElement.dataset.sessionWatch === 'ready';

// ---------------------------------------------------------------- the run

const rows = []; // { group, what, value, unit, ratio?, goal?, met? }
const add = (row) => { rows.push(row); log(row.what, row.value, row.unit, row.ratio ?? ''); };
const fmt = (n, digits = 0) => (Number.isFinite(n) ? n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }) : 'n/a');

async function throughput(app) {
  const alice = await appSignIn('alice');
  const cookie = { cookie: alice };
  // nora has no role of this app: her home page has the signed-out page's content (and her name).
  const nora = { cookie: await appSignIn('nora') };
  const token = await serviceAccountToken();
  const hashes = readFileSync(join(dirname(APP_BIN), 'hash.txt'), 'utf8');
  const css = `/pkg/kc-leptos.${hashes.match(/css:\s*(\S+)/)[1]}.css`;
  // Sanity: each URL answers what it should before it is measured.
  const signedOut = await expectOk(`${APP}/`, {}, 'signed out');
  const signedIn = await expectOk(`${APP}/`, cookie, 'signed in');
  const noraPage = await expectOk(`${APP}/`, nora, 'signed in without roles');
  if (!signedIn.includes('data-testid="signed-in-as"') || !noraPage.includes('data-testid="signed-in-as"')
    || signedOut.includes('data-testid="signed-in-as"')) {
    throw new Error('the signed-in and signed-out pages are not what they should be');
  }
  await expectOk(`${APP}/api/v1/me`, { authorization: `Bearer ${token}` }, 'bearer');
  await expectOk(`${APP}/api/v1/me`, cookie, 'session API');
  await expectOk(`${APP}${css}`, { 'accept-encoding': 'br' }, 'static');

  const measured = {
    static: wrk(`${APP}${css}`, { 'accept-encoding': 'br, gzip' }),
    open: wrk(`${APP}/health/live`),
    // The pages compared by ratio are measured in turns (three rounds of half the time each), so
    // that a slower moment of the machine does not fall on one of them only.
    ...interleaved({ out: [`${APP}/`, {}], inPlain: [`${APP}/`, nora], in: [`${APP}/`, cookie] }),
    profile: wrk(`${APP}/profile`, cookie),
    notes: wrk(`${APP}/notes`, cookie),
    meSession: wrk(`${APP}/api/v1/me`, cookie),
    meBearer: wrk(`${APP}/api/v1/me`, { authorization: `Bearer ${token}` }),
  };

  // oauth2-proxy in front of the app's signed-out page: its cookie session, the same realm.
  const proxy = await startProxy('http://127.0.0.1:3000/');
  const proxyCookie = await proxySignIn('alice');
  await expectOk(`${PROXY}/`, { cookie: proxyCookie }, 'oauth2-proxy signed in');
  await expectOk(`${PROXY}/health/live`, { cookie: proxyCookie }, 'oauth2-proxy in front of /health/live');
  // The auth layer alone, both sides: our /api/v1/me with a session cookie against oauth2-proxy's
  // cookie session in front of the app's unprotected /health/live (the same tiny answer), in turns.
  Object.assign(measured, interleaved({
    meLayer: [`${APP}/api/v1/me`, cookie],
    proxyLayer: [`${PROXY}/health/live`, { cookie: proxyCookie }],
  }));
  measured.proxy = wrk(`${PROXY}/`, { cookie: proxyCookie });
  await stop(proxy);

  const g = 'Throughput (wrk -t2 -c' + WRK_CONNECTIONS + ', ' + WRK_SECONDS + ' s each; the three / rows in 3 alternating rounds; req/s)';
  const r = (m) => ({ value: m.rps, p50: m.p50, p99: m.p99, non2xx: m.non2xx });
  add({ group: g, what: 'static file (hashed CSS, brotli)', ...r(measured.static), unit: 'req/s', chart: true,
    ratio: measured.static.rps / measured.in.rps, ratioOf: '/ signed in', goal: '> 1 (beats the SSR rows)', met: measured.static.rps > Math.max(measured.in.rps, measured.out.rps) });
  add({ group: g, what: 'unprotected JSON (/health/live)', ...r(measured.open), unit: 'req/s', chart: true });
  add({ group: g, what: '/ signed out', ...r(measured.out), unit: 'req/s', chart: true });
  add({ group: g, what: '/ signed in without roles (nora: same cards and links as signed out)', ...r(measured.inPlain), unit: 'req/s', chart: true,
    ratio: measured.inPlain.rps / measured.out.rps, ratioOf: 'of signed out', goal: '≥ 0.95', met: measured.inPlain.rps / measured.out.rps >= 0.95 });
  add({ group: g, what: '/ signed in as alice (admin: 4 more links, 3 more cards)', ...r(measured.in), unit: 'req/s', chart: true,
    ratio: measured.in.rps / measured.out.rps, ratioOf: 'of signed out', goal: '≥ 0.95', met: measured.in.rps / measured.out.rps >= 0.95 });
  add({ group: g, what: '/profile signed in', ...r(measured.profile), unit: 'req/s', chart: true });
  add({ group: g, what: '/notes signed in', ...r(measured.notes), unit: 'req/s', chart: true });
  add({ group: g, what: '/api/v1/me, session cookie', ...r(measured.meSession), unit: 'req/s', chart: true });
  add({ group: g, what: '/api/v1/me, bearer token', ...r(measured.meBearer), unit: 'req/s', chart: true,
    ratio: measured.meBearer.rps / measured.open.rps, ratioOf: 'of unprotected JSON', goal: '≥ 0.85', met: measured.meBearer.rps / measured.open.rps >= 0.85 });
  add({ group: g, what: 'oauth2-proxy 7.15.6 → the app\'s / (its cookie session)', ...r(measured.proxy), unit: 'req/s', chart: true });
  add({ group: g, what: 'ours: / signed in as alice, against oauth2-proxy signed in (its upstream: our signed-out /)', value: measured.in.rps / measured.proxy.rps, unit: '×',
    goal: '≥ 3', met: measured.in.rps / measured.proxy.rps >= 3 });
  const layer = 'The auth layer alone (wrk as above; the two rows in 3 alternating rounds; req/s)';
  add({ group: layer, what: 'ours: /api/v1/me with a session cookie (the session read, the user checked, a tiny JSON)', ...r(measured.meLayer), unit: 'req/s' });
  add({ group: layer, what: 'oauth2-proxy 7.15.6 with its cookie session → the app\'s unprotected /health/live (a tiny answer)', ...r(measured.proxyLayer), unit: 'req/s' });
  add({ group: layer, what: 'ours against oauth2-proxy, the auth layer alone', value: measured.meLayer.rps / measured.proxyLayer.rps, unit: '×',
    goal: '≥ 10', met: measured.meLayer.rps / measured.proxyLayer.rps >= 10 });
  for (const m of Object.values(measured)) {
    if (m.non2xx) throw new Error(`a measured URL answered errors: ${JSON.stringify(m)}`);
  }
  return { alice };
}

/** oauth2-proxy on :4180 against the realm demo, in front of `upstream`, with `extra` flags. */
async function startProxy(upstream, extra = []) {
  const proxy = spawn(PROXY_BIN, [
    '--provider=keycloak-oidc', `--oidc-issuer-url=${KEYCLOAK}/realms/demo`,
    '--client-id=oauth2-proxy', '--client-secret=oauth2-proxy-dev-secret',
    `--redirect-url=${PROXY}/oauth2/callback`, '--http-address=127.0.0.1:4180',
    `--upstream=${upstream}`, '--email-domain=*', '--cookie-secure=false',
    `--cookie-secret=${Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString('hex')}`,
    '--code-challenge-method=S256', '--skip-provider-button=true',
    '--request-logging=false', '--auth-logging=false', '--standard-logging=false', ...extra,
  ], { stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(proxy);
  await waitFor(`${PROXY}/ping`, proxy, 'oauth2-proxy');
  return proxy;
}

// (Not 4190: fetch refuses the ports of other protocols, ManageSieve's among them.)
const NGINX = 'http://127.0.0.1:4192';
const NGINX_VERSION = (() => {
  const r = spawnSync('nginx', ['-v'], { encoding: 'utf8' });
  return (r.stderr ?? '').trim().split('/')[1] ?? '?';
})();

/** nginx on :4192 in front of `upstream` (its own prefix in a temporary folder; no root needed). */
async function startNginx(upstream) {
  const dir = mkdtempSync(join(tmpdir(), 'bench-nginx-'));
  const port = new URL(NGINX).port;
  writeFileSync(join(dir, 'nginx.conf'), `daemon off;
worker_processes auto;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream up {
    server ${new URL(upstream).host};
    keepalive 64;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`);
  const nginx = spawn('nginx', ['-c', join(dir, 'nginx.conf'), '-p', dir], { stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(nginx);
  nginx.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  await waitFor(`${NGINX}/health`, nginx, 'nginx');
  return nginx;
}

/**
 * A remote API route against its upstream: the same GET of examples/orders-api straight (with a
 * token it accepts: the app's own, client credentials), through the app's /remote/orders (alice's
 * session cookie; the token exchanged once and cached), and through oauth2-proxy (its cookie
 * session; the user's access token passed as X-Forwarded-Access-Token). Each checks the token's
 * signature, issuer and audience at the upstream.
 */
async function remoteApi() {
  const orders = spawn(ORDERS_BIN, [], {
    env: { ...process.env, ORDERS_API_ADDR: '127.0.0.1:4001', ORDERS_API_ISSUERS: `${KEYCLOAK}/realms/demo`, ORDERS_API_TRUST_FORWARDED_TOKEN: '1' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  children.push(orders);
  await waitFor(`${ORDERS}/health`, orders, 'orders-api');
  const direct = { authorization: `Bearer ${await clientToken('demo-app', SECRET)}` };
  const viaApp = { cookie: await appSignIn('alice'), 'sec-fetch-site': 'same-origin' };
  const proxy = await startProxy(`${ORDERS}/`, ['--pass-access-token=true']);
  const viaProxy = { cookie: await proxySignIn('alice') };
  const nginx = await startNginx(ORDERS);
  const bareHop = spawn(BARE_HOP_BIN, [], {
    env: { ...process.env, BARE_HOP_ADDR: new URL(BARE_HOP).host, BARE_HOP_UPSTREAM: ORDERS },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  children.push(bareHop);
  await waitFor(`${BARE_HOP}/health`, bareHop, 'bare-hop');
  for (const [url, headers, what] of [[`${ORDERS}/orders`, direct, 'orders-api straight'],
    [`${APP}/remote/orders`, viaApp, 'the remote API route'], [`${PROXY}/orders`, viaProxy, 'oauth2-proxy → orders-api'],
    [`${NGINX}/orders`, direct, 'nginx → orders-api'], [`${BARE_HOP}/orders`, direct, 'bare-hop → orders-api']]) {
    const body = JSON.parse(await expectOk(url, headers, what));
    if (!Array.isArray(body.orders)) throw new Error(`${what}: not the orders`);
  }
  const m = interleaved({
    direct: [`${ORDERS}/orders`, direct],
    viaApp: [`${APP}/remote/orders`, viaApp],
    viaProxy: [`${PROXY}/orders`, viaProxy],
    viaNginx: [`${NGINX}/orders`, direct],
    viaBareHop: [`${BARE_HOP}/orders`, direct],
  });
  await stop(bareHop);
  await stop(nginx);
  await stop(proxy);
  await stop(orders);
  const g = 'A remote API route: GET /orders of examples/orders-api (wrk as above; the rows in 3 alternating rounds; req/s)';
  const r = (x) => ({ value: x.rps, p50: x.p50, p99: x.p99, non2xx: x.non2xx });
  add({ group: g, what: 'straight to orders-api (a bearer token it accepts)', ...r(m.direct), unit: 'req/s' });
  add({ group: g, what: 'through the app\'s /remote/orders (session cookie; the token exchanged for orders-api, cached)', ...r(m.viaApp), unit: 'req/s',
    ratio: m.viaApp.rps / m.direct.rps, ratioOf: 'of straight', goal: '≥ 0.8', met: m.viaApp.rps / m.direct.rps >= 0.8 });
  add({ group: g, what: 'through oauth2-proxy 7.15.6 (its cookie session, --pass-access-token)', ...r(m.viaProxy), unit: 'req/s' });
  add({ group: g, what: 'ours against oauth2-proxy in front of the same upstream', value: m.viaApp.rps / m.viaProxy.rps, unit: '×',
    goal: '> 1', met: m.viaApp.rps > m.viaProxy.rps });
  // What a proxy hop alone costs on this machine: nginx passing the same bearer request on (no
  // session, no token work), its workers and kept-alive upstream connections tuned for speed.
  add({ group: g, what: `reference: nginx ${NGINX_VERSION} proxy_pass, no authentication (wrk's bearer token passed on)`, ...r(m.viaNginx), unit: 'req/s',
    ratio: m.viaNginx.rps / m.direct.rps, ratioOf: 'of straight' });
  add({ group: g, what: 'ours against that nginx hop', value: m.viaApp.rps / m.viaNginx.rps, unit: '×' });
  // The same hop on the stack of the remote API routes (axum in front, hyper's pooled client
  // behind), nothing else: the difference from ours is the library's own work per call.
  add({ group: g, what: 'reference: bare-hop (examples/orders-api; axum and hyper\'s pooled client, the same stack as the route, nothing else; wrk\'s bearer token passed on)', ...r(m.viaBareHop), unit: 'req/s',
    ratio: m.viaBareHop.rps / m.direct.rps, ratioOf: 'of straight' });
  add({ group: g, what: 'ours against that bare hop', value: m.viaApp.rps / m.viaBareHop.rps, unit: '×' });
  for (const x of Object.values(m)) {
    if (x.non2xx) throw new Error(`a measured URL answered errors: ${JSON.stringify(x)}`);
  }
}

/**
 * `count` copies of the one signed-in session in the app's SQLite file, straight into the file;
 * their cookie values. The record holds its own id (MessagePack: 16 bytes, big-endian; the cookie
 * shows them little-endian in base64url): each copy gets its new id there too.
 */
function seedSessions(app, count, subject = null) {
  const [original, data, expiry] = sql(app.db, 'SELECT id, hex(data), quote(expiry_date) FROM tower_sessions LIMIT 1').split('|');
  const inRecord = (id) => `C410${Buffer.from(id, 'base64url').reverse().toString('hex').toUpperCase()}`;
  if (!data.includes(inRecord(original))) throw new Error('the session record does not hold its id as expected');
  // With `subject` (the signed-in user's Keycloak id, a UUID), each copy gets a user of its own:
  // another UUID of the same length in its place (the record's MessagePack stays valid).
  const hex = (text) => Buffer.from(text).toString('hex').toUpperCase();
  if (subject && !data.includes(hex(subject))) throw new Error('the session record does not hold its subject as expected');
  const ids = Array.from({ length: count }, sessionId);
  const copy = (id) => {
    const record = data.replace(inRecord(original), inRecord(id));
    return subject ? record.replaceAll(hex(subject), hex(crypto.randomUUID())) : record;
  };
  const inserts = ids.map((id) => `INSERT INTO tower_sessions (id, data, expiry_date) VALUES ('${id}', x'${copy(id)}', ${expiry});`);
  execFileSync('sqlite3', [app.db], { input: `BEGIN;\n${inserts.join('\n')}\nCOMMIT;\n` });
  return ids;
}

/**
 * An event stream (`/auth/events`) held open, as a tab's EventSource does: resolves `first` with
 * the first status, and `ended` when a status says signed out (with the time it came).
 */
function holdStream(cookie) {
  const controller = new AbortController();
  let first;
  let ended;
  const firstP = new Promise((r) => { first = r; });
  const endedP = new Promise((r) => { ended = r; });
  const done = (async () => {
    const r = await fetch(`${APP}/auth/events`, { headers: { cookie, accept: 'text/event-stream' }, signal: controller.signal });
    if (r.status !== 200) throw new Error(`event stream: ${r.status} ${await r.text()}`);
    await eachEvent(r, (status) => {
      first(status);
      if (status.signed_in === false) ended(performance.now());
    });
  })().catch((e) => { if (!controller.signal.aborted) first({ error: e.message }); });
  return { first: firstP, ended: endedP, close: () => controller.abort(), done };
}

/**
 * Many open tabs on one process: STREAMS event streams held by this client, the app's RSS with
 * them all open, and a back-channel logout of one of those sessions (paul's, a real sign-in)
 * reaching its stream while the others stay open. The other sessions are copies of alice's, each
 * with a user of its own (the default limits apply: 16 streams per user, 20,000 per process).
 */
/** An admin token of Keycloak, and the id of `username` in realm demo. */
async function keycloakUser(username) {
  const token = await adminToken();
  const [user] = await admin(token, 'demo', 'GET', `/users?username=${username}&exact=true`);
  return { token, id: user.id };
}

/** Ends every Keycloak session of `username` (realm demo); how many there were. */
async function endKeycloakSessions(username) {
  const { token, id } = await keycloakUser(username);
  const sessions = await admin(token, 'demo', 'GET', `/users/${id}/sessions`);
  if (sessions.length) await admin(token, 'demo', 'POST', `/users/${id}/logout`);
  return sessions.length;
}

async function manyStreams() {
  const g = `Open tabs (a fresh process, SQLite: ${fmt(STREAMS)} event streams of as many users, held open by one client)`;
  const app = await startApp('demo');
  const alice = await appSignIn('alice');
  const me = await (await fetch(`${APP}/api/v1/me`, { headers: { cookie: alice } })).json();
  const ids = seedSessions(app, STREAMS - 1, me.subject);
  const before = rssMb(app.child.pid);
  const streams = [];
  const opening = performance.now();
  let next = 0;
  await Promise.all(Array.from({ length: 64 }, async () => {
    while (next < ids.length) {
      const stream = holdStream(`kc_leptos_session=${ids[next++]}`);
      streams.push(stream);
      const first = await stream.first;
      if (!first.signed_in) throw new Error(`a stream did not open signed in: ${JSON.stringify(first)}`);
    }
  }));
  // paul's earlier Keycloak sessions (the test command signs him in many times before its smoke
  // run) end first: Keycloak 26.5's admin "sign out" of a user with several sessions ends them
  // all but sends the app one back-channel logout, for one of them (seen with 3, 5, 20 and 100),
  // so the measured session was often not the one told: the NaN the smoke run used to print.
  const earlier = await endKeycloakSessions('paul');
  if (earlier) log(`ended ${earlier} earlier Keycloak sessions of paul before measuring`);
  const paul = holdStream(await appSignIn('paul'));
  streams.push(paul);
  if (!(await paul.first).signed_in) throw new Error("paul's stream did not open signed in");
  const openedIn = (performance.now() - opening) / 1000;
  const open = await metric('keycloak_bff_event_streams');
  await sleep(SMOKE ? 1000 : 10_000);
  const held = rssMb(app.child.pid);
  // Keycloak ends paul's sessions (its admin API) and tells the app by back-channel logout.
  const { token, id } = await keycloakUser('paul');
  const asked = performance.now();
  await admin(token, 'demo', 'POST', `/users/${id}/logout`);
  const reached = await Promise.race([paul.ended, sleep(10_000).then(() => NaN)]);
  const latency = (reached - asked) / 1000;
  await sleep(500);
  const stillOpen = await metric('keycloak_bff_event_streams');
  for (const s of streams) s.close();
  await stop(app.child);
  add({ group: g, what: `app RSS with one session, before the copies`, value: before, unit: 'MB', digits: 1 });
  add({ group: g, what: `streams open at once (the app's gauge), opened 64 at a time in ${fmt(openedIn, 1)} s`, value: open, unit: '' });
  add({ group: g, what: `app RSS with ${fmt(STREAMS)} streams open`, value: held, unit: 'MB', digits: 1, goal: '≤ 256', met: held <= 256 });
  add({ group: g, what: `a back-channel logout (Keycloak's admin "sign out" of paul) reaching his stream, among ${fmt(STREAMS)}`, value: latency, unit: 's', digits: 2, goal: '≤ 2', met: latency <= 2 });
  add({ group: g, what: 'streams still open after it (all but his)', value: stillOpen, unit: '', goal: `${fmt(STREAMS - 1)}`, met: stillOpen === STREAMS - 1 });
}

/** On a fresh process: what sessions cost, apart from what load peaks leave in the allocator. */
async function sessionsAndMemory(app) {
  const g = 'Memory (a fresh process: one real sign-in, then the copies)';
  await appSignIn('alice');
  const size = Number(sql(app.db, 'SELECT max(length(data)) FROM tower_sessions'));
  add({ group: g, what: 'bytes stored per signed-in session (SQLite row data)', value: size, unit: 'B', goal: '≤ 4,096', met: size <= 4096 });
  const before = rssMb(app.child.pid);
  const ids = seedSessions(app, LIVE_SESSIONS);
  let next = 0;
  let ok = 0;
  await Promise.all(Array.from({ length: 32 }, async () => {
    while (next < ids.length) {
      const id = ids[next++];
      const r = await fetch(`${APP}/api/v1/me`, { headers: { cookie: `kc_leptos_session=${id}` } });
      await r.arrayBuffer();
      if (r.status === 200) ok++;
    }
  }));
  if (ok !== ids.length) throw new Error(`only ${ok} of ${ids.length} seeded sessions answered`);
  const after = rssMb(app.child.pid);
  // The store's sweep (once a minute) also hands what glibc kept after the load peaks back.
  if (!SMOKE) await sleep(61_000);
  const steady = rssMb(app.child.pid);
  add({ group: g, what: `app RSS with one session, before ${fmt(LIVE_SESSIONS)} more`, value: before, unit: 'MB', digits: 1 });
  add({ group: g, what: `app RSS with ${fmt(LIVE_SESSIONS)} live sessions, right after each was used by 32 clients at once`, value: after, unit: 'MB', digits: 1 });
  add({ group: g, what: `app RSS with ${fmt(LIVE_SESSIONS)} live sessions, after the next sweep (a minute at most)`, value: steady, unit: 'MB', digits: 1, goal: '≤ 64', met: steady <= 64 });
}

/** Gzip -9 and brotli 11 sizes of a buffer (brotli is what browsers are sent). */
const gz = (b) => gzipSync(b, { level: 9 }).length;
const br = (b) => brotliCompressSync(b, { params: { [zlibConstants.BROTLI_PARAM_QUALITY]: 11 } }).length;
/** The sum of `size` over buffers (`gz`, `br`, or the raw length). */
const sum = (bufs, size) => bufs.reduce((n, b) => n + size(b), 0);

/** The data section of the WebAssembly module `wasm` (its constant data: texts, tables), empty
 * when it has none. The sections follow the 8-byte header, each an id byte and a LEB128 size. */
function dataSection(wasm) {
  const leb = (at) => {
    let value = 0;
    let shift = 0;
    for (;;) {
      if (at >= wasm.length) throw new Error('the WebAssembly module ends inside a section header');
      const byte = wasm[at++];
      value += (byte & 0x7f) * 2 ** shift;
      shift += 7;
      if (byte < 0x80) return [value, at];
    }
  };
  for (let at = 8; at < wasm.length;) {
    const id = wasm[at];
    const [size, body] = leb(at + 1);
    if (id === 11) return wasm.subarray(body, body + size);
    at = body + size;
  }
  return Buffer.alloc(0);
}

/** The first visit of `/` sent this many bytes of WebAssembly and JS (brotli, as served) before
 * the pages were split into chunks: the release build's `wasm + JS, brotli 11` of the run of
 * 2026-11-30 (docs/performance.md at commit f73f138), the whole app in one module. */
const UNSPLIT_WASM_JS_BROTLI = 331_157;

/** The wasm and JS of the site `name` built into `pkg` (and its chunk loader when `split`), or null
 * when it has not been built. */
function builtSite(pkg, name, { split = false } = {}) {
  let files;
  try { files = readdirSync(pkg); } catch { return null; }
  const names = [files.find((f) => f.startsWith(`${name}.`) && f.endsWith('.wasm')),
    files.find((f) => f.startsWith(`${name}.`) && f.endsWith('.js')),
    ...(split ? [files.find((f) => f.startsWith('__wasm_split.') && f.endsWith('.js'))] : [])];
  return names.every(Boolean) ? names.map((f) => readFileSync(join(pkg, f))) : null;
}

/** The site's WebAssembly: the main chunk (what every first visit loads), and each page's chunk
 * with the shared chunks it needs besides (cargo leptos build --split; wasm-split's manifest). */
async function bundle() {
  const g = 'Hydrate bundle (release, wasm-opt; split: a chunk per page but the home page)';
  const pkg = join(SITE_ROOT, 'pkg');
  const files = readdirSync(pkg);
  const file = (pred, what) => {
    const name = files.find(pred);
    if (!name) throw new Error(`no ${what} in ${pkg}`);
    return readFileSync(join(pkg, name));
  };
  const main = [
    file((f) => f.startsWith('kc-leptos.') && f.endsWith('.wasm'), 'main wasm'),
    file((f) => f.startsWith('kc-leptos.') && f.endsWith('.js'), 'main JS'),
    file((f) => f.startsWith('__wasm_split.') && f.endsWith('.js'), 'chunk loader'),
  ];
  const mainGz = sum(main, gz);
  add({ group: g, what: 'main chunk: wasm + JS + the chunk loader, raw', value: sum(main, (b) => b.length), unit: 'B' });
  add({ group: g, what: 'main chunk, gzip -9', value: mainGz, unit: 'B', goal: '≤ 204,800', met: mainGz <= 200 * 1024 });
  add({ group: g, what: 'main chunk, brotli 11 (what browsers are sent)', value: sum(main, br), unit: 'B' });
  // The pages' texts belong in their chunks: an optimised link that merges the constant data
  // left all of it here (build.rs, cargo-leptos issue 679).
  const data = dataSection(main[0]);
  add({ group: g, what: `main chunk's constant data (the wasm's data section; ${fmt(data.length)} B raw), gzip -9`, value: gz(data), unit: 'B' });
  // The floor: a bare split Leptos app with only what the main chunk cannot do without (the
  // template with its `floor` feature; scripts/bench.sh builds it in release).
  // (The smoke run does not build it.)
  const bytes = builtSite(join(ROOT, 'examples', 'template', 'target', 'floor-pkg'), 'template', { split: true });
  if (bytes) {
    add({ group: g, what: 'the floor: examples/template with the server\'s answer in the hydration data, read from a signal (no server function, no Transition), one lazy route and hydrate_lazy (no keycloak-bff), main chunk, gzip -9',
      value: sum(bytes, gz), unit: 'B', ratio: sum(bytes, gz) / (200 * 1024), ratioOf: 'of the 200 KB goal' });
    add({ group: g, what: 'the floor, brotli 11', value: sum(bytes, br), unit: 'B', ratio: sum(bytes, br) / UNSPLIT_WASM_JS_BROTLI, ratioOf: "of the unsplit app's first visit" });
  } else {
    log('examples/template has no floor build: the floor is not measured');
  }
  const manifest = JSON.parse(file((f) => f.startsWith('__wasm_split_manifest.') && f.endsWith('.json'), 'split manifest').toString('utf8'));
  const wasmOf = (name) => readFileSync(join(pkg, `${name}.wasm`));
  for (const [split, needs] of Object.entries(manifest).sort()) {
    // A page (`__<page>_route_view_<hash>`) or a function of its own (`#[lazy] fn <name>`).
    const page = /^__(.+)_route_view_/.exec(split)?.[1];
    const route = page ? `page chunk ${page}` : `#[lazy] ${split.replace(/_\d+$/, '')}`;
    const own = needs.filter((n) => n.startsWith('split_')).map(wasmOf);
    const shared = needs.filter((n) => !n.startsWith('split_')).map(wasmOf);
    const ownGz = sum(own, gz);
    add({ group: g, what: `${route}, gzip -9 (with the ${shared.length} shared chunks it loads: ${fmt(ownGz + sum(shared, gz))} B)`,
      value: ownGz, unit: 'B', goal: '≤ 61,440', met: ownGz <= 60 * 1024 });
  }
  const everything = files.filter((f) => f.endsWith('.wasm')).map((f) => readFileSync(join(pkg, f)));
  add({ group: g, what: `every chunk together (${everything.length} files), gzip -9`, value: sum(everything, gz), unit: 'B' });
}

/** What keycloak-bff costs a browser: examples/minimal against examples/template (the same app,
 * start-axum with the same pages, without the library), both release builds. */
async function footprint() {
  const g = "The library's footprint in the browser (release, wasm-opt)";
  const site = (example) => builtSite(join(ROOT, 'examples', example, 'target', 'site', 'pkg'), example);
  const [minimal, template] = [site('minimal'), site('template')];
  if (!minimal || !template) {
    // The smoke run builds neither in release: no rows, a line in the log.
    log('examples/minimal or examples/template has no built site: footprint not measured');
    return;
  }
  const [withLibrary, without] = [sum(minimal, gz), sum(template, gz)];
  add({ group: g, what: 'examples/template (start-axum, the same pages, no keycloak-bff): wasm + JS, gzip -9', value: without, unit: 'B' });
  add({ group: g, what: 'examples/minimal (the same with keycloak-bff): wasm + JS, gzip -9', value: withLibrary, unit: 'B' });
  const diff = withLibrary - without;
  add({ group: g, what: 'the difference: what keycloak-bff adds, gzip -9', value: diff, unit: 'B', goal: '≤ 40,960', met: diff <= 40 * 1024 });
}

/** A first visit with an empty cache (alice signed in): the bytes over the wire (Chromium's
 * encoded lengths, headers included) and the time until the page is interactive (its session
 * watcher runs, which it does once hydrated). */
async function firstVisit(browser, storageState, path) {
  const context = await browser.newContext({ storageState });
  try {
    const page = await context.newPage();
    const cdp = await context.newCDPSession(page);
    await cdp.send('Network.enable');
    const urls = new Map();
    let total = 0;
    let code = 0;
    cdp.on('Network.requestWillBeSent', (e) => urls.set(e.requestId, e.request.url));
    cdp.on('Network.loadingFinished', (e) => {
      total += e.encodedDataLength;
      const url = urls.get(e.requestId) ?? '';
      if (/\.(wasm|js)$/.test(new URL(url, APP).pathname)) code += e.encodedDataLength;
    });
    await page.goto(`${APP}${path}`);
    await page.waitForFunction(ready);
    const tti = await page.evaluate(() => performance.now());
    await page.waitForLoadState('networkidle');
    return { total, code, tti };
  } finally {
    await context.close();
  }
}

async function browserFigures() {
  const g = 'In Chromium (loopback, alice signed in)';
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-quic'] });
  try {
    const context = await browser.newContext();
    const page = await context.newPage();
    await browserSignIn(page, APP, 'alice');
    const state = await context.storageState();
    for (const path of ['/', '/profile']) {
      const v = await firstVisit(browser, state, path);
      add({ group: g, what: `first visit of ${path}, empty cache: bytes over the wire (HTML, CSS, wasm, JS, headers)`, value: v.total, unit: 'B' });
      // The unsplit app sent its whole module on any first visit: `/` is compared with it.
      const against = path === '/' ? { ratio: v.code / UNSPLIT_WASM_JS_BROTLI, ratioOf: `of the unsplit app's ${fmt(UNSPLIT_WASM_JS_BROTLI)} B`,
        goal: '≤ 0.60 (40 % less)', met: v.code <= 0.6 * UNSPLIT_WASM_JS_BROTLI } : {};
      add({ group: g, what: `first visit of ${path}: of which wasm and JS`, value: v.code, unit: 'B', ...against });
      add({ group: g, what: `time to interactive of ${path}, empty cache`, value: v.tti, unit: 'ms' });
    }
    // Warm: the same browser again; the hashed files come from its cache (immutable).
    const warm = await browser.newContext({ storageState: state });
    const warmFirst = await warm.newPage();
    await warmFirst.goto(`${APP}/profile`);
    await warmFirst.waitForFunction(ready);
    const warmPage = await warm.newPage();
    await warmPage.goto(`${APP}/profile`);
    await warmPage.waitForFunction(ready);
    const warmMs = await warmPage.evaluate(() => performance.now());
    add({ group: g, what: 'time to interactive of /profile, cached assets', value: warmMs, unit: 'ms' });
    await warm.close();
    await context.close();
  } finally {
    await browser.close();
  }
}

async function idleTab(tokenSeconds, margin) {
  const g = 'Idle tab and refresh';
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-quic'] });
  try {
    const page = await browser.newPage();
    await browserSignIn(page, APP, 'erin');
    await page.goto(`${APP}/profile`);
    await page.waitForFunction(ready);
    await sleep(1000);
    const seen = [];
    page.on('request', (r) => seen.push(`${r.method()} ${new URL(r.url()).pathname}`));
    await sleep(IDLE_SECONDS * 1000);
    const perMinute = (seen.length * 60) / IDLE_SECONDS;
    const lifetimes = IDLE_SECONDS / tokenSeconds;
    add({ group: g, what: `requests per minute of an open, visible, idle tab over ${IDLE_SECONDS} s (${tokenSeconds}-s tokens; polling every 5 s was 12)`, value: perMinute, unit: '/min', digits: 1 });
    add({ group: g, what: 'the same, per access-token lifetime', value: seen.length / lifetimes, unit: 'requests', digits: 2,
      goal: '≤ 1', met: SMOKE || seen.length / lifetimes <= 1 });
    add({ group: g, what: 'what it sent', value: [...new Set(seen)].join(', ') || 'nothing', unit: '' });
  } finally {
    await browser.close();
  }
}

async function refreshStorm() {
  const g = 'Idle tab and refresh';
  const cookies = [];
  for (let i = 0; i < STORM_SESSIONS; i++) cookies.push(await appSignIn(i % 2 ? 'erin' : 'paul'));
  await sleep(11_000); // demo-short: every access token has expired
  const before = await metric('keycloak_bff_token_refresh_calls_total');
  const times = [];
  const started = performance.now();
  const statuses = await Promise.all(Array.from({ length: STORM_REQUESTS }, async (_, i) => {
    const t = performance.now();
    const r = await fetch(`${APP}/api/v1/me`, { headers: { cookie: cookies[i % cookies.length] } });
    await r.arrayBuffer();
    times.push(performance.now() - t);
    return r.status;
  }));
  const wall = performance.now() - started;
  const calls = (await metric('keycloak_bff_token_refresh_calls_total')) - before;
  if (statuses.some((s) => s !== 200)) throw new Error(`storm: ${statuses.filter((s) => s !== 200).length} failed`);
  add({ group: g, what: `refresh storm: ${STORM_REQUESTS} parallel requests on ${STORM_SESSIONS} sessions whose tokens had expired`, value: STORM_REQUESTS / (wall / 1000), unit: 'req/s',
    p50: percentile(times, 50), p99: percentile(times, 99) });
  add({ group: g, what: 'token-endpoint calls in that storm (one per session)', value: calls, unit: 'calls', goal: `= ${STORM_SESSIONS}`, met: calls === STORM_SESSIONS });
}

function criterion() {
  const text = process.env.BENCH_CRITERION ?? '';
  const figure = (name) => {
    const at = text.indexOf(name);
    const m = at >= 0 ? text.slice(at).match(/time:\s+\[[\d.]+ \S+ ([\d.]+) (ns|µs|us|ms)/) : null;
    return m ? Number(m[1]) * { ns: 0.001, 'µs': 1, us: 1, ms: 1000 }[m[2]] : NaN;
  };
  const g = 'Bearer token check alone (criterion)';
  const fresh = figure('bearer token check (RS256');
  const again = figure('bearer token seen again');
  if (!Number.isFinite(fresh)) throw new Error('no criterion figure');
  add({ group: g, what: 'a token not seen before: header, RS256 signature, claims, azp, roles (keys cached)', value: fresh, unit: 'µs', digits: 1, goal: '≤ 25', met: fresh <= 25 });
  add({ group: g, what: 'the same token again (accepted tokens are kept up to a minute)', value: again, unit: 'µs', digits: 2 });
}

// ---------------------------------------------------------------- report

function report() {
  const date = new Date().toISOString().slice(0, 10);
  const cpu = cpus();
  const lines = [];
  lines.push(`Measured by \`scripts/bench.sh\` on ${date}: ${cpu.length} × ${cpu[0]?.model ?? 'CPU'}, ${Math.round(totalmem() / 2 ** 30)} GiB; client (wrk, Chromium) and server share the cores, on loopback.`);
  lines.push('', process.env.BENCH_VERSIONS ?? '', '');
  lines.push('Counts of calls are exact. Times vary from run to run by 10–20 %; ratios are measured in the same run and hold better. Every URL is checked to answer what it should (status, signed-in or not) before it is measured, and a run with any non-2xx answer fails.', '');
  let group = '';
  for (const row of rows) {
    if (row.group !== group) {
      group = row.group;
      lines.push('', `## ${group}`, '', '| what | figure | p50 / p99 | ratio | goal | |', '|---|---:|---:|---:|---|---|');
    }
    const value = typeof row.value === 'number' ? `${fmt(row.value, row.digits ?? (row.unit === '×' ? 2 : 0))} ${row.unit}` : row.value;
    const lat = Number.isFinite(row.p50) ? `${fmt(row.p50, 2)} / ${fmt(row.p99, 2)} ms` : '';
    const ratio = Number.isFinite(row.ratio) ? `${fmt(row.ratio, 2)}× ${row.ratioOf ?? ''}` : '';
    const met = row.goal ? (row.met ? 'met' : '**not met**') : '';
    lines.push(`| ${row.what} | ${value} | ${lat} | ${ratio} | ${row.goal ?? ''} | ${met} |`);
  }
  return lines.join('\n');
}

async function chart(path) {
  const bars = rows.filter((r) => r.chart);
  const max = Math.max(...bars.map((b) => b.value));
  const html = `<!doctype html><html><body style="font:14px sans-serif;margin:16px;width:860px">
<h3 style="margin:0 0 12px">Throughput, requests per second (${new Date().toISOString().slice(0, 10)}, ${cpus().length} cores, wrk -c${WRK_CONNECTIONS})</h3>
${bars.map((b) => `<div style="display:flex;align-items:center;margin:4px 0">
<div style="width:330px;text-align:right;padding-right:8px">${b.what.replace(/&/g, '&amp;').replace(/</g, '&lt;')}</div>
<div style="background:${b.what.startsWith('oauth2-proxy') ? '#c0392b' : '#2e86c1'};height:20px;width:${Math.max(1, (b.value / max) * 420)}px"></div>
<div style="padding-left:6px">${fmt(b.value)}</div></div>`).join('\n')}
</body></html>`;
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'] });
  try {
    const page = await browser.newPage({ viewport: { width: 900, height: 100 } });
    await page.setContent(html);
    await page.screenshot({ path, fullPage: true });
  } finally {
    await browser.close();
  }
}

async function main() {
  // BENCH_ONLY=streams: the open-tabs rows alone, printed (for working on them).
  if (process.env.BENCH_ONLY === 'streams') {
    await manyStreams();
    console.log(report());
    return;
  }
  if (process.env.BENCH_ONLY === 'remote') {
    const only = await startApp('demo');
    await remoteApi();
    await stop(only.child);
    console.log(report());
    return;
  }
  criterion();
  log('the app against realm demo (5-minute tokens)');
  let app = await startApp('demo');
  await sessionsAndMemory(app);
  await stop(app.child);
  await manyStreams();
  app = await startApp('demo');
  await throughput(app);
  await remoteApi();
  const afterLoad = rssMb(app.child.pid);
  add({ group: 'Memory after the throughput runs', what: 'app RSS right after the wrk runs above (64 connections; glibc keeps what bursts freed)', value: afterLoad, unit: 'MB', digits: 1 });
  await browserFigures();
  await stop(app.child);
  log('the app against realm demo-short (10-second tokens), refreshes 3 s before expiry');
  app = await startApp('demo-short', { APP_SESSION_REFRESH_MARGIN_SECS: '3' });
  await refreshStorm();
  await idleTab(10, 3);
  await stop(app.child);
  await bundle();
  await footprint();
  const text = report();
  // The figures go between the markers; what is written around them by hand (what was slow,
  // what was done about it) stays.
  const BEGIN = '<!-- bench:begin (written by scripts/bench.sh) -->';
  const END = '<!-- bench:end -->';
  let previous = '';
  try { previous = readFileSync(OUT, 'utf8'); } catch { /* first run */ }
  const at = previous.indexOf(BEGIN);
  const to = previous.indexOf(END);
  const generated = `${BEGIN}\n${text}\n${END}`;
  writeFileSync(OUT, at >= 0 && to > at
    ? `${previous.slice(0, at)}${generated}${previous.slice(to + END.length)}`
    : `${generated}\n`);
  const png = join(dirname(OUT), `${basename(OUT, '.md')}.png`);
  await chart(png);
  log(`wrote ${OUT} and ${png} (${statSync(png).size} B)`);
  console.log(`\n${text}\n`);
  const missed = rows.filter((r) => r.goal && !r.met);
  if (missed.length) log(`goals not met: ${missed.map((r) => r.what).join('; ')}`);
}

main().then(() => process.exit(0), (e) => { console.error('bench failed:', e); process.exit(1); });
