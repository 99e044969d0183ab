// Loading the configuration: one YAML file plus CUSTOMS_* environment overrides, validated by
// config/schema.ts into a frozen Config with its secrets resolved. Every error names where it is
// (file:line:column and path, or the variable) and never the value of a secret.

import { dirname, resolve } from 'node:path'
import { LineCounter, parseDocument } from 'yaml'
import { z } from 'zod'
import { readFailure, readTextBounded } from '../files.js'
import { configSchema } from './schema.js'
import type { Config, ParsedConfig, SecretRef } from './schema.js'
import { flattenZodIssues, lineColumn, locate, unwrap, zodMessage } from './yaml-positions.js'
import type { Path, RawIssue, Schema, Wording } from './yaml-positions.js'

export type Env = Readonly<Record<string, string | undefined>>

export interface ConfigIssue {
  /** Where in the configuration: `upstreams[1].url`; '' for the file as a whole. */
  readonly path: string
  readonly message: string
  readonly line?: number
  readonly column?: number
  readonly file?: string
  /** The environment variable the offending value came from. */
  readonly env?: string
}

/** Why a configuration was refused; the message has one positioned line per issue. */
export class ConfigError extends Error {
  readonly issues: readonly ConfigIssue[]

  constructor(issues: readonly ConfigIssue[]) {
    super(issues.map(formatIssue).join('\n'))
    this.name = 'ConfigError'
    this.issues = issues
  }
}

/**
 * The most a config file may hold. A real one is a few KiB; inline PEM blocks (trust keys) add a
 * few more. Past this it is a wrong path, not a large config.
 */
export const MAX_CONFIG_FILE_BYTES = 4 * 1024 * 1024
/** The most a secret file (a password, a token) may hold. */
export const MAX_SECRET_FILE_BYTES = 64 * 1024

/** One issue as one line: `customs.yaml:12:7 upstreams[1].url: must be …` or `CUSTOMS_X: …`. */
export function formatIssue(issue: ConfigIssue): string {
  if (issue.env !== undefined) return `${issue.env}: ${issue.message}`
  const where = [issue.file, issue.line, issue.column].filter((p) => p !== undefined).join(':')
  const prefix = [where, issue.path].filter((p) => p !== '').join(' ')
  return prefix === '' ? issue.message : `${prefix}: ${issue.message}`
}

export interface LoadOptions {
  /** The configuration file; without one, the configuration is the defaults and the environment. */
  file?: string
  /** Where CUSTOMS_* overrides and `{ env }` secrets are read; main.ts passes process.env. */
  env?: Env
}

/**
 * Parses and validates a configuration text with the environment overrides applied. Secrets are
 * not resolved here (that needs I/O): a password may still be a `{ value | file | env }` reference.
 * Throws ConfigError.
 */
export function parseConfig(text: string, options: LoadOptions = {}): ParsedConfig {
  return parse(text, options).config
}

/**
 * Reads, parses and validates the configuration, resolves every secret to its string, and returns
 * the result deep-frozen. Throws ConfigError, whose messages never contain a secret.
 */
export async function loadConfig(options: LoadOptions = {}): Promise<Config> {
  let text = ''
  if (options.file !== undefined) {
    try {
      text = await readTextBounded(options.file, MAX_CONFIG_FILE_BYTES)
    } catch (err) {
      const message = `cannot read the file (${readFailure(err)})`
      throw new ConfigError([{ path: '', file: options.file, message }])
    }
  }
  const parsed = parse(text, options)
  return deepFreeze(await resolveSecrets(parsed, options))
}

/** A copy of the configuration safe to log or print: passwords, also in URLs, become `***`. */
export function redactConfig(config: Config): Config {
  const copy = structuredClone(config)
  copy.state.redis.url = redactUrl(copy.state.redis.url)
  for (const upstream of copy.upstreams) {
    if (upstream.credentials !== undefined) upstream.credentials.password = REDACTED
  }
  for (const hook of copy.notifications.webhooks) {
    hook.secret = REDACTED
    // A query string may carry the receiver's token.
    if (hook.url.includes('?')) hook.url = `${hook.url.slice(0, hook.url.indexOf('?'))}?${REDACTED}`
  }
  return copy
}

const REDACTED = '***'

function redactUrl(url: string): string {
  // Up to the last '@', so that a password with an unescaped '@' is hidden whole.
  return url.replace(/^([a-z]+:\/\/[^:@/]*:).*@/, `$1${REDACTED}@`)
}

// ---------------------------------------------------------------------------------------------
// Parsing and positions

interface Parsed {
  config: ParsedConfig
  /** The issue for a path, positioned at its node in the file (or the nearest parent there). */
  issueAt(path: Path, message: string): ConfigIssue
}

/**
 * The configuration's messages predate the policy loader's: zod's `int` and `number`, `got null`,
 * and zod's own words for bounds (`Too small: expected number to be >=1`).
 */
const WORDING: Wording = 'types'

function parse(text: string, options: LoadOptions): Parsed {
  const file = options.file
  const lineCounter = new LineCounter()
  // prettyErrors off: the pretty form quotes the source line, which may hold a secret.
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true })
  // Unlike a policy issue, an issue with no position in the file has no line rather than 1:1.
  const position = (offset: number | undefined): Pick<ConfigIssue, 'line' | 'column'> =>
    offset === undefined ? {} : lineColumn(lineCounter, offset)
  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.map((e) => ({
        path: '',
        file,
        ...position(e.pos[0]),
        message: yamlMessage(e.code, e.message, text.slice(e.pos[0], e.pos[1])),
      }))
    )
  }
  let data: unknown
  try {
    data = dropNulls(doc.toJS({ maxAliasCount: 100 })) ?? {}
  } catch (err) {
    // An unresolved alias or an alias bomb; yaml names the alias, never a value.
    throw new ConfigError([{ path: '', file, message: (err as Error).message }])
  }

  const env = applyEnv(data, options.env ?? {})
  const result = configSchema.safeParse(data, { error: (issue) => zodMessage(issue, WORDING) })
  const fileIssue = (raw: RawIssue): ConfigIssue => ({
    path: formatPath(raw.path),
    file,
    ...position(locate(doc, raw.path, raw.atKey === true)),
    message: raw.message,
  })
  const zodIssues = result.success ? [] : result.error.issues
  const issues = flattenZodIssues(zodIssues, configSchema, data, WORDING).map(
    (raw): ConfigIssue => {
      const variable = env.applied.find((o) => startsWith(raw.path, o.path))
      if (variable === undefined) return fileIssue(raw)
      return { path: formatPath(raw.path), env: variable.name, message: raw.message }
    }
  )
  if (!result.success || env.issues.length > 0) {
    throw new ConfigError([...issues.sort(byPosition), ...env.issues])
  }
  return { config: result.data, issueAt: (path, message) => fileIssue({ path, message }) }
}

/** yaml's message, reworded where it speaks to programmers; `source` is the offending key only. */
function yamlMessage(code: string, message: string, source: string): string {
  if (code === 'MULTIPLE_DOCS') return 'the file must hold a single YAML document'
  if (code === 'DUPLICATE_KEY') return `duplicate key ${JSON.stringify(source)}`
  return message
}

/** `key:` with nothing after it reads as null; treat it as absent so the default applies. */
function dropNulls(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(dropNulls)
  if (isPlainObject(value)) {
    return Object.fromEntries(
      Object.entries(value)
        .filter(([, v]) => v !== null)
        .map(([k, v]) => [k, dropNulls(v)])
    )
  }
  return value
}

/** `upstreams[1].credentials.password` */
export function formatPath(path: Path): string {
  return path
    .map((s, i) => {
      if (typeof s === 'number') return `[${s}]`
      const key = String(s)
      if (!/^[A-Za-z_$][\w$-]*$/.test(key)) return `[${JSON.stringify(key)}]`
      return i === 0 ? key : `.${key}`
    })
    .join('')
}

/** File order, so that the messages read top to bottom; unpositioned issues last. */
function byPosition(a: ConfigIssue, b: ConfigIssue): number {
  const key = (i: ConfigIssue): number => (i.line ?? 1e9) * 1e6 + (i.column ?? 0)
  return key(a) - key(b)
}

function startsWith(path: Path, prefix: Path): boolean {
  return prefix.length <= path.length && prefix.every((s, i) => path[i] === s)
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

// ---------------------------------------------------------------------------------------------
// Environment overrides

type LeafKind = 'number' | 'boolean' | 'string'

interface EnvKey {
  readonly path: readonly string[]
  readonly kind: LeafKind
}

/** CUSTOMS_* variables that are not configuration keys and are left alone. */
export const NON_CONFIG_ENV: ReadonlySet<string> = new Set([
  'CUSTOMS_CONFIG',
  'CUSTOMS_TEST_CONCURRENCY',
  // The admin command line's (customs quarantine, decisions, policy diff): set in operators'
  // shells, next to serve's.
  'CUSTOMS_URL',
  'CUSTOMS_ADMIN_TOKEN',
  // The fuzz suites' knobs (test/fuzz/settings.ts): set for a whole test run, Customs processes
  // started by the tests inherit them.
  'CUSTOMS_FUZZ_RUNS',
  'CUSTOMS_FUZZ_SEED',
])

const ENV_PREFIX = 'CUSTOMS'

/**
 * Every scalar key of the schema as its variable: storage.maxSize is CUSTOMS_STORAGE_MAXSIZE.
 * Lists (upstreams) are left out: they are set in the file only.
 */
function envKeys(schema: Schema): { keys: Map<string, EnvKey>; lists: string[] } {
  const keys = new Map<string, EnvKey>()
  const lists: string[] = []
  const walk = (node: Schema, path: readonly string[]): void => {
    const s = unwrap(node)
    const name = [ENV_PREFIX, ...path].join('_').toUpperCase()
    if (s instanceof z.ZodObject) {
      for (const [key, child] of Object.entries(s._zod.def.shape)) walk(child, [...path, key])
    } else if (s instanceof z.ZodArray) {
      lists.push(name)
    } else {
      // Two keys differing only in case would share a variable; the schema must not have them.
      if (keys.has(name)) throw new Error(`config keys collide on ${name}`)
      keys.set(name, { path, kind: leafKind(s) })
    }
  }
  walk(schema, [])
  return { keys, lists }
}

function leafKind(schema: Schema): LeafKind {
  const s = unwrap(schema)
  if (s instanceof z.ZodNumber) return 'number'
  if (s instanceof z.ZodBoolean) return 'boolean'
  if (s instanceof z.ZodUnion) {
    // A duration or size takes '30s' as well as 30000: pass the text through as written.
    const kinds = s._zod.def.options.map(leafKind)
    return kinds.includes('string') ? 'string' : (kinds[0] ?? 'string')
  }
  return 'string'
}

const { keys: ENV_KEYS, lists: ENV_LISTS } = envKeys(configSchema)

// A Kubernetes Service named customs(-*) injects CUSTOMS_PORT=tcp://…, CUSTOMS_SERVICE_HOST and the
// like into every pod of its namespace; they must not stop the proxy from starting.
const SERVICE_LINK = new RegExp(
  '^CUSTOMS_(?:[A-Z0-9_]+_)?(?:SERVICE_HOST|SERVICE_PORT(?:_[A-Z0-9_]+)?|' +
    'PORT_\\d+_(?:TCP|UDP|SCTP)(?:_(?:PROTO|PORT|ADDR))?)$'
)
// Plain CUSTOMS_PORT is only a link when it holds one; CUSTOMS_FOO_PORT=6379 is a mistyped key.
const SERVICE_LINK_PORT = /^CUSTOMS_(?:[A-Z0-9_]+_)?PORT$/
const SERVICE_LINK_URL = /^(tcp|udp|sctp):\/\//

function isServiceLink(name: string, value: string): boolean {
  return SERVICE_LINK.test(name) || (SERVICE_LINK_PORT.test(name) && SERVICE_LINK_URL.test(value))
}

interface Override {
  readonly name: string
  readonly path: readonly string[]
}

/** Writes each CUSTOMS_* variable into data at its key; the issues name the bad variables. */
function applyEnv(data: unknown, env: Env): { applied: Override[]; issues: ConfigIssue[] } {
  const issues: ConfigIssue[] = []
  const applied: Override[] = []
  for (const [rawName, value] of Object.entries(env).sort(([a], [b]) => a.localeCompare(b))) {
    const name = rawName.toUpperCase()
    // An empty value is unset: compose writes VAR=${UNSET} as VAR=''.
    if (!name.startsWith(`${ENV_PREFIX}_`) || value === undefined || value === '') continue
    if (NON_CONFIG_ENV.has(name) || isServiceLink(name, value)) continue
    const key = ENV_KEYS.get(name)
    if (key === undefined) {
      issues.push({ path: '', env: rawName, message: unknownVariableMessage(name) })
      continue
    }
    const coerced = coerce(value, key.kind)
    if (coerced === undefined) {
      issues.push({ path: formatPath(key.path), env: rawName, message: `expected ${key.kind}` })
      continue
    }
    if (setIn(data, key.path, coerced)) applied.push({ name: rawName, path: key.path })
  }
  return { applied, issues }
}

function unknownVariableMessage(name: string): string {
  const list = ENV_LISTS.find((l) => name.startsWith(`${l}_`) || name === l)
  if (list !== undefined) {
    return `${list.slice(ENV_PREFIX.length + 1).toLowerCase()} can only be set in the file`
  }
  const squashed = name.replaceAll('_', '')
  const near = [...ENV_KEYS.keys()].find((k) => k.replaceAll('_', '') === squashed)
  return `not a configuration key${near === undefined ? '' : ` (did you mean ${near}?)`}`
}

function coerce(value: string, kind: LeafKind): string | number | boolean | undefined {
  const text = value.trim()
  if (kind === 'number') return /^-?\d+(\.\d+)?$/.test(text) ? Number(text) : undefined
  if (kind === 'boolean') {
    if (/^(true|1)$/i.test(text)) return true
    if (/^(false|0)$/i.test(text)) return false
    return undefined
  }
  return value
}

/** Sets the value, creating missing sections; false when the file has a non-mapping in the way. */
function setIn(data: unknown, path: readonly string[], value: unknown): boolean {
  let target = data
  for (const [i, key] of path.entries()) {
    if (!isPlainObject(target)) return false
    if (i === path.length - 1) {
      target[key] = value
      return true
    }
    target[key] ??= {}
    target = target[key]
  }
  return false
}

// ---------------------------------------------------------------------------------------------
// Secrets

async function resolveSecrets(parsed: Parsed, options: LoadOptions): Promise<Config> {
  const env = options.env ?? {}
  // Relative secret files are next to the configuration, wherever the process was started.
  const base = options.file === undefined ? process.cwd() : dirname(resolve(options.file))
  const issues: ConfigIssue[] = []
  const upstreams = await Promise.all(
    parsed.config.upstreams.map(async (upstream, i) => {
      const { credentials, ...rest } = upstream
      if (credentials === undefined) return rest
      const path = ['upstreams', i, 'credentials', 'password']
      const password = await resolveSecret(credentials.password, base, env).catch((err: Error) => {
        issues.push(parsed.issueAt(path, err.message))
        return ''
      })
      return { ...rest, credentials: { username: credentials.username, password } }
    })
  )
  const webhooks = await Promise.all(
    parsed.config.notifications.webhooks.map(async (hook, i) => {
      const path = ['notifications', 'webhooks', i, 'secret']
      const secret = await resolveSecret(hook.secret, base, env).catch((err: Error) => {
        issues.push(parsed.issueAt(path, err.message))
        return ''
      })
      return { ...hook, secret }
    })
  )
  if (issues.length > 0) throw new ConfigError(issues)
  return { ...parsed.config, upstreams, notifications: { ...parsed.config.notifications, webhooks } }
}

/** The secret's string; an Error saying which file or variable is missing, never its value. */
async function resolveSecret(secret: string | SecretRef, base: string, env: Env): Promise<string> {
  if (typeof secret === 'string') return secret
  if (secret.value !== undefined) return secret.value
  if (secret.env !== undefined) {
    const value = env[secret.env]
    if (value === undefined || value === '') {
      throw new Error(`environment variable ${secret.env} is not set`)
    }
    return value
  }
  const file = resolve(base, secret.file ?? '')
  let text: string
  try {
    text = await readTextBounded(file, MAX_SECRET_FILE_BYTES)
  } catch (err) {
    throw new Error(`cannot read secret file ${file} (${readFailure(err)})`)
  }
  // Files written by `echo` or editors end in a newline that is not part of the secret.
  const value = text.replace(/[\r\n]+$/, '')
  if (value === '') throw new Error(`secret file ${file} is empty`)
  return value
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const child of Object.values(value)) deepFreeze(child)
  }
  return value
}
