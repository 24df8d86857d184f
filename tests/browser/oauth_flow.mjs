// tests/browser/oauth_flow.mjs — "Sign in with Google/Apple" end to end in a real browser
// (issue 8, contract §2.1): Debian's chromium, driven with playwright-core, signs in through
// inkletd and the fake providers (tests/fakes/fake_oidc.py), and a page on the portal's
// development origin uses the tokens with a cross-origin fetch, so CORS is judged by the browser.
//
//   INKLET_BASE=http://127.0.0.1:PORT FAKE_OIDC_BASE=http://127.0.0.1:PORT2 node oauth_flow.mjs
//
// tests/browser/run.sh starts inkletd and the fake with the configuration this expects
// (CORS_ORIGINS=http://localhost:5173, OAUTH_WEB_REDIRECT=http://localhost:5173/auth/callback).
// Optional: INKLET_BROWSER_EXECUTABLE (/usr/bin/chromium), INKLET_BROWSER_TIMEOUT_MS (30000 per
// test). Output is cmocka's text format (scripts/lib/cmocka-count.awk counts it); the exit status
// is non-zero when a test failed.
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { chromium } from 'playwright-core';

const INKLET_BASE = (process.env.INKLET_BASE || '').replace(/\/+$/, '');
const FAKE_OIDC_BASE = (process.env.FAKE_OIDC_BASE || '').replace(/\/+$/, '');
const EXECUTABLE = process.env.INKLET_BROWSER_EXECUTABLE || '/usr/bin/chromium';
const TEST_TIMEOUT_MS = Number(process.env.INKLET_BROWSER_TIMEOUT_MS || 30000);
// each browser action gives up before the test's timeout, so its own message (what it waited
// for) is the one reported
const ACTION_TIMEOUT_MS = Math.max(1000, Math.round(TEST_TIMEOUT_MS * 0.8));

// The portal's development origin: the one origin in inkletd's CORS_ORIGINS and the host of its
// OAUTH_WEB_REDIRECT. The second origin is in neither (the CORS negative control).
const PORTAL_PORT = 5173;
const PORTAL_ORIGIN = `http://localhost:${PORTAL_PORT}`;
const FOREIGN_PORT = 5174;
const FOREIGN_ORIGIN = `http://127.0.0.1:${FOREIGN_PORT}`;
const CALLBACK_PATH = '/auth/callback';

const RUN_ID = `${Date.now().toString(36)}${randomBytes(4).toString('hex')}`;

// ------------------------------------------------------------------ cmocka-style output
// cmocka-count.awk matches its summary lines anywhere in a line, so text we echo from pages or
// errors must not look like one: brackets become parentheses there.
const defang = (s) => String(s).replace(/\[/g, '(').replace(/\]/g, ')');
const out = (line) => process.stdout.write(`${line}\n`);
const detail = (label, text) => {
  const lines = defang(text).split('\n');
  out(`    ${label}: ${lines[0]}`);
  for (const l of lines.slice(1)) out(`    | ${l}`);
};

class AssertionError extends Error {}
function check(cond, message) {
  if (!cond) throw new AssertionError(message);
}
function checkEq(actual, expected, what) {
  check(
    actual === expected,
    `${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`,
  );
}

// ------------------------------------------------------------------ the portal's pages
const html = (title, body) =>
  `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${title}</title></head>` +
  `<body>${body}</body></html>`;

// JSON inside <script>: "<" escaped so no value can close the element
const scriptJson = (v) => JSON.stringify(v).replace(/</g, '\\u003c');

function startPage() {
  return html(
    'Inklet portal (test)',
    '<h1>Inklet</h1>' +
      `<p><a id="google" href="${INKLET_BASE}/auth/oauth/google?client=web">Sign in with Google</a></p>` +
      `<p><a id="apple" href="${INKLET_BASE}/auth/oauth/apple?client=web">Sign in with Apple</a></p>`,
  );
}

// What the portal's callback page does: take the tokens (or the error) from the query and call
// the API with the access token. Authorization is not a CORS-safelisted header, so the browser
// sends a preflight first. The outcome goes into <pre id="result"> and body[data-state=done].
function callbackPage() {
  const script = `
const INKLET_BASE = ${scriptJson(INKLET_BASE)};
const q = new URLSearchParams(location.search);
const accessToken = q.get('accessToken'), refreshToken = q.get('refreshToken'), error = q.get('error');
const pre = document.getElementById('result');
function done(r) {
  pre.textContent = JSON.stringify(r, null, 2);
  document.body.dataset.state = 'done';
}
if (error !== null || accessToken === null) {
  document.getElementById('title').textContent = 'Sign-in failed';
  done({ fetched: false, redirectError: error });
} else {
  fetch(INKLET_BASE + '/auth/me', { headers: { Authorization: 'Bearer ' + accessToken } })
    .then(async (res) => {
      const text = await res.text();
      let body = null;
      try { body = JSON.parse(text); } catch (e) { /* reported as text */ }
      if (res.ok && body) document.getElementById('title').textContent = 'Signed in as ' + body.email;
      done({ fetched: true, status: res.status, type: res.type, body,
             text: body === null ? text : undefined });
    })
    .catch((e) => done({ fetched: false, fetchError: String(e), fetchErrorName: e && e.name }));
}`;
  return html(
    'Inklet sign-in callback (test)',
    `<h1 id="title">Signing in…</h1><pre id="result"></pre><script>${script}</script>`,
  );
}

function handle(req, res) {
  const path = new URL(req.url, 'http://x').pathname;
  const headers = { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' };
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, headers).end(html('405', 'method not allowed'));
  } else if (path === '/') {
    res.writeHead(200, headers).end(startPage());
  } else if (path === CALLBACK_PATH) {
    res.writeHead(200, headers).end(callbackPage());
  } else if (path === '/favicon.ico') {
    res.writeHead(204).end();
  } else {
    res.writeHead(404, headers).end(html('404', 'not found'));
  }
}

// listen(PORT, HOST, optional): a server for the pages on HOST:PORT. optional: a HOST this
// machine lacks (no IPv6) is no error, the server is then null.
function listen(port, host, optional = false) {
  return new Promise((resolve, reject) => {
    const server = http.createServer(handle);
    const where = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
    server.once('error', (e) => {
      if (optional && (e.code === 'EADDRNOTAVAIL' || e.code === 'EAFNOSUPPORT')) resolve(null);
      else
        reject(
          new Error(
            e.code === 'EADDRINUSE'
              ? `${where} is already in use (a portal dev server? ` +
                  `\`ss -ltnp 'sport = :${port}'\` shows who); the test needs this port: ` +
                  "inkletd's CORS_ORIGINS and OAUTH_WEB_REDIRECT name it"
              : `cannot listen on ${where}: ${e.message}`,
          ),
        );
    });
    server.listen({ port, host, ipv6Only: host === '::1' }, () => resolve(server));
  });
}

// The portal origin is "localhost", which the browser may reach on ::1 as well as 127.0.0.1:
// both are ours, so that no other server on [::1]:5173 (a dev server) can answer instead.
async function startServers(servers) {
  servers.push(await listen(PORTAL_PORT, '127.0.0.1'));
  const v6 = await listen(PORTAL_PORT, '::1', true);
  if (v6) servers.push(v6);
  servers.push(await listen(FOREIGN_PORT, '127.0.0.1'));
}

// ------------------------------------------------------------------ the fake providers
async function fakeControl(path, body) {
  const res = await fetch(`${FAKE_OIDC_BASE}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  check(res.status === 200, `fake ${path}: HTTP ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

let userSeq = 0;
// A user nobody has signed in as before: a new account on every run.
async function newFakeUser(provider) {
  userSeq += 1;
  const tag = `${RUN_ID}${userSeq}`;
  const sub =
    provider === 'google'
      ? `1${BigInt(`0x${randomBytes(8).toString('hex')}`).toString().padStart(20, '0')}`
      : `00${userSeq}${randomBytes(2).toString('hex')}.${randomBytes(16).toString('hex')}.${1000 + userSeq}`;
  const user = { provider, sub, email: `e2e-${provider}-${tag}@example.com`, name: 'Browser Tester' };
  await fakeControl('/_fake/user', { ...user, email_verified: true });
  return user;
}

// ------------------------------------------------------------------ browser helpers
let browser = null;

// A fresh context (no cookies, no cache) whose first page records what happened to it: the
// main-frame navigations, console errors, page errors, and the requests the browser sent to
// inkletd (CORS preflights included) as Chromium's DevTools protocol reports them.
async function openPage(t) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(ACTION_TIMEOUT_MS);
  const rec = { navigations: [], console: [], pageErrors: [], apiRequests: [] };
  page.on('framenavigated', (f) => f === page.mainFrame() && rec.navigations.push(f.url()));
  page.on('console', (m) => m.type() === 'error' && rec.console.push(m.text()));
  page.on('pageerror', (e) => rec.pageErrors.push(String(e)));
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  const byId = new Map();
  cdp.on('Network.requestWillBeSent', (e) => {
    if (!e.request.url.startsWith(`${INKLET_BASE}/`)) return;
    const r = {
      method: e.request.method,
      url: e.request.url,
      preflight: e.initiator?.type === 'preflight',
      origin: e.request.headers.Origin ?? e.request.headers.origin ?? null,
      status: null,
    };
    byId.set(e.requestId, r);
    rec.apiRequests.push(r);
  });
  cdp.on('Network.responseReceived', (e) => {
    const r = byId.get(e.requestId);
    if (r) r.status = e.response.status;
  });
  t.pages.push(page);
  t.rec = rec;
  return { context, page, rec };
}

async function callbackOutcome(page) {
  await page.waitForSelector('body[data-state="done"]', { state: 'attached' });
  const text = await page.textContent('#result');
  return JSON.parse(text);
}

const isCallbackUrl = (u) => u.origin === PORTAL_ORIGIN && u.pathname === CALLBACK_PATH;

// From the portal's start page through the provider back to the callback page.
async function signInFromPortal(t, provider) {
  const { page, rec } = await openPage(t);
  await page.goto(`${PORTAL_ORIGIN}/`);
  await page.click(`text=Sign in with ${provider === 'google' ? 'Google' : 'Apple'}`);
  await page.waitForURL(isCallbackUrl, { waitUntil: 'load' });
  const url = new URL(page.url());
  const outcome = await callbackOutcome(page);
  return { page, rec, url, outcome };
}

function checkTokens(url) {
  const q = url.searchParams;
  checkEq(q.get('error'), null, 'error in the callback URL');
  check(q.get('accessToken'), `no accessToken in the callback URL ${url}`);
  check(q.get('refreshToken'), `no refreshToken in the callback URL ${url}`);
  checkEq(q.get('accessToken').split('.').length, 3, 'JWT segments of the accessToken');
}

function checkMe(outcome, provider, user) {
  check(outcome.fetched, `the page's fetch of /auth/me failed: ${outcome.fetchError}`);
  checkEq(outcome.status, 200, 'status of the in-page GET /auth/me');
  const me = outcome.body;
  check(me && Array.isArray(me.providers), `/auth/me has no providers array: ${JSON.stringify(me)}`);
  check(
    me.providers.includes(provider),
    `/auth/me providers ${JSON.stringify(me.providers)} lack "${provider}"`,
  );
  checkEq(me.email, user.email, '/auth/me email');
}

// ------------------------------------------------------------------ the tests
const results = {}; // what one test leaves for a later one

const tests = [
  {
    name: 'google_web_flow',
    async run(t) {
      const user = await newFakeUser('google');
      const r = await signInFromPortal(t, 'google');
      results.google = r; // cors_preflight_judged_by_browser looks at this page, pass or fail
      checkTokens(r.url);
      checkMe(r.outcome, 'google', user);
    },
  },
  {
    name: 'apple_form_post_flow',
    async run(t) {
      const user = await newFakeUser('apple');
      const r = await signInFromPortal(t, 'apple');
      // the browser reached the callback by POSTing the fake's form to inkletd, not by a redirect
      const callback = `${INKLET_BASE}/auth/oauth/apple/callback`;
      check(
        r.rec.apiRequests.some((q) => q.method === 'POST' && q.url.split('?')[0] === callback),
        `the browser sent no POST to ${callback}`,
      );
      checkTokens(r.url);
      checkMe(r.outcome, 'apple', user);
    },
  },
  {
    name: 'denied_flow',
    async run(t) {
      await newFakeUser('google');
      await fakeControl('/_fake/deny', { provider: 'google', deny: true });
      t.cleanup.push(() => fakeControl('/_fake/deny', { provider: 'google', deny: false }));
      const r = await signInFromPortal(t, 'google');
      checkEq(r.url.href, `${PORTAL_ORIGIN}${CALLBACK_PATH}?error=oauth_failed`, 'final URL');
      checkEq(r.url.searchParams.get('accessToken'), null, 'accessToken after a denial');
      checkEq(r.url.searchParams.get('refreshToken'), null, 'refreshToken after a denial');
      checkEq(r.outcome.fetched, false, 'the page called the API without tokens');
      checkEq(r.outcome.redirectError, 'oauth_failed', 'error the page read');
    },
  },
  {
    name: 'cors_preflight_judged_by_browser',
    async run(t) {
      // allowed origin: the callback page of google_web_flow, whose fetch the browser let through
      const a = results.google;
      check(a, 'google_web_flow did not reach the callback page (see its failure)');
      t.pages.push(a.page);
      t.rec = a.rec;
      checkEq(a.outcome.fetched, true, 'the fetch from the portal origin resolved');
      checkEq(a.outcome.type, 'cors', 'response type of the fetch from the portal origin');
      checkEq(a.outcome.status, 200, 'status of the fetch from the portal origin');
      const me = `${INKLET_BASE}/auth/me`;
      const pre = a.rec.apiRequests.find((q) => q.preflight && q.url === me);
      check(pre, `no CORS preflight for ${me}; requests: ${JSON.stringify(a.rec.apiRequests)}`);
      checkEq(pre.method, 'OPTIONS', 'method of the preflight');
      checkEq(pre.origin, PORTAL_ORIGIN, 'Origin of the preflight');

      // negative control: the same page with the same, valid token on an origin not in
      // CORS_ORIGINS; the browser must refuse to hand the response to the page
      const { page, rec } = await openPage(t);
      const foreign = `${FOREIGN_ORIGIN}${CALLBACK_PATH}${a.url.search}`;
      await page.goto(foreign);
      const outcome = await callbackOutcome(page);
      checkEq(outcome.fetched, false, 'the fetch from a foreign origin resolved');
      checkEq(outcome.fetchErrorName, 'TypeError', 'error of the fetch from a foreign origin');
      check(
        rec.console.some((m) =>
          m.includes(`from origin '${FOREIGN_ORIGIN}' has been blocked by CORS policy`),
        ),
        `no "blocked by CORS policy" console error; console: ${JSON.stringify(rec.console)}`,
      );
      check(
        rec.apiRequests.some((q) => q.preflight && q.url === me && q.origin === FOREIGN_ORIGIN),
        `the browser sent no preflight from ${FOREIGN_ORIGIN}; requests: ${JSON.stringify(rec.apiRequests)}`,
      );
      // the token itself was good: the browser, not inkletd's authentication, refused
      const token = a.url.searchParams.get('accessToken');
      const direct = await fetch(me, { headers: { Authorization: `Bearer ${token}` } });
      checkEq(direct.status, 200, 'status of GET /auth/me with the same token outside a browser');
    },
  },
];

async function pageText(page) {
  try {
    return await page.evaluate(() => document.body?.innerText ?? '', undefined);
  } catch (e) {
    return `(unavailable: ${e.message.split('\n')[0]})`;
  }
}

// an assertion's message; for anything else (a Playwright timeout, a bug here) also where in
// this file it happened
function describe(err) {
  if (err instanceof AssertionError) return err.message;
  if (!(err instanceof Error)) return String(err);
  const here = (err.stack || '').split('\n').find((l) => l.includes('oauth_flow.mjs'));
  return `${err.name}: ${err.message.trim()}${here ? `\n${here.trim()}` : ''}`;
}

async function reportFailure(t, err) {
  out(`[  ERROR   ] --- ${defang(describe(err))}`);
  const page = t.pages[t.pages.length - 1];
  if (page && !page.isClosed()) {
    detail('page URL', page.url());
    detail('page text', await Promise.race([pageText(page), sleep(5000).then(() => '(no answer in 5 s)')]));
  } else {
    detail('page', 'none was open');
  }
  if (t.rec) {
    detail('navigations', t.rec.navigations.join('\n') || '(none)');
    if (t.rec.console.length) detail('console errors', t.rec.console.join('\n'));
    if (t.rec.pageErrors.length) detail('page errors', t.rec.pageErrors.join('\n'));
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function runTest(test) {
  const t = { pages: [], rec: null, cleanup: [] };
  out(`[ RUN      ] ${test.name}`);
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(
      () => reject(new AssertionError(`timed out after ${TEST_TIMEOUT_MS / 1000} s`)),
      TEST_TIMEOUT_MS,
    );
  });
  let err = null;
  const body = test.run(t);
  try {
    await Promise.race([body, timeout]);
  } catch (e) {
    err = e;
    body.catch(() => {}); // after a timeout the body may still reject later
  } finally {
    clearTimeout(timer);
  }
  for (const f of t.cleanup) {
    try {
      await f();
    } catch (e) {
      err = err || e;
    }
  }
  if (err) await reportFailure(t, err);
  // a later test may keep looking at a page (google_web_flow's callback page)
  for (const page of t.pages)
    if (!Object.values(results).some((r) => r.page === page)) await page.context().close().catch(() => {});
  out(err ? `[  FAILED  ] ${test.name}` : `[       OK ] ${test.name}`);
  return !err;
}

function groupFailure(which, message) {
  out(`[  ERROR   ] --- ${defang(message)}`);
  out(`[  FAILED  ] GROUP ${which}`);
}

async function main() {
  out(`[==========] Running ${tests.length} test(s).`);
  const servers = [];
  try {
    for (const [name, v] of [['INKLET_BASE', INKLET_BASE], ['FAKE_OIDC_BASE', FAKE_OIDC_BASE]])
      check(/^https?:\/\/[^/]+$/.test(v), `${name} must be http://host:port, got "${v}"`);
    await startServers(servers);
    await fakeControl('/_fake/health');
    browser = await chromium.launch({
      executablePath: EXECUTABLE,
      headless: true,
      // Chromium refuses to start its sandbox as root (our CI runs as root); Playwright already
      // adds --no-sandbox unless chromiumSandbox is set, this keeps it explicit
      args: ['--no-sandbox'],
      timeout: TEST_TIMEOUT_MS,
    });
  } catch (e) {
    groupFailure('SETUP', e.message);
    out('[==========] 0 test(s) run.');
    out('[  PASSED  ] 0 test(s).');
    for (const s of servers) s.close();
    if (browser) await browser.close().catch(() => {});
    return 1;
  }

  const failed = [];
  for (const test of tests) if (!(await runTest(test))) failed.push(test.name);

  let teardown = true;
  try {
    await browser.close();
  } catch (e) {
    groupFailure('TEARDOWN', `closing the browser: ${e.message}`);
    teardown = false;
  }
  for (const s of servers) {
    s.closeAllConnections();
    s.close();
  }

  out(`[==========] ${tests.length} test(s) run.`);
  out(`[  PASSED  ] ${tests.length - failed.length} test(s).`);
  if (failed.length) {
    out(`[  FAILED  ] ${failed.length} test(s), listed below:`);
    for (const n of failed) out(`[  FAILED  ] ${n}`);
    out('');
    out(` ${failed.length} FAILED TEST(S)`);
  }
  return failed.length || !teardown ? 1 : 0;
}

process.exitCode = await main();
