// Shared helpers for the browser tests: start socketswarm on free ports with a fresh
// database, and launch Debian's chromium through playwright-core.
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const artifacts = join(process.cwd(), 'e2e', 'artifacts');
mkdirSync(artifacts, { recursive: true });

/** The binary under test: $SOCKETSWARM_BIN, else the debug build scripts/build.sh makes. */
export const serverBin = process.env.SOCKETSWARM_BIN || 'target/debug/socketswarm';

/** Starts the server (port 0, sandbox port 0) and resolves with its URLs once it listens.
 * `opts.bin` and `opts.cwd` start another copy of the binary, from another directory;
 * `opts.listen` listens on that address instead of 127.0.0.1:0. */
export async function startServer(extraArgs = [], opts = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'socketswarm-e2e-'));
  const bin = opts.bin || serverBin;
  // Plans may read LOADTEST_* from the server's environment (--allow-env): the token
  // tests keep their client secret there.
  const proc = spawn(bin, ['--listen', opts.listen || '127.0.0.1:0', '--sandbox', '127.0.0.1:0', '--sandbox-tls', '127.0.0.1:0', '--database', join(dir, 'e2e.db'), '--log', 'info', '--allow-env', 'LOADTEST_*', ...extraArgs], {
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: opts.cwd,
    env: { ...process.env, NO_COLOR: '1', RUST_LOG: 'info', LOADTEST_CLIENT_SECRET: 'e2e-sandbox-secret' },
  });
  let log = '';
  const found = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${log}`)), 30000);
    const onData = (d) => {
      log += d.toString();
      const app = log.match(/socketswarm on (http:\/\/[0-9.:]+)/);
      const sb = log.match(/sandbox target on (ws:\/\/[0-9.:]+)\/echo/);
      if (app && sb) { clearTimeout(timer); resolve({ base: app[1], sandbox: sb[1] }); }
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    proc.on('exit', (code) => reject(new Error(`server exited with ${code}:\n${log}`)));
  });
  return { ...found, proc, stop: () => proc.kill('SIGTERM'), log: () => log };
}

/** Every Content-Security-Policy refusal any page of any browser here reported. */
export const cspViolations = [];

/** Every uncaught script error (a wasm panic among them) any page of any browser here hit. */
export const pageErrors = [];

/** A headless chromium with a fresh profile; its pages report CSP refusals to
 * `cspViolations` and uncaught errors to `pageErrors`. */
export async function browser(opts = {}) {
  const profile = mkdtempSync(join(tmpdir(), 'socketswarm-chromium-'));
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    ...opts,
  });
  const watch = (page) => {
    page.on('console', (msg) => {
      if (/Content Security Policy/i.test(msg.text())) cspViolations.push(`${page.url()}: ${msg.text()}`);
      if (/panicked at/.test(msg.text())) pageErrors.push(`${page.url()}: ${msg.text()}`);
    });
    page.on('pageerror', (e) => pageErrors.push(`${page.url()}: ${e.message}`));
  };
  ctx.pages().forEach(watch);
  ctx.on('page', watch);
  return ctx;
}

/** A TCP port free right now on 127.0.0.1 (for a server that must know its port in advance). */
export async function freePort() {
  const { createServer } = await import('node:net');
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

/** JSON API helper. */
export async function api(base, path, init = {}) {
  const res = await fetch(base + path, { headers: { 'content-type': 'application/json' }, ...init });
  const text = await res.text();
  let body; try { body = JSON.parse(text); } catch { body = text; }
  return { status: res.status, body };
}
