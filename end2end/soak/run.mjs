// The chaos soak of scripts/soak.sh, against a running cluster (scripts/cluster.sh: two replicas on
// Redis, nginx in front, Keycloak on a realm of 10-second access tokens). Many simulated users, each
// with its own cookie jar, sign in through Keycloak's real login form, then load pages, call server
// functions, write notes and hold an event stream, while a chaos loop kills a replica (kill -9) and
// restarts it, kills Redis (kill -9, or the Sentinel master for a failover) and restarts it, and
// restarts Keycloak. At the end: every note the app acknowledged must be there, every sign-out the
// soak asked for must hold, and nobody was signed out otherwise. Writes a report (Markdown, between
// markers of its mode in SOAK_OUT) and a chart (PNG) of latency and errors with the faults marked.
// Exits 1 when a goal is missed.
//
// Environment: SOAK_APP (the cluster's URL), SOAK_REALM, SOAK_USERS, SOAK_SECONDS (of load after
// everyone signed in), SOAK_SENTINEL=1 (failovers instead of Redis restarts), SOAK_KEYCLOAK=0 (no
// Keycloak restart: the smoke run, whose Keycloak serves other tests meanwhile), SOAK_FAULT_EVERY
// (mean seconds between faults), SOAK_RUN_DIR (the cluster's pid files and start scripts),
// SOAK_OUT, SOAK_CHART, SOAK_VERSIONS, SOAK_MARGIN (the replicas' refresh margin), SOAK_SEED.

import { spawn, execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync, existsSync, readlinkSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { chromium } from '@playwright/test';
import { KEYCLOAK, Jar, get, keycloakLogin, adminToken, admin, eachEvent } from '../bench/client.mjs';

const env = (name, fallback) => process.env[name] ?? fallback;
const APP = env('SOAK_APP', 'http://localhost:3000');
const REALM = env('SOAK_REALM', 'demo-short');
const USERS = Number(env('SOAK_USERS', '200'));
const SECONDS = Number(env('SOAK_SECONDS', '600'));
const SENTINEL = env('SOAK_SENTINEL', '0') === '1';
const KEYCLOAK_FAULTS = env('SOAK_KEYCLOAK', '1') === '1';
const FAULT_EVERY = Number(env('SOAK_FAULT_EVERY', '60'));
const RUN = env('SOAK_RUN_DIR', new URL('../../target/cluster', import.meta.url).pathname);
const OUT = env('SOAK_OUT', new URL('../../docs/reliability.md', import.meta.url).pathname);
const CHART = env('SOAK_CHART', OUT.replace(/\.md$/, SENTINEL ? '-sentinel.png' : '.png'));
const MARGIN = Number(env('SOAK_MARGIN', '3'));
const ROOT = new URL('../..', import.meta.url).pathname;
const CHROMIUM = env('CHROMIUM_PATH', '/usr/bin/chromium');
const REPLICAS = [3101, 3102];
const SENTINELS = [26390, 26391, 26392];
const REDIS_PORTS = { redis: 6390, 'redis-replica': 6391 };
const BUCKET_S = SECONDS >= 120 ? 10 : 2;
// After a part is back, how long its outage answers may still come (clients reconnecting, the
// library's Keycloak back-off of up to 8 s, nginx's view of the upstreams).
const GRACE_S = 10;

// ---------------------------------------------------------------- small things

const SEED = Number(env('SOAK_SEED', String(Date.now() % 100000)));
let seed = SEED;
const random = () => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648; };
const between = (a, b) => a + random() * (b - a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const T0 = Date.now();
const now = () => (Date.now() - T0) / 1000;
const log = (...a) => console.log(`soak [${now().toFixed(1).padStart(6)}s]`, ...a);
const pct = (values, p) => {
  if (!values.length) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
const fmt = (n, d = 0) => (Number.isFinite(n) ? n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }) : 'n/a');
const readPid = (name) => { try { return Number(readFileSync(join(RUN, `${name}.pid`), 'utf8').trim()); } catch { return 0; } };
const alive = (pid) => { try { process.kill(pid, 0); return true; } catch { return false; } };
const rssMb = (pid) => {
  try { return Number(readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)[1]) / 1024; } catch { return NaN; }
};

// ---------------------------------------------------------------- what happened

const samples = []; // { t, kind, ms, status }
const faults = []; // { kind, what, start, recovered }
const spurious = []; // { t, user, how }
const unexpected = []; // { t, user, kind, status, detail }
const outage = []; // { t, kind, status } the documented outage answers
const streamEvents = { opened: 0, cut: 0, refused: {} };
const rss = []; // { t, port, mb }
const userIds = new Map(); // Keycloak's user id -> username
// A replica killed (kill -9) after Keycloak answered its refresh and before the store had the new
// tokens loses that rotation: the next refresh spends the old token and Keycloak refuses it, once
// the dead replica's refresh lock has run out (Keycloak's timeout twice plus 5 s). docs/operating.md and
// docs/security.md name this window; a sign-out it causes is reported apart.
const KILLED_MID_REFRESH_S = 30;
let deferredSignOuts = 0; // sign-outs the app took while its store was down (ended later)
let phase = 'sign-in';
// The load goes on until its time is up and every kind of fault has happened at least once.
let everyFaultSeen = false;
let loadEndsAt = Infinity;
const loadOn = () => Date.now() < loadEndsAt || !everyFaultSeen;

/** The fault whose window (from its start to its recovery plus GRACE_S) holds `t` and that
 * `explains` (all of them by default). */
function faultAt(t, explains = () => true) {
  return faults.find((f) => t >= f.start - 1 && t <= (f.recovered ?? Infinity) + GRACE_S && explains(f));
}
// The answers each fault may cause: documented in docs/operating.md.
const allowed = (f) => (f.kind === 'replica' ? [502, 503] : [503]);

function record(user, kind, start, status, detail = '') {
  const t = (start - T0) / 1000;
  const ms = Date.now() - start;
  samples.push({ t, kind, ms, status, phase: currentPhase(t) });
  if (status >= 200 && status < 400) return 'ok';
  if (status === 401) return 'signed-out';
  const fault = faultAt(t, (f) => allowed(f).includes(status));
  if (fault) {
    outage.push({ t, kind, status, fault: fault.kind });
    return 'outage';
  }
  unexpected.push({ t, user: user.name, kind, status, detail: String(detail).slice(0, 160) });
  return 'unexpected';
}

/** An answer that is an outage's (documented) when a fault is on, else unexpected. */
function degraded(user, t, kind, what) {
  const fault = faultAt(t);
  if (fault) outage.push({ t, kind, status: what, fault: fault.kind });
  else unexpected.push({ t, user: user.name, kind, status: 200, detail: what });
}

function currentPhase(t) {
  const f = faults.find((x) => t >= x.start && t <= (x.recovered ?? Infinity) + GRACE_S);
  return f ? f.kind : phase;
}

// ---------------------------------------------------------------- a user

class User {
  constructor(name) {
    this.name = name;
    this.jar = new Jar();
    this.generation = 0; // a new one at every sign-in
    this.signingOut = false;
    this.notes = []; // the notes the app acknowledged: { id, body }
    this.endedCookies = []; // the session cookies of the sign-outs it asked for
    this.stream = null;
  }

  cookie() { return this.jar.cookies.get(COOKIE); }

  /** Keycloak's form through the app, as a browser; tries again while a part is down. */
  async signIn() {
    for (let attempt = 0; ; attempt++) {
      const start = Date.now();
      try {
        this.jar = new Jar();
        const first = await get(`${APP}/auth/login?return_to=%2F`, this.jar);
        await first.arrayBuffer();
        if (first.status !== 303 && first.status !== 302) throw new Error(`login: ${first.status}`);
        const back = await keycloakLogin(first.headers.get('location'), this.name, PASSWORD(this.name));
        const done = await get(back, this.jar);
        await done.arrayBuffer();
        if (done.status !== 303 || !this.cookie()) throw new Error(`callback: ${done.status}`);
        record(this, 'sign-in', start, 200);
        this.generation++;
        return;
      } catch (e) {
        const t = (start - T0) / 1000;
        // A sign-in while Keycloak, Redis or a replica is down fails; a browser's user tries again.
        if (!faultAt(t) && attempt >= 2) {
          unexpected.push({ t, user: this.name, kind: 'sign-in', status: 0, detail: e.message });
        }
        if (attempt > 60) throw new Error(`${this.name} could not sign in: ${e.message}`);
        await sleep(between(1000, 3000));
      }
    }
  }

  async call(kind, path, { method = 'GET', body, form } = {}) {
    const start = Date.now();
    const headers = { cookie: this.jar.header() };
    if (method !== 'GET') headers.origin = APP;
    if (form) headers['content-type'] = 'application/x-www-form-urlencoded';
    let status = 0;
    let text = '';
    try {
      const r = await fetch(`${APP}${path}`, {
        method, headers, body: form ? new URLSearchParams(form) : body, redirect: 'manual',
        signal: AbortSignal.timeout(20_000),
      });
      this.jar.take(r);
      text = await r.text();
      status = r.status;
    } catch (e) {
      text = e.message;
    }
    return { status, text, verdict: record(this, kind, start, status, text) };
  }

  /** The user was signed out without asking: counted, then signed in again. */
  async lost(how) {
    // Seen once (by the stream or by a request), counted once.
    if (this.signingOut) return;
    spurious.push({ t: now(), user: this.name, how });
    log(`SPURIOUS SIGN-OUT of ${this.name}: ${how}`);
    this.signingOut = true;
    try {
      await this.signIn();
    } finally {
      this.signingOut = false;
    }
  }

  async step() {
    const roll = random();
    if (roll < 0.35) {
      const page = random() < 0.5 ? '/' : '/profile';
      const at = now();
      const { status, text, verdict } = await this.call('page', page);
      if (status === 200 && text.includes('data-testid="session-unknown"')) {
        // The page's own outage answer: "Session unavailable", neither signed in nor out.
        degraded(this, at, 'page', 'a page saying "Session unavailable"');
      } else if (verdict === 'signed-out' || (status === 200 && !text.includes('data-testid="signed-in-as"'))) {
        await this.lost(`${page} answered ${status} signed out`);
      }
    } else if (roll < 0.65) {
      const { verdict } = await this.call('api', '/api/v1/me');
      if (verdict === 'signed-out') await this.lost('/api/v1/me answered 401');
    } else if (roll < 0.8) {
      const { verdict } = await this.call('server-fn', '/api/my_sessions', { method: 'POST', form: {} });
      if (verdict === 'signed-out') await this.lost('my_sessions answered 401');
    } else if (roll < 0.9) {
      const body = `soak ${this.name} ${this.generation} ${Math.floor(random() * 1e9)}`;
      const { status, text, verdict } = await this.call('write', '/api/create_note', { method: 'POST', form: { body } });
      if (status === 200) {
        try {
          const note = JSON.parse(text);
          this.notes.push({ id: note.id, body });
        } catch {
          unexpected.push({ t: now(), user: this.name, kind: 'write', status, detail: `not a note: ${text.slice(0, 80)}` });
        }
      } else if (verdict === 'signed-out') {
        await this.lost('create_note answered 401');
      }
    } else if (roll < 0.995) {
      const { verdict } = await this.call('page', '/health/live');
      if (verdict === 'signed-out') await this.lost('/health/live answered 401');
    } else {
      await this.signOut();
    }
  }

  /** A sign-out the user asked for: its cookie must never work again. */
  async signOut() {
    const cookie = this.cookie();
    // Until the next sign-in is done (it waits while Keycloak is down), a "signed out" on the
    // old session's stream is the one asked for.
    this.signingOut = true;
    // 303: done. 503 with Keycloak down: the app's session ended, Keycloak's may remain. 503
    // with the store down: the browser drops its cookie and the app ends the session once the
    // store answers (README). Each way the cookie must be refused by the end of the soak.
    const { status } = await this.call('sign-out', '/auth/logout', { method: 'POST', form: {} });
    if (status === 303 || status === 503) this.endedCookies.push(cookie);
    if (status === 503) deferredSignOuts++;
    try {
      await this.signIn();
    } finally {
      this.signingOut = false;
    }
  }

  /** The event stream of an open tab, held and reopened as EventSource does. */
  async holdStream() {
    while (loadOn()) {
      const generation = this.generation;
      const start = Date.now();
      const controller = new AbortController();
      this.stream = controller;
      try {
        const r = await fetch(`${APP}/auth/events`, {
          headers: { cookie: this.jar.header(), accept: 'text/event-stream' }, signal: controller.signal,
        });
        if (r.status !== 200) {
          const text = await r.text();
          const verdict = record(this, 'stream', start, r.status, text);
          // A tab of a session its user just signed out of gets 401: what was asked for.
          const asked = r.status === 401 && (generation !== this.generation || this.signingOut);
          const label = asked ? '401 after the user signed out' : String(r.status);
          streamEvents.refused[label] = (streamEvents.refused[label] ?? 0) + 1;
          if (verdict === 'signed-out' && generation === this.generation && !this.signingOut) {
            await this.lost('the event stream answered 401');
          }
          await sleep(between(1000, 3000));
          continue;
        }
        record(this, 'stream', start, 200);
        streamEvents.opened++;
        await eachEvent(r, async (status) => {
          if (status.signed_in === false && generation === this.generation && !this.signingOut) {
            controller.abort();
            await this.lost('the event stream said signed out');
          }
        }, () => !loadOn() || generation !== this.generation);
        controller.abort();
      } catch {
        if (loadOn()) streamEvents.cut++;
      }
      await sleep(between(500, 1500));
    }
  }

  async run() {
    const stream = this.holdStream();
    while (loadOn()) {
      await this.step();
      await sleep(between(1000, 4000));
    }
    this.stream?.abort();
    await stream;
  }
}

const COOKIE = 'kc_leptos_session';
const PASSWORD = (name) => `${name}-soak-pw`;

// ---------------------------------------------------------------- Keycloak's users

async function ensureUsers() {
  const token = await adminToken();
  const editors = await admin(token, REALM, 'GET', '/group-by-path/staff/editors');
  const names = Array.from({ length: USERS }, (_, i) => `soak-${String(i + 1).padStart(3, '0')}`);
  let created = 0;
  for (let i = 0; i < names.length; i += 10) {
    await Promise.all(names.slice(i, i + 10).map(async (name) => {
      const found = await admin(token, REALM, 'GET', `/users?username=${name}&exact=true`);
      if (found.length) return;
      await admin(token, REALM, 'POST', '/users', {
        username: name, enabled: true, emailVerified: true, email: `${name}@soak.example`,
        firstName: 'Soak', lastName: name.slice(5),
        credentials: [{ type: 'password', value: PASSWORD(name), temporary: false }],
      });
      const [user] = await admin(token, REALM, 'GET', `/users?username=${name}&exact=true`);
      await admin(token, REALM, 'PUT', `/users/${user.id}/groups/${editors.id}`);
      created++;
    }));
  }
  log(`${USERS} users in realm ${REALM} (${created} created now), in the group /staff/editors`);
  const all = await admin(token, REALM, 'GET', `/users?search=soak-&briefRepresentation=true&max=${USERS + 100}`);
  for (const u of all) userIds.set(u.id, u.username);
  return names;
}

// ---------------------------------------------------------------- the chaos

function replicaEnv(pid) {
  const raw = readFileSync(`/proc/${pid}/environ`, 'utf8');
  return Object.fromEntries(raw.split('\0').filter(Boolean).map((kv) => {
    const at = kv.indexOf('=');
    return [kv.slice(0, at), kv.slice(at + 1)];
  }));
}

/** Starts `name` again from the cluster's own start script, with `environment`. */
function restart(name, args = [], environment = process.env, cwd = ROOT) {
  const child = spawn(join(RUN, `start-${name}.sh`), args, { env: environment, cwd, stdio: 'ignore', detached: true });
  child.unref();
}

async function until(what, test, seconds = 120) {
  const deadline = Date.now() + seconds * 1000;
  while (Date.now() < deadline) {
    try { if (await test()) return; } catch { /* not yet */ }
    await sleep(200);
  }
  throw new Error(`${what}: not within ${seconds} s`);
}

const redisCli = (port, ...args) => execFileSync('redis-cli', ['-p', String(port), ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();

function sentinelMaster() {
  for (const port of SENTINELS) {
    try {
      const [, masterPort] = redisCli(port, 'SENTINEL', 'get-master-addr-by-name', 'kcbff').split('\n');
      if (masterPort) return Number(masterPort);
    } catch { /* that sentinel is busy */ }
  }
  return 0;
}

const FAULTS = {
  async replica() {
    const port = REPLICAS[Math.floor(random() * REPLICAS.length)];
    const pid = readPid(`replica-${port}`);
    // As it was started: its environment and its working directory (where Leptos.toml is).
    const environment = replicaEnv(pid);
    const cwd = readlinkSync(`/proc/${pid}/cwd`);
    const fault = { kind: 'replica', what: `kill -9 of the replica on :${port}, restarted`, start: now() };
    faults.push(fault);
    process.kill(pid, 'SIGKILL');
    await sleep(between(2000, 6000));
    restart(`replica-${port}`, [], environment, cwd);
    await until(`the replica on :${port}`, async () => (await fetch(`http://127.0.0.1:${port}/health/ready`)).ok);
    fault.recovered = now();
  },
  async redis() {
    const pid = readPid('redis');
    const fault = { kind: 'redis', what: 'kill -9 of Redis (append-only, fsync always), restarted', start: now() };
    faults.push(fault);
    process.kill(pid, 'SIGKILL');
    await sleep(between(1000, 4000));
    restart('redis');
    await until('Redis', () => redisCli(REDIS_PORTS.redis, 'PING') === 'PONG');
    await until('the replicas', async () => {
      for (const port of REPLICAS) if (!(await fetch(`http://127.0.0.1:${port}/health/ready`)).ok) return false;
      return true;
    });
    fault.recovered = now();
  },
  async failover() {
    const masterPort = sentinelMaster();
    const name = Object.keys(REDIS_PORTS).find((n) => REDIS_PORTS[n] === masterPort);
    const fault = { kind: 'failover', what: `kill -9 of the Redis master (:${masterPort}); Sentinel promotes the replica; the old master returns as a replica`, start: now() };
    faults.push(fault);
    process.kill(readPid(name), 'SIGKILL');
    await until('a new master', () => { const p = sentinelMaster(); return p && p !== masterPort; }, 60);
    const newMaster = sentinelMaster();
    fault.promoted = now();
    await sleep(between(1000, 3000));
    restart(name, ['--replicaof', '127.0.0.1', String(newMaster)]);
    await until('the old master as a replica', () => /master_link_status:up/.test(redisCli(masterPort, 'INFO', 'replication')));
    fault.recovered = now();
  },
  async keycloak() {
    const fault = { kind: 'keycloak', what: 'Keycloak stopped (keycloak/stop.sh) and started again', start: now() };
    faults.push(fault);
    execFileSync(join(ROOT, 'keycloak/stop.sh'), { stdio: 'ignore' });
    await sleep(between(1000, 4000));
    await new Promise((resolve, reject) => {
      const child = spawn(join(ROOT, 'keycloak/start.sh'), { stdio: 'ignore' });
      child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`keycloak/start.sh: ${code}`))));
    });
    fault.recovered = now();
  },
};

async function chaos() {
  const kinds = ['replica', SENTINEL ? 'failover' : 'redis', ...(KEYCLOAK_FAULTS ? ['keycloak'] : [])];
  let order = [...kinds].sort(() => random() - 0.5);
  await sleep(between(0.3, 0.7) * FAULT_EVERY * 1000);
  while (Date.now() < loadEndsAt - 5000 || !everyFaultSeen) {
    if (!order.length) order = [...kinds].sort(() => random() - 0.5);
    const kind = order.shift();
    log(`fault: ${kind}`);
    try {
      await FAULTS[kind]();
    } catch (e) {
      log(`the fault ${kind} failed: ${e.message}`);
      unexpected.push({ t: now(), user: '-', kind: `fault ${kind}`, status: 0, detail: e.message });
    }
    const f = faults[faults.length - 1];
    log(`recovered from ${kind} after ${fmt(f.recovered - f.start, 1)} s`);
    if (!order.length) everyFaultSeen = true;
    if (everyFaultSeen && Date.now() >= loadEndsAt - 5000) break;
    await sleep(between(0.6, 1.4) * FAULT_EVERY * 1000);
  }
  everyFaultSeen = true;
}

async function sampleRss() {
  while (loadOn()) {
    for (const port of REPLICAS) {
      const pid = readPid(`replica-${port}`);
      if (pid && alive(pid)) rss.push({ t: now(), port, mb: rssMb(pid) });
    }
    await sleep(5000);
  }
}

// ---------------------------------------------------------------- the checks at the end

async function checkWrites(users) {
  // The board shows the latest 500 notes: every acknowledged one is looked for in the replicas'
  // shared notes file itself (read-only).
  const file = join(RUN, 'data', 'notes.sqlite3');
  const rows = JSON.parse(execFileSync('sqlite3', ['-readonly', '-json', file, 'SELECT id, body FROM notes'],
    { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 }) || '[]');
  const stored = new Map(rows.map((r) => [r.id, r.body]));
  const acknowledged = users.flatMap((u) => u.notes);
  const missing = acknowledged.filter((n) => stored.get(n.id) !== n.body);
  return { acknowledged: acknowledged.length, missing };
}

async function checkSignOuts(users) {
  const ended = users.flatMap((u) => u.endedCookies.map((c) => ({ user: u.name, cookie: c })));
  const revived = [];
  for (const e of ended) {
    const r = await fetch(`${APP}/api/v1/me`, { headers: { cookie: `${COOKIE}=${e.cookie}` } });
    await r.arrayBuffer();
    if (r.status !== 401) revived.push({ ...e, status: r.status });
  }
  return { ended: ended.length, revived };
}

async function keycloakRefreshes(signedInAt) {
  const token = await adminToken();
  const day = new Date(T0 - 86_400_000).toISOString().slice(0, 10);
  const events = await admin(token, REALM, 'GET',
    `/events?type=REFRESH_TOKEN&type=REFRESH_TOKEN_ERROR&client=demo-app&dateFrom=${day}&first=0&max=1000000`);
  const mine = events.filter((e) => e.time >= T0);
  const errors = mine.filter((e) => e.type === 'REFRESH_TOKEN_ERROR').map((e) => ({
    ...e,
    t: (e.time - T0) / 1000,
    user: userIds.get(e.userId) ?? e.userId,
    // Within the documented window of a replica killed mid-refresh?
    killed: faults.find((f) => f.kind === 'replica' && (e.time - T0) / 1000 >= f.start
      && (e.time - T0) / 1000 <= f.start + KILLED_MID_REFRESH_S),
  }));
  const bySession = new Map();
  for (const e of mine.filter((x) => x.type === 'REFRESH_TOKEN')) {
    if (!bySession.has(e.sessionId)) bySession.set(e.sessionId, []);
    bySession.get(e.sessionId).push(e.time);
  }
  const gaps = [];
  for (const times of bySession.values()) {
    times.sort((a, b) => a - b);
    for (let i = 1; i < times.length; i++) gaps.push((times[i] - times[i - 1]) / 1000);
  }
  const counts = [...bySession.values()].map((t) => t.length);
  const total = counts.reduce((a, b) => a + b, 0);
  return {
    total, sessions: bySession.size, errors: errors.filter((e) => !e.killed).length, all: errors,
    errorDetails: errors.slice(0, 5).map((e) => `${fmt(e.t, 1)} s ${e.user}: ${e.error ?? ''} ${e.details?.reason ?? ''}${e.killed ? ` (${fmt(e.t - e.killed.start, 1)} s after the kill of a replica at ${fmt(e.killed.start)} s)` : ''}`.trim()),
    mean: total / Math.max(1, bySession.size), max: Math.max(0, ...counts),
    minGap: gaps.length ? Math.min(...gaps) : NaN, close: gaps.filter((g) => g < 2).length,
    perMinute: total / Math.max(1, bySession.size) / ((Date.now() - signedInAt) / 60_000),
  };
}

// ---------------------------------------------------------------- the report

function buckets() {
  const out = [];
  const end = now();
  for (let from = 0; from < end; from += BUCKET_S) {
    const inside = samples.filter((s) => s.t >= from && s.t < from + BUCKET_S && s.kind !== 'stream');
    const ms = inside.map((s) => s.ms);
    out.push({
      t: from, n: inside.length, p50: pct(ms, 50), p99: pct(ms, 99),
      errors: inside.filter((s) => !(s.status >= 200 && s.status < 400)).length,
    });
  }
  return out;
}

async function chart(path, title) {
  const b = buckets();
  const W = 900; const H = 360; const L = 60; const R = 60; const T = 30; const B = 40;
  const tMax = Math.max(1, now());
  const yMax = Math.max(50, ...b.map((x) => x.p99).filter(Number.isFinite)) * 1.1;
  const eMax = Math.max(5, ...b.map((x) => x.errors));
  const x = (t) => L + (t / tMax) * (W - L - R);
  const y = (ms) => H - B - (ms / yMax) * (H - T - B);
  const ye = (n) => H - B - (n / eMax) * (H - T - B);
  const line = (key, color) => `<polyline fill="none" stroke="${color}" stroke-width="1.5" points="${b.filter((p) => Number.isFinite(p[key])).map((p) => `${x(p.t + BUCKET_S / 2).toFixed(1)},${y(p[key]).toFixed(1)}`).join(' ')}"/>`;
  const colors = { replica: '#8e44ad', redis: '#c0392b', failover: '#c0392b', keycloak: '#d68910' };
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">
<rect width="${W}" height="${H}" fill="white"/>
<text x="${L}" y="18" font-size="13" font-weight="bold">${title}</text>
${faults.map((f) => `<rect x="${x(f.start).toFixed(1)}" y="${T}" width="${Math.max(2, x(f.recovered ?? f.start) - x(f.start)).toFixed(1)}" height="${H - T - B}" fill="${colors[f.kind]}" opacity="0.18"/>
<text x="${(x(f.start) + 2).toFixed(1)}" y="${T + 12}" fill="${colors[f.kind]}">${f.kind}</text>`).join('\n')}
${b.map((p) => (p.errors ? `<rect x="${(x(p.t) + 1).toFixed(1)}" y="${ye(p.errors).toFixed(1)}" width="${Math.max(1, x(BUCKET_S) - x(0) - 2).toFixed(1)}" height="${(H - B - ye(p.errors)).toFixed(1)}" fill="#e74c3c" opacity="0.7"/>` : '')).join('\n')}
${line('p50', '#2e86c1')}
${line('p99', '#1b4f72')}
<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="black"/>
<line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="black"/>
<line x1="${W - R}" y1="${T}" x2="${W - R}" y2="${H - B}" stroke="#e74c3c"/>
${[0, 0.25, 0.5, 0.75, 1].map((f) => `<text x="${L - 4}" y="${y(f * yMax) + 4}" text-anchor="end">${fmt(f * yMax)}</text><text x="${W - R + 4}" y="${ye(f * eMax) + 4}" fill="#e74c3c">${fmt(f * eMax)}</text>`).join('')}
${[0, 0.2, 0.4, 0.6, 0.8, 1].map((f) => `<text x="${x(f * tMax)}" y="${H - B + 14}" text-anchor="middle">${fmt(f * tMax)} s</text>`).join('')}
<text x="${L}" y="${H - 8}">latency ms (left): p50 light blue, p99 dark blue, per ${BUCKET_S} s · answers other than 2xx/3xx per ${BUCKET_S} s (right, red bars) · shaded: a fault until its recovery</text>
</svg>`;
  // Below: the RSS of each replica over the same time (a killed replica starts again low).
  const RH = 170;
  const mbMax = Math.max(32, ...rss.map((r) => r.mb).filter(Number.isFinite)) * 1.15;
  const ym = (mb) => RH - B - (mb / mbMax) * (RH - 20 - B);
  const rssColors = { [REPLICAS[0]]: '#117a65', [REPLICAS[1]]: '#b9770e' };
  const rssSvg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${RH}" font-family="sans-serif" font-size="11">
<rect width="${W}" height="${RH}" fill="white"/>
${faults.map((f) => `<rect x="${x(f.start).toFixed(1)}" y="20" width="${Math.max(2, x(f.recovered ?? f.start) - x(f.start)).toFixed(1)}" height="${RH - 20 - B}" fill="${colors[f.kind]}" opacity="0.18"/>`).join('\n')}
${REPLICAS.map((port) => `<polyline fill="none" stroke="${rssColors[port]}" stroke-width="1.5" points="${rss.filter((r) => r.port === port && Number.isFinite(r.mb)).map((r) => `${x(r.t).toFixed(1)},${ym(r.mb).toFixed(1)}`).join(' ')}"/>`).join('\n')}
<line x1="${L}" y1="${RH - B}" x2="${W - R}" y2="${RH - B}" stroke="black"/>
<line x1="${L}" y1="20" x2="${L}" y2="${RH - B}" stroke="black"/>
${[0, 0.5, 1].map((f) => `<text x="${L - 4}" y="${ym(f * mbMax) + 4}" text-anchor="end">${fmt(f * mbMax)}</text>`).join('')}
${[0, 0.2, 0.4, 0.6, 0.8, 1].map((f) => `<text x="${x(f * tMax)}" y="${RH - B + 14}" text-anchor="middle">${fmt(f * tMax)} s</text>`).join('')}
<text x="${L}" y="14">RSS of each replica, MB (every 5 s): <tspan fill="${rssColors[REPLICAS[0]]}">:${REPLICAS[0]}</tspan>, <tspan fill="${rssColors[REPLICAS[1]]}">:${REPLICAS[1]}</tspan></text>
</svg>`;
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'] });
  try {
    const page = await browser.newPage({ viewport: { width: W, height: H + RH } });
    await page.setContent(`<!doctype html><html><body style="margin:0;line-height:0">${svg}${rssSvg}</body></html>`);
    await page.screenshot({ path, clip: { x: 0, y: 0, width: W, height: H + RH } });
  } finally {
    await browser.close();
  }
}

function report({ writes, signOuts, refreshes, signedInAt, endAt }) {
  const mode = SENTINEL ? 'sentinel' : 'plain';
  const steadyS = (endAt - signedInAt) / 1000;
  const kinds = ['page', 'api', 'server-fn', 'write', 'sign-out', 'sign-in', 'stream'];
  const phases = ['sign-in', 'steady', ...new Set(faults.map((f) => f.kind))];
  // A sign-out nobody asked for that follows Keycloak's refusal of the same user's refresh in
  // the window of a replica killed mid-refresh is that window's, and reported as such.
  const inWindow = spurious.filter((s) => refreshes.all.some((e) => e.killed && e.user === s.user
    && e.t <= s.t + 1 && s.t - e.t <= KILLED_MID_REFRESH_S));
  const goals = [
    ['sign-outs the soak did not ask for (apart from the window below)', spurious.length - inWindow.length, 0],
    ['acknowledged notes missing at the end', writes.missing.length, 0],
    ['sign-outs the soak asked for that did not hold', signOuts.revived.length, 0],
    ['answers other than 2xx/3xx outside the documented outage answers', unexpected.length, 0],
    ["Keycloak's REFRESH_TOKEN_ERROR events (a refresh token spent twice or lost), apart from the window below", refreshes.errors, 0],
  ];
  const lines = [
    `<!-- soak:${mode}:begin (written by scripts/soak.sh${SENTINEL ? ' --sentinel' : ''}) -->`,
    `### ${SENTINEL ? 'Redis behind Sentinel (`scripts/soak.sh --sentinel`)' : 'One Redis (`scripts/soak.sh`)'}`,
    '',
    `Run of ${new Date(T0).toISOString().slice(0, 16).replace('T', ' ')} UTC on ${cpus().length} cores, ${fmt(totalmem() / 2 ** 30)} GiB. ${env('SOAK_VERSIONS', '')}`,
    `${USERS} users (their own cookie jars) signed in through Keycloak's form, then ${fmt(steadyS)} s of load `
      + `(a step every 1–4 s each: pages, \`/api/v1/me\`, a server function, a note written, now and then a sign-out and a new sign-in; `
      + `an event stream held throughout), realm \`${REALM}\` (10-second access tokens, refresh margin ${MARGIN} s), `
      + `a fault every ${FAULT_EVERY} s or so (random, ±40 %), seed ${SEED} (\`SOAK_SEED=${SEED}\` repeats the same choices).`,
    '',
    '| Goal | Measured | Must be |',
    '|---|---:|---:|',
    ...goals.map(([what, value, must]) => `| ${what} | ${value} | ${must}${value === must ? ' ✓' : ' ✗'} |`),
    `| sign-outs in the documented window: a replica killed (\`kill -9\`) after Keycloak answered its refresh, before the store had the new tokens | ${inWindow.length} (Keycloak refused ${refreshes.all.filter((e) => e.killed).length} refresh${refreshes.all.filter((e) => e.killed).length === 1 ? '' : 'es'} in such windows) | reported |`,
    `| notes acknowledged (checked at the end) | ${fmt(writes.acknowledged)} | |`,
    `| sign-outs asked for (each cookie checked at the end) | ${fmt(signOuts.ended)}, ${deferredSignOuts} of them answered 503 (the store or Keycloak down) | |`,
    `| requests (event streams apart) | ${fmt(samples.filter((s) => s.kind !== 'stream').length)} | |`,
    `| event streams opened / cut by a fault and reopened | ${fmt(streamEvents.opened)} / ${fmt(streamEvents.cut)} | |`,
    '',
    '**The faults, and what each did** (the window runs from the fault to its recovery plus '
      + `${GRACE_S} s; the answers are those of every request that started in it):`,
    '',
    '| At | Fault | Back after | Requests | 503 | 502 | p50 / p99 ms |',
    '|---:|---|---:|---:|---:|---:|---:|',
    ...faults.map((f) => {
      const inside = samples.filter((s) => s.t >= f.start && s.t <= (f.recovered ?? f.start) + GRACE_S && s.kind !== 'stream');
      const ms = inside.map((s) => s.ms);
      return `| ${fmt(f.start)} s | ${f.what} | ${fmt((f.recovered ?? NaN) - f.start, 1)} s${f.promoted ? ` (promoted after ${fmt(f.promoted - f.start, 1)} s)` : ''} | ${inside.length} | `
        + `${inside.filter((s) => s.status === 503).length} | ${inside.filter((s) => s.status === 502).length} | ${fmt(pct(ms, 50))} / ${fmt(pct(ms, 99))} |`;
    }),
    '',
    '**Latency per phase and kind** (ms, p50 / p99; event streams: time to the first byte):',
    '',
    `| Phase | ${kinds.join(' | ')} |`,
    `|---|${kinds.map(() => '---:').join('|')}|`,
    ...phases.map((p) => `| ${p} | ${kinds.map((k) => {
      const ms = samples.filter((s) => s.phase === p && s.kind === k).map((s) => s.ms);
      return ms.length ? `${fmt(pct(ms, 50))} / ${fmt(pct(ms, 99))}` : '';
    }).join(' | ')} |`),
    '',
    `**Refreshes, as Keycloak counted them** (its events of \`${REALM}\`): ${fmt(refreshes.total)} refreshes of ${fmt(refreshes.sessions)} sessions, `
      + `${fmt(refreshes.mean, 1)} per session (at most ${refreshes.max}), ${fmt(refreshes.perMinute, 1)} per session-minute `
      + `(a token lives 10 s and is refreshed ${MARGIN} s before it ends: one refresh per 7 s of activity at most, ${fmt(60 / (10 - MARGIN), 1)} a minute); `
      + `the closest two refreshes of one session were ${fmt(refreshes.minGap, 1)} s apart, ${refreshes.close} pairs under 2 s `
      + '(each would be a second refresh of the same tokens).',
    '',
    `**Documented outage answers** (${outage.length}): ${Object.entries(outage.reduce((m, o) => { const k = `${o.status} during ${o.fault}`; m[k] = (m[k] ?? 0) + 1; return m; }, {})).map(([k, n]) => `${n}× ${k}`).join(', ') || 'none'}.`,
    `Event streams refused: ${Object.entries(streamEvents.refused).map(([s, n]) => `${n}× ${s}`).join(', ') || 'none'}.`,
    '',
    `**RSS of each replica** (MB; first / highest / last sample, every 5 s): ${REPLICAS.map((port) => {
      const mine = rss.filter((r) => r.port === port && Number.isFinite(r.mb)).map((r) => r.mb);
      return `:${port} ${fmt(mine[0], 1)} / ${fmt(Math.max(...mine), 1)} / ${fmt(mine[mine.length - 1], 1)}`;
    }).join('; ')} (a killed replica starts again from its first figure).`,
  ];
  if (spurious.length) lines.push('', 'Sign-outs nobody asked for:', ...spurious.slice(0, 20).map((s) => `- ${fmt(s.t, 1)} s ${s.user}: ${s.how}${inWindow.includes(s) ? ' (in the window of a replica killed mid-refresh: Keycloak refused the refresh that followed)' : ''}`));
  if (unexpected.length) lines.push('', 'Unexpected answers:', ...unexpected.slice(0, 20).map((u) => `- ${fmt(u.t, 1)} s ${u.user} ${u.kind}: ${u.status} ${u.detail.replace(/\s+/g, ' ')}`));
  if (signOuts.revived.length) lines.push('', 'Sign-outs that did not hold:', ...signOuts.revived.slice(0, 20).map((r) => `- ${r.user}: /api/v1/me answered ${r.status}`));
  if (writes.missing.length) lines.push('', 'Missing notes:', ...writes.missing.slice(0, 20).map((n) => `- ${n.id}: ${n.body}`));
  if (refreshes.all.length) lines.push('', `Keycloak's refresh errors: ${refreshes.errorDetails.join('; ')}`);
  lines.push('', `![Latency and errors over time, faults shaded](${CHART.split('/').pop()})`, `<!-- soak:${mode}:end -->`);
  return { text: lines.join('\n'), failed: goals.some(([, value, must]) => value !== must) };
}

function writeReport(text) {
  const mode = SENTINEL ? 'sentinel' : 'plain';
  const begin = `<!-- soak:${mode}:begin`;
  const end = `<!-- soak:${mode}:end -->`;
  const previous = existsSync(OUT) ? readFileSync(OUT, 'utf8') : '';
  const at = previous.indexOf(begin);
  const to = previous.indexOf(end);
  writeFileSync(OUT, at >= 0 && to > at
    ? `${previous.slice(0, at)}${text}${previous.slice(to + end.length)}`
    : `${previous}${previous && !previous.endsWith('\n') ? '\n' : ''}\n${text}\n`);
}

// ---------------------------------------------------------------- main

async function main() {
  const names = await ensureUsers();
  const users = names.map((n) => new User(n));
  log(`signing ${USERS} users in through Keycloak's form, 8 at a time`);
  let next = 0;
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (next < users.length) await users[next++].signIn();
  }));
  const signedInAt = Date.now();
  loadEndsAt = signedInAt + SECONDS * 1000;
  phase = 'steady';
  log(`everyone signed in; ${SECONDS} s of load with faults (longer if a kind of fault has not happened yet)`);
  await Promise.all([
    ...users.map(async (u) => { await sleep(between(0, 3000)); await u.run(); }),
    chaos(),
    sampleRss(),
  ]);
  const endAt = Date.now();
  log('load over; checking notes, sign-outs and Keycloak\'s refresh events');
  phase = 'check';
  // A sign-out taken while the store was down is finished by the app within seconds of its
  // return (retried 1, 2, 4… s apart).
  if (deferredSignOuts) await sleep(12_000);
  const writes = await checkWrites(users);
  const signOuts = await checkSignOuts(users);
  const refreshes = await keycloakRefreshes(signedInAt);
  const { text, failed } = report({ writes, signOuts, refreshes, signedInAt, endAt });
  await chart(CHART, `Chaos soak${SENTINEL ? ' (Sentinel)' : ''}: ${USERS} users, ${fmt((endAt - signedInAt) / 1000)} s of load, ${faults.length} faults`);
  writeReport(text);
  console.log(`\n${text}\n`);
  log(`wrote ${OUT} and ${CHART}`);
  if (failed) {
    log('GOALS MISSED (above)');
    process.exit(1);
  }
}

main().then(() => process.exit(0), (e) => { console.error('soak failed:', e); process.exit(1); });
