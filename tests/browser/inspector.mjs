// Drives the agent's inspector page in Debian's chromium (playwright-core, no browser download):
// open the page, send a request through the tunnel and see it arrive live, filter, open it,
// replay it and see the new entry linked to its original with the diff, replay it edited with
// a new header and see that the app got it. Nothing leaves loopback: every other request is
// blocked and counted. Run by tests/integration/test_inspector_browser.py with
//   INSPECTOR_URL=http://127.0.0.1:PORT  TUNNEL_PORT=PORT  TUNNEL_HOST=name.localhost
import http from 'node:http';
import { chromium } from 'playwright-core';

const inspector = process.env.INSPECTOR_URL;
const tunnelPort = Number(process.env.TUNNEL_PORT);
const tunnelHost = process.env.TUNNEL_HOST;
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
const TIMEOUT = 5000;

function through(path, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: tunnelPort, path, method: 'GET',
      headers: Object.assign({ Host: tunnelHost }, headers) }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

function step(name) {
  console.log(`[${(performance.now() / 1000).toFixed(2)}s] ${name}`);
}

const external = [];
const problems = [];
const browser = await chromium.launch({
  executablePath: chromiumPath,
  headless: true,
  args: process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : [],
});
try {
  const context = await browser.newContext();
  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if (['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname)) return route.continue();
    external.push(url.href);
    return route.abort();
  });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  page.on('console', (m) => { if (m.type() === 'error') problems.push('console: ' + m.text()); });

  step('open the page');
  const response = await page.goto(inspector + '/');
  const csp = response.headers()['content-security-policy'] || '';
  if (!csp.includes("default-src 'self'")) throw new Error('no strict CSP on the page: ' + csp);
  if (response.headers()['x-content-type-options'] !== 'nosniff') throw new Error('no nosniff');
  await page.locator('#status.live').waitFor();

  step('a request through the tunnel arrives live');
  const first = await through('/echo?browser=1');
  if (first.status !== 200) throw new Error('through the tunnel: ' + first.status);
  await through('/other/path');
  const row = page.locator('#list .row', { hasText: '/echo?browser=1' });
  await row.waitFor();
  await page.locator('#list .row', { hasText: '/other/path' }).waitFor();

  step('filter');
  await page.fill('#f-path', 'browser=1');
  await page.locator('#count', { hasText: /^1 matching request$/ }).waitFor();
  await page.fill('#f-status', '5xx');
  await page.locator('#count', { hasText: /^0 matching requests$/ }).waitFor();
  await page.fill('#f-status', '2xx');
  await page.locator('#count', { hasText: /^1 matching request$/ }).waitFor();

  step('open it');
  await row.click();
  await page.locator('#detail h2', { hasText: 'GET /echo?browser=1 \u2192 200 OK' }).waitFor();
  await page.locator('#detail pre.json', { hasText: '"path"' }).first().waitFor();
  const originalId = await row.getAttribute('data-id');

  step('replay it: a new entry linked to its original, with the diff');
  await page.click('#replay');
  await page.locator('#replay-of', { hasText: originalId }).waitFor();
  await page.locator('#diff h3', { hasText: 'Diff with the original ' + originalId }).waitFor();
  await page.locator('#count', { hasText: /^2 matching requests$/ }).waitFor();
  await page.locator('#list .row.replay').waitFor();

  step('edit and replay with a new header: the app gets it');
  await page.click('#replay-of');
  await page.locator('#detail h2', { hasText: 'GET /echo?browser=1' }).waitFor();
  await page.click('#edit');
  const headers = page.locator('#edit-headers');
  await headers.fill((await headers.inputValue()) + '\nX-Edited: from-the-page');
  await page.click('#edit-send');
  await page.locator('#replay-of', { hasText: originalId }).waitFor();
  // The app (the harness's /echo) answers with the headers it got.
  await page.locator('#detail pre.json', { hasText: 'from-the-page' }).first().waitFor();
  const api = await page.evaluate(async () =>
    (await fetch('/api/requests/http?header=X-Edited:from-the-page')).json());
  if (api.requests.length !== 1 || !api.requests[0].response.body.text.includes('from-the-page')) {
    throw new Error('the edited replay did not reach the app: ' + JSON.stringify(api).slice(0, 500));
  }

  step('keyboard: j/k move, Enter opens');
  await page.fill('#f-path', '');
  await page.fill('#f-status', '');
  await page.locator('#count', { hasText: /^[4-9] requests$/ }).waitFor();
  await page.focus('#list');
  await page.keyboard.press('Home');
  await page.keyboard.press('j');
  await page.keyboard.press('Enter');
  await page.locator('#list .row.current').waitFor();

  if (external.length) throw new Error('requests beyond loopback: ' + external.join(', '));
  if (problems.length) throw new Error(problems.join('\n'));
  step('passed');
} finally {
  await browser.close();
}
