import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';

/**
 * Where the evaluation record is kept when evaluation.stateDir is not set:
 * outside any data directory, so a new data directory on the same host
 * continues the same evaluation. A server run as root keeps it in
 * /var/lib/floatd-evaluation; any other user in $XDG_STATE_HOME/floatd
 * (~/.local/state/floatd when XDG_STATE_HOME is unset or relative).
 */
export function defaultEvaluationStateDir(env: Readonly<Record<string, string | undefined>>): string {
  if (typeof process.getuid === 'function' && process.getuid() === 0) return '/var/lib/floatd-evaluation';
  const xdg = env['XDG_STATE_HOME'];
  const base = xdg !== undefined && isAbsolute(xdg) ? xdg : join(env['HOME'] !== undefined && isAbsolute(env['HOME']) ? env['HOME'] : homedir(), '.local', 'state');
  return join(base, 'floatd');
}
