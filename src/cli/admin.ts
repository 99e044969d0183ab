// `customs quarantine ls|show|release|revoke|purge` and `customs decisions ls`: the admin API of a
// running Customs, for people (aligned tables, relative times, short digests) and for scripts
// (`--json`, the server's JSON as it came). Exit codes: 0 done, 1 refused by Customs or not
// reached, 2 a usage problem found before any request.

import { parseArgs, type ParseArgsConfig } from 'node:util'
import { parseDuration } from '../config/units.js'
import { isDigest } from '../oci/digest.js'
import { AdminRequestError, AdminUsageError, adminClient, type AdminClient } from './admin-client.js'
import { clip, printable, relativeTime, shortDigest, table } from './format.js'

export interface AdminIo {
  stdout: { write(text: string): unknown }
  stderr: { write(text: string): unknown }
  /** CUSTOMS_URL and CUSTOMS_ADMIN_TOKEN are read from here (main.ts passes process.env). */
  env: Readonly<Record<string, string | undefined>>
  /** The clock relative times and `--expires 7d` are computed from; Date.now by default. */
  now?: () => number
}

export const ADMIN_USAGE = `  customs quarantine ls [--upstream U] [--state S] [--limit N] [--json]
  customs quarantine show UPSTREAM/REPOSITORY@DIGEST [--json]
  customs quarantine release UPSTREAM/REPOSITORY@DIGEST --reason TEXT --expires 7d|2026-12-31T00:00:00Z
  customs quarantine revoke UPSTREAM/REPOSITORY@DIGEST
  customs quarantine purge UPSTREAM/REPOSITORY@DIGEST --reason TEXT
  customs decisions ls [--upstream U] [--repository R] [--digest D] [--verdict V] [--since 1h|TIME]
                       [--limit N] [--json]
                                    talk to a running Customs through its admin API; each takes
                                    --url URL (CUSTOMS_URL, default ${'http://127.0.0.1:5000'}),
                                    --token TOKEN (CUSTOMS_ADMIN_TOKEN), and for HTTPS --ca FILE
                                    and optionally --cert FILE --key FILE (mTLS)
`

const DEFAULT_URL = 'http://127.0.0.1:5000'
const DEFAULT_LIMIT = 50
/** The most rows one command lists, and the page size the server allows. */
const MAX_LIMIT = 10_000
const PAGE_MAX = 500
/** Pages read while filtering by state on this side; a bound, whatever the server answers. */
const MAX_PAGES = 200
const STATES = ['detained', 'released', 'revoked', 'purged', 'cleared'] as const
const VERDICTS = ['cleared', 'cleared-with-warnings', 'detained'] as const

const COMMON = {
  url: { type: 'string' },
  token: { type: 'string' },
  ca: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
  json: { type: 'boolean' },
} as const satisfies NonNullable<ParseArgsConfig['options']>

class UsageError extends Error {}

/** `customs quarantine <sub> ...`; returns the exit code. */
export async function quarantineCommand(args: readonly string[], io: AdminIo): Promise<number> {
  const [sub, ...rest] = args
  return run(io, async () => {
    switch (sub) {
      case 'ls':
        return quarantineList(rest, io)
      case 'show':
        return quarantineShow(rest, io)
      case 'release':
        return quarantineRelease(rest, io)
      case 'revoke':
        return quarantineRevoke(rest, io)
      case 'purge':
        return quarantinePurge(rest, io)
      default:
        throw new UsageError(sub === undefined ? 'quarantine needs a subcommand' : `unknown subcommand quarantine ${printable(sub)}`)
    }
  })
}

/** `customs decisions ls ...`; returns the exit code. */
export async function decisionsCommand(args: readonly string[], io: AdminIo): Promise<number> {
  const [sub, ...rest] = args
  return run(io, async () => {
    if (sub !== 'ls') {
      throw new UsageError(sub === undefined ? 'decisions needs a subcommand' : `unknown subcommand decisions ${printable(sub)}`)
    }
    return decisionsList(rest, io)
  })
}

async function run(io: AdminIo, work: () => Promise<void>): Promise<number> {
  try {
    await work()
    return 0
  } catch (err) {
    if (err instanceof UsageError || err instanceof AdminUsageError) {
      io.stderr.write(`customs: ${err.message}\nusage:\n${ADMIN_USAGE}`)
      return 2
    }
    if (err instanceof AdminRequestError) {
      io.stderr.write(`customs: ${printable(err.message)}\n`)
      return 1
    }
    throw err
  }
}

// ---------------------------------------------------------------------------------------------
// Arguments

function parse<T extends NonNullable<ParseArgsConfig['options']>>(args: readonly string[], options: T, positionals: number) {
  let parsed
  try {
    parsed = parseArgs({ args: [...args], options: { ...COMMON, ...options }, allowPositionals: true, strict: true })
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
  if (parsed.positionals.length !== positionals) {
    throw new UsageError(positionals === 0 ? `unexpected argument ${printable(parsed.positionals[0])}` : 'expected UPSTREAM/REPOSITORY@DIGEST')
  }
  return parsed
}

async function connect(values: { url?: string | undefined; token?: string | undefined; ca?: string | undefined; cert?: string | undefined; key?: string | undefined }, io: AdminIo): Promise<AdminClient> {
  const token = values.token ?? io.env.CUSTOMS_ADMIN_TOKEN
  if (token === undefined || token === '') throw new UsageError('an admin token is needed: --token or CUSTOMS_ADMIN_TOKEN')
  if (/[\s\x00-\x1f\x7f]/.test(token)) throw new UsageError('the admin token holds spaces or control characters')
  const url = values.url ?? (io.env.CUSTOMS_URL !== undefined && io.env.CUSTOMS_URL !== '' ? io.env.CUSTOMS_URL : DEFAULT_URL)
  return adminClient({
    url,
    token,
    ...(values.ca !== undefined ? { ca: values.ca } : {}),
    ...(values.cert !== undefined ? { cert: values.cert } : {}),
    ...(values.key !== undefined ? { key: values.key } : {}),
  })
}

function limitOf(value: string | undefined): number {
  if (value === undefined) return DEFAULT_LIMIT
  const n = /^\d{1,6}$/.test(value) ? Number(value) : NaN
  if (!(n >= 1 && n <= MAX_LIMIT)) throw new UsageError(`--limit must be a whole number from 1 to ${MAX_LIMIT}`)
  return n
}

function oneOf<T extends string>(flag: string, value: string | undefined, allowed: readonly T[]): T | undefined {
  if (value === undefined) return undefined
  if (!(allowed as readonly string[]).includes(value)) throw new UsageError(`${flag} must be one of ${allowed.join(', ')}`)
  return value as T
}

interface RecordRef {
  readonly upstream: string
  readonly repository: string
  readonly digest: string
}

/** `docker.io/library/alpine@sha256:...`: the upstream is always the first component. */
export function parseRecordRef(text: string): RecordRef {
  const m = /^([^/@]+)\/([^@]+)@(.+)$/.exec(text)
  if (m === null) throw new UsageError(`${printable(text)} is not UPSTREAM/REPOSITORY@DIGEST (docker.io/library/alpine@sha256:...)`)
  const [, upstream, repository, digest] = m as unknown as [string, string, string, string]
  if (!isDigest(digest)) throw new UsageError(`${printable(digest)} is not a digest (sha256:<64 hex>)`)
  return { upstream, repository, digest }
}

function recordPath(ref: RecordRef, action = ''): string {
  return `/admin/v1/quarantine/${encodeURIComponent(ref.upstream)}/${ref.digest}${action}`
}

/** `7d`, `12h`, ... from now, or an ISO 8601 time with its offset; as ISO 8601 in UTC. */
export function expiresAt(value: string, now: number): string {
  if (/^\d{4}-\d{2}-\d{2}T/.test(value)) {
    const at = Date.parse(value)
    if (!Number.isFinite(at) || !/(Z|[+-]\d{2}:\d{2})$/.test(value)) {
      throw new UsageError(`--expires ${printable(value)} is not a time with its offset (2026-12-31T00:00:00Z)`)
    }
    return new Date(at).toISOString()
  }
  let ms: number
  try {
    ms = parseDuration(value)
  } catch {
    throw new UsageError(`--expires ${printable(value)} is neither a duration (7d, 12h) nor a time (2026-12-31T00:00:00Z)`)
  }
  if (!/^[0-9.]+[a-z]/.test(value)) throw new UsageError('--expires needs a unit (7d, 12h) or a full time')
  return new Date(now + ms).toISOString()
}

function sinceOf(value: string | undefined, now: number): string | undefined {
  if (value === undefined) return undefined
  if (/^\d{4}-\d{2}-\d{2}T/.test(value)) {
    if (!Number.isFinite(Date.parse(value))) throw new UsageError(`--since ${printable(value)} is not a time`)
    return new Date(Date.parse(value)).toISOString()
  }
  try {
    return new Date(now - parseDuration(value)).toISOString()
  } catch {
    throw new UsageError(`--since ${printable(value)} is neither a duration (1h, 7d) nor a time`)
  }
}

function reasonOf(value: string | undefined): string {
  const reason = value?.trim()
  if (reason === undefined || reason === '') throw new UsageError('--reason TEXT is required')
  if (reason.length > 1024) throw new UsageError('--reason is longer than 1024 characters')
  return reason
}

const json = (value: unknown): string => `${JSON.stringify(value, null, 2)}\n`

// ---------------------------------------------------------------------------------------------
// quarantine

/** The fields of a quarantine record the CLI reads; anything else is passed through in --json. */
interface QuarantineView {
  upstream?: string
  repository?: string
  digest?: string
  state?: string
  release?: { by?: string; reason?: string; expires?: number; at?: number }
  history?: Array<{ action?: string; by?: string; at?: number; reason?: string; reasons?: string[]; expires?: number; revision?: string }>
  references?: string[]
  reasons?: string[]
  firstSeen?: number
  lastSeen?: number
  refused?: number
  clients?: Array<{ address?: string; userAgent?: string; identity?: string }>
}

async function quarantineList(args: readonly string[], io: AdminIo): Promise<void> {
  const { values } = parse(args, { upstream: { type: 'string' }, state: { type: 'string' }, limit: { type: 'string' } }, 0)
  const limit = limitOf(values.limit)
  const state = oneOf('--state', values.state, STATES)
  const client = await connect(values, io)
  const records: QuarantineView[] = []
  let after: string | undefined
  for (let page = 0; page < MAX_PAGES && records.length < limit; page++) {
    // Filtering by state happens here, so pages are full-sized then; otherwise only what is left.
    const size = state === undefined ? Math.min(PAGE_MAX, limit - records.length) : PAGE_MAX
    const answer = (await client.get('/admin/v1/quarantine', { upstream: values.upstream, limit: String(size), after })) as {
      records?: QuarantineView[]
      next?: string
    }
    for (const record of answer.records ?? []) {
      if (records.length < limit && (state === undefined || record.state === state)) records.push(record)
    }
    if (typeof answer.next !== 'string') break
    after = answer.next
  }
  if (values.json === true) {
    io.stdout.write(json({ records }))
    return
  }
  if (records.length === 0) {
    io.stdout.write('no quarantine records\n')
    return
  }
  const now = (io.now ?? Date.now)()
  const rows = records.map((r) => [
    stateCell(r, now),
    printable(`${r.upstream}/${r.repository}`),
    shortDigest(r.digest),
    String(r.refused ?? ''),
    relativeTime(r.lastSeen, now),
    clientCell(r.clients?.[0]),
    clip(printable((r.references ?? []).join(', ')), 40),
  ])
  io.stdout.write(table(['STATE', 'REPOSITORY', 'DIGEST', 'REFUSED', 'LAST SEEN', 'LAST CLIENT', 'REFERENCES'], rows))
}

function stateCell(record: QuarantineView, now: number): string {
  const state = printable(record.state)
  return record.state === 'released' && record.release?.expires !== undefined ? `${state} (until ${relativeTime(record.release.expires, now)})` : state
}

function clientCell(client: { address?: string; userAgent?: string; identity?: string } | undefined): string {
  if (client === undefined) return '-'
  return printable(client.identity ?? client.address ?? '-')
}

async function quarantineShow(args: readonly string[], io: AdminIo): Promise<void> {
  const { values, positionals } = parse(args, {}, 1)
  const ref = parseRecordRef(positionals[0] as string)
  const client = await connect(values, io)
  const record = (await client.get(recordPath(ref), { repository: ref.repository })) as QuarantineView
  if (values.json === true) {
    io.stdout.write(json(record))
    return
  }
  io.stdout.write(describeRecord(record, (io.now ?? Date.now)()))
}

/** Every field of a record, one per line, digests in full. */
function describeRecord(r: QuarantineView, now: number): string {
  const at = (ms: number | undefined): string => (ms === undefined ? '-' : `${new Date(ms).toISOString()} (${relativeTime(ms, now)})`)
  const lines = [
    printable(`${r.upstream}/${r.repository}@${r.digest}`),
    `state:       ${printable(r.state)}`,
    `refused:     ${r.refused ?? 0} time${r.refused === 1 ? '' : 's'}`,
    `first seen:  ${at(r.firstSeen)}`,
    `last seen:   ${at(r.lastSeen)}`,
    `references:  ${printable((r.references ?? []).join(', ')) || '-'}`,
  ]
  if (r.release !== undefined) {
    lines.push(`release:     by ${printable(r.release.by)} until ${at(r.release.expires)}: ${printable(r.release.reason)}`)
  }
  lines.push('reasons:')
  for (const reason of r.reasons ?? []) lines.push(`  ${printable(reason)}`)
  const clients = r.clients ?? []
  if (clients.length > 0) {
    lines.push('clients (newest first):')
    const rows = clients.map((c) => [printable(c.identity ?? '-'), printable(c.address ?? '-'), printable(c.userAgent ?? '-')])
    lines.push(...table(['IDENTITY', 'ADDRESS', 'USER AGENT'], rows).trimEnd().split('\n').map((l) => `  ${l}`))
  }
  const history = r.history ?? []
  if (history.length > 0) {
    lines.push('history (newest first):')
    for (const h of history) {
      // A purge's reason and a refusal's reasons are what an auditor reads the line for.
      const why = h.reason ?? (h.reasons !== undefined && h.reasons.length > 0 ? h.reasons.join('; ') : undefined)
      const detail =
        h.action === 'release'
          ? ` until ${at(h.expires)}: ${printable(h.reason)}`
          : `${h.revision !== undefined ? ` at revision ${printable(h.revision)}` : ''}${why !== undefined ? `: ${printable(why)}` : ''}`
      lines.push(`  ${at(h.at)}  ${printable(h.action)} by ${printable(h.by)}${detail}`)
    }
  }
  return `${lines.join('\n')}\n`
}

async function quarantineRelease(args: readonly string[], io: AdminIo): Promise<void> {
  const { values, positionals } = parse(args, { reason: { type: 'string' }, expires: { type: 'string' } }, 1)
  const ref = parseRecordRef(positionals[0] as string)
  const reason = reasonOf(values.reason)
  if (values.expires === undefined) throw new UsageError('--expires 7d|2026-12-31T00:00:00Z is required')
  const now = (io.now ?? Date.now)()
  const expires = expiresAt(values.expires, now)
  const client = await connect(values, io)
  const record = (await client.post(recordPath(ref, '/release'), { repository: ref.repository, reason, expires })) as QuarantineView
  if (values.json === true) {
    io.stdout.write(json(record))
    return
  }
  const until = record.release?.expires ?? Date.parse(expires)
  io.stdout.write(`released ${printable(refText(ref))} until ${new Date(until).toISOString()} (${relativeTime(until, now)})\n`)
}

async function quarantineRevoke(args: readonly string[], io: AdminIo): Promise<void> {
  const { values, positionals } = parse(args, {}, 1)
  const ref = parseRecordRef(positionals[0] as string)
  const client = await connect(values, io)
  const record = (await client.post(recordPath(ref, '/revoke'), { repository: ref.repository })) as QuarantineView
  if (values.json === true) {
    io.stdout.write(json(record))
    return
  }
  io.stdout.write(`revoked the release of ${printable(refText(ref))}; state ${printable(record.state)}\n`)
}

async function quarantinePurge(args: readonly string[], io: AdminIo): Promise<void> {
  const { values, positionals } = parse(args, { reason: { type: 'string' } }, 1)
  const ref = parseRecordRef(positionals[0] as string)
  const reason = reasonOf(values.reason)
  const client = await connect(values, io)
  const answer = (await client.post(recordPath(ref, '/purge'), { repository: ref.repository, reason })) as { state?: string }
  if (values.json === true) {
    io.stdout.write(json(answer))
    return
  }
  const state = typeof answer?.state === 'string' ? `; state ${printable(answer.state)}` : ''
  io.stdout.write(`purged ${printable(refText(ref))}${state}\n`)
}

const refText = (ref: RecordRef): string => `${ref.upstream}/${ref.repository}@${ref.digest}`

// ---------------------------------------------------------------------------------------------
// decisions

/** The fields of a CustomsEvent (src/audit/events.ts) the table shows. */
interface EventView {
  type?: string
  time?: string
  client?: { address?: string; userAgent?: string; identity?: string }
  actor?: string
  upstream?: string
  repository?: string
  reference?: string
  digest?: string
  verdict?: string
  reasons?: string[]
}

async function decisionsList(args: readonly string[], io: AdminIo): Promise<void> {
  const { values } = parse(
    args,
    {
      upstream: { type: 'string' },
      repository: { type: 'string' },
      digest: { type: 'string' },
      verdict: { type: 'string' },
      since: { type: 'string' },
      limit: { type: 'string' },
    },
    0
  )
  const limit = limitOf(values.limit)
  const verdict = oneOf('--verdict', values.verdict, VERDICTS)
  if (values.digest !== undefined && !isDigest(values.digest)) throw new UsageError(`--digest ${printable(values.digest)} is not a digest (sha256:<64 hex>)`)
  const now = (io.now ?? Date.now)()
  const since = sinceOf(values.since, now)
  const client = await connect(values, io)
  const events: EventView[] = []
  let before: string | undefined
  for (let page = 0; page < MAX_PAGES && events.length < limit; page++) {
    const answer = (await client.get('/admin/v1/decisions', {
      upstream: values.upstream,
      repository: values.repository,
      digest: values.digest,
      verdict,
      since,
      limit: String(Math.min(PAGE_MAX, limit - events.length)),
      before,
    })) as { decisions?: EventView[]; next?: string }
    events.push(...(answer.decisions ?? []).slice(0, limit - events.length))
    if (typeof answer.next !== 'string') break
    before = answer.next
  }
  if (values.json === true) {
    io.stdout.write(json({ decisions: events }))
    return
  }
  if (events.length === 0) {
    io.stdout.write('no decisions\n')
    return
  }
  const rows = events.map((e) => [
    relativeTime(e.time, now),
    printable(e.verdict ?? e.type),
    clip(printable(`${e.upstream ?? ''}/${e.repository ?? ''}${e.reference !== undefined && e.reference !== e.digest ? `:${e.reference}` : ''}`), 60),
    shortDigest(e.digest),
    printable(e.actor ?? e.client?.identity ?? e.client?.address ?? '-'),
    clip(printable(e.reasons?.[0] ?? ''), 80),
  ])
  io.stdout.write(table(['TIME', 'VERDICT', 'IMAGE', 'DIGEST', 'CLIENT', 'REASON'], rows))
}
