import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Io } from '../../src/cli/common.js';
import { runCli } from '../../src/cli/run-cli.js';
import { runVendorCli } from '../../packages/vendor/src/run-vendor-cli.js';
import { evaluationStateDir } from './helpers.js';

/** The built CLI (npm install builds it). */
export const MAIN = join(import.meta.dirname, '..', '..', 'dist', 'src', 'main.js');
/** The built floatd-vendor, the vendor's tools (npm install builds it too). */
export const VENDOR_MAIN = join(import.meta.dirname, '..', '..', 'packages', 'vendor', 'dist', 'packages', 'vendor', 'src', 'main.js');
const children: ChildProcess[] = [];
/**
 * The environment of every floatd the tests run: the web endpoint on a free port, not the default
 * 8990, so servers started side by side never collide; the evaluation record in the test's own
 * folder (read when the environment is used), never the real home's.
 */
export const CHILD_ENV: Record<string, string> = {
  PATH: process.env['PATH'] ?? '',
  FLOATD_HTTP_LISTEN: '127.0.0.1:0',
  get FLOATD_EVALUATION_STATE(): string {
    return evaluationStateDir();
  },
};
// Children started with an environment of their own inherit this one: never the real home's record either.
if (process.env['FLOATD_EVALUATION_STATE'] === undefined) {
  const dir = mkdtempSync(join(tmpdir(), 'floatd-evaluation-'));
  process.env['FLOATD_EVALUATION_STATE'] = dir;
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
}
/** Children whose output streams are closed too (so everything they wrote has been read). */
const closed = new WeakSet<ChildProcess>();

export function requireBuild(): void {
  for (const main of [MAIN, VENDOR_MAIN]) if (!existsSync(main)) throw new Error(`${main} is missing: run npm run build (npm install does it)`);
}

/** Kills every process `serve` or `spawnFloatd` started that is still running. */
export function killChildren(): void {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}

/** Runs the built CLI to completion. */
export function floatd(args: string[], input?: string, cwd?: string) {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', input, cwd, env: CHILD_ENV });
  return { code: r.status, out: r.stdout.trim(), err: r.stderr.trim() };
}

/**
 * Runs one CLI command in this process, as the built CLI would run it (the same environment as
 * `floatd`, its output trimmed): no process to start, so it costs milliseconds. Commands that
 * read stdin, wait for signals or must show a real exit status go through `floatd` instead.
 */
export async function cli(args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): Promise<{ code: number; out: string; err: string }> {
  return inProcess(runCli, args, opts);
}

/** Runs one floatd-vendor command in this process, as `cli` runs floatd's. */
export async function vendorCli(args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): Promise<{ code: number; out: string; err: string }> {
  return inProcess(runVendorCli, args, opts);
}

async function inProcess(
  run: (argv: readonly string[], io: Io) => Promise<number>,
  args: string[],
  opts: { cwd?: string; env?: Record<string, string> },
): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const line = (text: string) => (text.endsWith('\n') ? text : `${text}\n`);
  const io: Io = {
    out: (text) => void (out += line(text)),
    err: (text) => void (err += line(text)),
    env: { ...CHILD_ENV, ...opts.env },
    cwd: opts.cwd ?? process.cwd(),
  };
  const code = await run(args, io);
  return { code, out: out.trim(), err: err.trim() };
}

/** Runs the built floatd-vendor to completion. */
export function floatdVendor(args: string[], input?: string, cwd?: string) {
  const r = spawnSync(process.execPath, [VENDOR_MAIN, ...args], { encoding: 'utf8', input, cwd, env: CHILD_ENV });
  return { code: r.status, out: r.stdout.trim(), err: r.stderr.trim() };
}

/** Starts the built CLI in the background; `killChildren` cleans up. */
export function spawnFloatd(args: string[], env: Record<string, string> = {}): ChildProcess {
  return spawnBuilt(MAIN, args, env);
}

/** Starts the built floatd-vendor in the background; `killChildren` cleans up. */
export function spawnVendor(args: string[], env: Record<string, string> = {}): ChildProcess {
  return spawnBuilt(VENDOR_MAIN, args, env);
}

function spawnBuilt(main: string, args: string[], env: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, [main, ...args], { env: { ...CHILD_ENV, ...env } });
  children.push(child);
  child.once('close', () => closed.add(child));
  return child;
}

/** Starts `floatd serve` and resolves with the port it reports in its JSON log. */
export function serve(args: string[]): Promise<{ child: ChildProcess; port: number; log: () => string }> {
  const child = spawnFloatd(['serve', '--listen', '127.0.0.1:0', ...args]);
  let out = '';
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /"msg":"listening"/.test(out) ? /"port":(\d+)[^\n]*"msg":"listening"/.exec(out) : null;
      if (m) resolve({ child, port: Number(m[1]), log: () => out });
    });
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    child.on('exit', (code) => reject(new Error(`floatd serve exited with ${code}: ${out}`)));
  });
}

/** Resolves when the child has exited and its output is all read. */
export function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve) => {
    if (closed.has(child)) resolve({ code: child.exitCode, signal: child.signalCode });
    else child.once('close', (code, signal) => resolve({ code, signal }));
  });
}

/** Runs the built CLI without blocking this process (needed when the server runs in-process). */
export async function floatdAsync(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const child = spawnFloatd(args);
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const { code } = await exited(child);
  return { code, out: out.trim(), err: err.trim() };
}
