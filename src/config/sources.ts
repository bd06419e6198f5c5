import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { FloatdError } from '../domain/errors.js';
import { didYouMean } from '../domain/suggest.js';
import { jsonSyntaxProblem } from './json-syntax.js';
import type { Raw } from './parsers.js';
import { KNOWN_NAMES, SECTIONS, SETTING_NAMES, SETTING_VARIABLES, settingNamed, specOf, type SettingName } from './settings.js';

export interface ConfigSources {
  /** Path of a JSON config file (`--config`, or FLOATD_CONFIG). */
  readonly configFile?: string;
  readonly env?: Record<string, string | undefined>;
  /** Values from command-line flags, by setting name (canonical or earlier). */
  readonly flags?: Record<string, unknown>;
  readonly cwd?: string;
}

/** Environment variables floatd reads besides the settings' own. */
const OTHER_ENVIRONMENT = ['FLOATD_CONFIG', 'FLOATD_DEBUG'];

/** `FLOATD_*` variables that name no setting, each as a warning with the closest known name. */
export function unknownEnvironment(env: Record<string, string | undefined>): string[] {
  const known = new Set([...SETTING_VARIABLES, ...OTHER_ENVIRONMENT]);
  return Object.keys(env)
    .filter((name) => name.startsWith('FLOATD_') && !known.has(name))
    .sort()
    .map((name) => `environment variable ${name} names no floatd setting and is ignored${didYouMean(name, known)}`);
}

function isSection(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/**
 * The settings a config file's object gives, by their names as written:
 * sections are flattened ({"tcp": {"backpressure": {"totalBytes": 1}}} is
 * tcp.backpressure.totalBytes). A name that is no setting is refused with the closest one.
 */
function flatten(obj: Record<string, unknown>, file: string, prefix = '', out: [string, unknown][] = []): [string, unknown][] {
  for (const [key, value] of Object.entries(obj)) {
    if (prefix === '' && (key === '$schema' || key === '//' || key.startsWith('_comment'))) continue;
    const name = prefix === '' ? key : `${prefix}.${key}`;
    if (settingNamed(name) !== undefined) out.push([name, value]);
    else if (isSection(value) && (prefix === '' || SECTIONS.has(name))) flatten(value, file, name, out);
    else throw new FloatdError('CONFIG_INVALID', `${file}: unknown setting "${name}"${didYouMean(name, KNOWN_NAMES)}`, { setting: name });
  }
  return out;
}

function readConfigFile(file: string): [string, unknown][] {
  let parsed: unknown;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new FloatdError('CONFIG_INVALID', `${file}: cannot read the config file: ${(err as Error).message}`);
  }
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    const p = jsonSyntaxProblem(text, err as Error);
    throw new FloatdError('CONFIG_INVALID', `${file}: line ${p.line}, column ${p.column}: the config file is not valid JSON: ${p.reason}`);
  }
  if (!isSection(parsed)) throw new FloatdError('CONFIG_INVALID', `${file}: the config file must hold one JSON object`);
  return flatten(parsed, file);
}

/** A setting one source gives twice, under its name and its earlier one: refused, naming both. */
function givenTwice(where: string, first: string, second: string, setting: SettingName): FloatdError {
  return new FloatdError('CONFIG_INVALID', `${where} sets both ${first} and ${second}, which are one setting (${setting}); keep one`, { setting });
}

/** One source's values by setting; names are checked already. */
function bySetting(given: readonly [string, unknown][], where: string, raw: (name: string, value: unknown) => Raw): Map<SettingName, Raw> {
  const out = new Map<SettingName, Raw>();
  for (const [name, value] of given) {
    const setting = settingNamed(name)!;
    const earlier = out.get(setting);
    if (earlier !== undefined) throw givenTwice(where, `"${earlier.name}"`, `"${name}"`, setting);
    out.set(setting, raw(name, value));
  }
  return out;
}

/** An environment variable that is set counts; an empty one does not. */
const isSet = (v: string | undefined): v is string => v !== undefined && v !== '';

/** The settings FLOATD_* variables give, under their variable or the earlier one (not both). */
function fromEnvironment(env: Record<string, string | undefined>, cwd: string): Map<SettingName, Raw> {
  const out = new Map<SettingName, Raw>();
  for (const setting of SETTING_NAMES) {
    const { env: variable, envAlias, alias } = specOf(setting);
    const value = env[variable];
    const earlier = envAlias === undefined ? undefined : env[envAlias];
    if (isSet(value) && isSet(earlier)) throw givenTwice('the environment', envAlias!, variable, setting);
    if (isSet(value)) out.set(setting, { value, source: `environment ${variable}`, base: cwd, name: setting });
    else if (isSet(earlier)) out.set(setting, { value: earlier, source: `environment ${envAlias}`, base: cwd, name: alias ?? setting });
  }
  return out;
}

/** The settings flags give, by either name (not both); an unknown name is refused. */
function fromFlags(flags: Record<string, unknown>, cwd: string): Map<SettingName, Raw> {
  const given: [string, unknown][] = [];
  for (const [name, value] of Object.entries(flags)) {
    if (settingNamed(name) === undefined) throw new FloatdError('CONFIG_INVALID', `unknown setting "${name}"`, { setting: name });
    if (value !== undefined) given.push([name, value]);
  }
  return bySetting(given, 'the command line', (name, value) => ({ value, source: 'command line', base: cwd, name }));
}

/** Every value the sources give, by setting: the config file, then FLOATD_* variables, then flags; a later source wins. */
export function readSources(sources: ConfigSources, cwd: string, env: Record<string, string | undefined>): Map<SettingName, Raw> {
  const raws = new Map<SettingName, Raw>();
  const configFile = sources.configFile ?? env['FLOATD_CONFIG'];
  if (configFile !== undefined && configFile !== '') {
    const file = resolve(cwd, configFile);
    const fromFile = bySetting(readConfigFile(file), file, (name, value) => ({ value, source: file, base: dirname(file), name }));
    for (const [setting, raw] of fromFile) raws.set(setting, raw);
  }
  for (const [setting, raw] of fromEnvironment(env, cwd)) raws.set(setting, raw);
  for (const [setting, raw] of fromFlags(sources.flags ?? {}, cwd)) raws.set(setting, raw);
  return raws;
}
