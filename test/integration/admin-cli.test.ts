// `customs quarantine ...` and `customs decisions ls` against a running Customs with a real
// detention (ls, show, release, revoke, decisions), and, for HTTPS with mTLS (--ca/--cert/--key)
// and paging, against CONTRACT STAND-IN: a small hono server in this file answering the routes'
// request and answer shapes.

import assert from 'node:assert/strict'
import { mkdir, readFile, truncate, writeFile } from 'node:fs/promises'
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { join, resolve } from 'node:path'
import type { TLSSocket } from 'node:tls'
import { after, before, describe, it } from 'node:test'
import { serve } from '@hono/node-server'
import { Hono } from 'hono'
import { decisionsCommand, quarantineCommand, type AdminIo } from '../../src/cli/admin.js'
import { certsCommand } from '../../src/cli/certs.js'
import { loadPolicies } from '../../src/policy/load.js'
import type { CustomsHandle } from '../helpers/customs.js'
import { ociImage } from '../helpers/fake-upstream.js'
import { DEAD_END, makeTempDir, removeTempDir, run, type RunResult } from '../helpers/processes.js'
import { sha256hex, startWithPolicy, type PolicyCustoms } from '../helpers/admin.js'

const ROOT = resolve(import.meta.dirname, '../..')
const MAIN = join(ROOT, 'src/main.ts')
const VIEWER = 'viewer-token-cli-0123456789'
const APPROVER = 'approver-token-cli-9876543210'
const ADMIN = 'admin-token-cli-5555555555'
const PULLER = { name: 'ci-bot', secret: 'ci-bot-secret-for-cli-tests' }

let env: PolicyCustoms | undefined
let customs: CustomsHandle
let work: string
const image = ociImage([Buffer.from('a layer for the cli')])
let REF: string

interface Output {
  code: number
  stdout: string
  stderr: string
}

/** Runs a CLI command in process, with `env` as its environment (no CUSTOMS_URL unless given). */
async function cli(
  command: typeof quarantineCommand,
  args: readonly string[],
  env: Record<string, string | undefined> = {},
  now?: number
): Promise<Output> {
  let stdout = ''
  let stderr = ''
  const io: AdminIo = {
    stdout: { write: (t: string) => (stdout += t) },
    stderr: { write: (t: string) => (stderr += t) },
    env,
    ...(now !== undefined ? { now: () => now } : {}),
  }
  const code = await command(args, io)
  return { code, stdout, stderr }
}

const quarantine = (args: readonly string[], token = VIEWER, now?: number): Promise<Output> =>
  cli(quarantineCommand, [...args, '--url', customs.url, '--token', token], {}, now)

function pull(): Promise<Response> {
  const auth = Buffer.from(`${PULLER.name}:${PULLER.secret}`).toString('base64')
  return fetch(`${customs.url}/v2/acme/app/manifests/v1`, {
    headers: { Accept: image.mediaType, 'User-Agent': 'cli-test/1.0', Authorization: `Basic ${auth}` },
  })
}

before(async () => {
  work = await makeTempDir('admin-cli-')
  env = await startWithPolicy({
    images: [['acme/app', image]],
    tokens: [
      { name: 'alice', secret: VIEWER, role: 'viewer' },
      { name: 'bob', secret: APPROVER, role: 'approver' },
    ],
    config: `access:\n  clients:\n    - { name: ${PULLER.name}, sha256: "${sha256hex(PULLER.secret)}" }`,
  })
  customs = env.customs
  REF = `docker.io/acme/app@${image.digest}`
  const res = await pull()
  assert.equal(res.status, 403, 'the pull is denied, so there is a quarantine record')
})

after(async () => {
  await env?.stop()
  if (work !== undefined) await removeTempDir(work)
})

describe('customs quarantine against a running Customs', () => {
  it('lists records as an aligned table with a short digest and a relative time', async () => {
    const out = await quarantine(['ls'])
    assert.equal(out.code, 0, out.stderr)
    const [header, row, ...rest] = out.stdout.trimEnd().split('\n') as [string, string, ...string[]]
    assert.deepEqual(rest, [])
    assert.match(header, /^STATE +REPOSITORY +DIGEST +REFUSED +LAST SEEN +LAST CLIENT +REFERENCES$/)
    const short = image.digest.slice(0, 'sha256:'.length + 12)
    assert.ok(row.includes(short) && !row.includes(image.digest), row)
    assert.equal(row.indexOf(short), header.indexOf('DIGEST'), 'the digest sits under its header')
    assert.equal(row.indexOf('docker.io/acme/app'), header.indexOf('REPOSITORY'))
    assert.match(row, /^detained /)
    assert.match(row, / \d+s ago /)
    assert.match(row, / ci-bot +v1$/)
  })

  it('prints the records as JSON with full digests for --json', async () => {
    const out = await quarantine(['ls', '--json', '--upstream', 'docker.io', '--limit', '10'])
    assert.equal(out.code, 0, out.stderr)
    const { records } = JSON.parse(out.stdout) as { records: Array<{ digest: string; refused: number; clients: Array<{ identity?: string }> }> }
    assert.equal(records.length, 1)
    assert.equal(records[0]?.digest, image.digest)
    assert.equal(records[0]?.clients[0]?.identity, PULLER.name)
  })

  it('filters by state', async () => {
    const out = await quarantine(['ls', '--state', 'released'])
    assert.equal(out.code, 0, out.stderr)
    assert.equal(out.stdout, 'no quarantine records\n')
  })

  it('shows one record with the full digest, reasons and clients', async () => {
    const out = await quarantine(['show', REF])
    assert.equal(out.code, 0, out.stderr)
    assert.ok(out.stdout.startsWith(`${REF}\n`), out.stdout)
    assert.match(out.stdout, /^state: +detained$/m)
    assert.match(out.stdout, /must-be-non-root/)
    assert.match(out.stdout, /^ {2}ci-bot +127\.0\.0\.1 +cli-test\/1\.0$/m)
    const json = await quarantine(['show', REF, '--json'])
    assert.equal((JSON.parse(json.stdout) as { digest: string }).digest, image.digest)
  })

  it('shows the server’s refusal of a viewer’s release, without the token, and exits 1', async () => {
    const out = await quarantine(['release', REF, '--reason', 'vendor fix pending', '--expires', '7d'])
    assert.equal(out.code, 1)
    assert.equal(out.stderr, 'customs: 403 DENIED: this admin request needs the approver role; alice has viewer\n')
    assert.equal(out.stdout, '')
  })

  it('releases with an approver token until a relative expiry, and the pull is then served', async () => {
    const now = Date.now()
    const out = await quarantine(['release', REF, '--reason', 'vendor fix pending', '--expires', '7d'], APPROVER, now)
    assert.equal(out.code, 0, out.stderr)
    const expires = new Date(now + 7 * 86_400_000).toISOString()
    assert.equal(out.stdout, `released ${REF} until ${expires} (in 7d)\n`)
    assert.equal((await pull()).status, 200)
    const listed = await quarantine(['ls', '--state', 'released'], VIEWER, now)
    assert.match(listed.stdout, /^released \(until in \d+d\) +docker\.io\/acme\/app /m)
    const shown = await quarantine(['show', REF])
    assert.match(shown.stdout, /^release: +by bob until .*: vendor fix pending$/m)
    assert.match(shown.stdout, /^ {2}\S+ \(\d+s ago\) +release by bob until .*: vendor fix pending$/m)
  })

  it('releases until an absolute time', async () => {
    const until = new Date(Date.now() + 3 * 86_400_000).toISOString().replace(/\.\d{3}Z$/, 'Z')
    const out = await quarantine(['release', REF, '--reason', 'again', '--expires', until, '--json'], APPROVER)
    assert.equal(out.code, 0, out.stderr)
    const record = JSON.parse(out.stdout) as { state: string; release: { expires: number } }
    assert.equal(record.state, 'released')
    assert.equal(record.release.expires, Date.parse(until))
  })

  it('revokes the release, and the pull is denied again', async () => {
    const out = await quarantine(['revoke', REF], APPROVER)
    assert.equal(out.code, 0, out.stderr)
    assert.equal(out.stdout, `revoked the release of ${REF}; state detained\n`)
    assert.equal((await pull()).status, 403)
  })

  it('shows the server’s refusal of a revoke when no release holds, and exits 1', async () => {
    const out = await quarantine(['revoke', REF], APPROVER)
    assert.equal(out.code, 1)
    assert.equal(out.stderr, `customs: 400 UNSUPPORTED: ${REF} holds no release to revoke: it is detained\n`)
    assert.equal(out.stdout, '')
  })

  it('answers a record that does not exist with the server’s message', async () => {
    const out = await quarantine(['show', `docker.io/acme/other@${image.digest}`])
    assert.equal(out.code, 1)
    assert.match(out.stderr, /^customs: 404 MANIFEST_UNKNOWN: no pull of docker\.io\/acme\/other@sha256:[0-9a-f]{64} was refused\n$/)
  })

  it('refuses a wrong token with 401, never echoing it', async () => {
    const out = await quarantine(['ls'], 'not-a-valid-token-xyz')
    assert.equal(out.code, 1)
    assert.equal(out.stderr, 'customs: 401 UNAUTHORIZED: the admin bearer token is not valid\n')
  })

  it('reads the URL and token from CUSTOMS_URL and CUSTOMS_ADMIN_TOKEN', async () => {
    const out = await cli(quarantineCommand, ['ls', '--json'], { CUSTOMS_URL: customs.url, CUSTOMS_ADMIN_TOKEN: VIEWER })
    assert.equal(out.code, 0, out.stderr)
    assert.equal((JSON.parse(out.stdout) as { records: unknown[] }).records.length, 1)
  })

  it('exits 1 when Customs cannot be reached', async () => {
    const out = await cli(quarantineCommand, ['ls', '--url', `http://${DEAD_END}`, '--token', VIEWER])
    assert.equal(out.code, 1)
    assert.match(out.stderr, /^customs: cannot reach http:\/\/127\.0\.0\.1:9: .*ECONNREFUSED/)
    assert.ok(!out.stderr.includes(VIEWER))
  })
  it('lists the real decisions on the pulls above, newest first, with the client identity', async () => {
    const args = ['ls', '--repository', 'acme/app', '--url', customs.url, '--token', VIEWER]
    const out = await cli(decisionsCommand, args)
    assert.equal(out.code, 0, out.stderr)
    const [header, ...rows] = out.stdout.trimEnd().split('\n')
    assert.match(header as string, /^TIME +VERDICT +IMAGE +DIGEST +CLIENT +REASON$/)
    // The last pull was denied after the revoke; one before it was served under the release.
    assert.match(rows[0] as string, /^\d+s ago +detained +docker\.io\/acme\/app:v1 +sha256:[0-9a-f]{12} +ci-bot +policy 'must-be-non-root'/)
    assert.ok(rows.some((r) => /cleared-with-warnings +docker\.io\/acme\/app:v1 /.test(r)), out.stdout)
    const json = await cli(decisionsCommand, [...args, '--verdict', 'detained', '--json'])
    const { decisions } = JSON.parse(json.stdout) as { decisions: Array<{ digest: string; verdict: string; client?: { identity?: string } }> }
    assert.ok(decisions.length >= 1)
    assert.ok(decisions.every((d) => d.verdict === 'detained' && d.digest === image.digest && d.client?.identity === PULLER.name))
  })

  it('lists and shows a record the policies clear again, with the revision that cleared it', async () => {
    // No policy at all: every image is cleared. Put in force directly, so no re-evaluation runs
    // and the pull's inspection is what resolves the record.
    const empty = join(work, 'no-policies')
    await mkdir(empty)
    const set = await loadPolicies(empty, customs.services.policyLoadOptions)
    customs.services.policies.replace(set)
    assert.equal((await pull()).status, 200)
    const listed = await quarantine(['ls', '--state', 'cleared'])
    assert.equal(listed.code, 0, listed.stderr)
    assert.match(listed.stdout, /^cleared +docker\.io\/acme\/app /m)
    assert.equal((await quarantine(['ls', '--state', 'detained'])).stdout, 'no quarantine records\n')
    const shown = await quarantine(['show', REF])
    assert.match(shown.stdout, /^state: +cleared$/m)
    assert.match(shown.stdout, new RegExp(`^ {2}\\S+ \\(\\d+s ago\\) +cleared by customs at revision \\S+:${set.revision}$`, 'm'))
  })
})

describe('usage problems exit 2 before any request', () => {
  const cases: Array<[string, readonly string[], RegExp]> = [
    ['no token', ['ls', '--url', 'http://127.0.0.1:9'], /an admin token is needed: --token or CUSTOMS_ADMIN_TOKEN/],
    ['no subcommand', [], /quarantine needs a subcommand/],
    ['an unknown subcommand', ['list', '--token', 't'], /unknown subcommand quarantine list/],
    ['an unknown flag', ['ls', '--token', 't', '--colour'], /Unknown option '--colour'/],
    ['a bad limit', ['ls', '--token', 't', '--limit', '0'], /--limit must be a whole number from 1 to 10000/],
    ['a bad state', ['ls', '--token', 't', '--state', 'gone'], /--state must be one of detained, released, revoked, purged, cleared/],
    ['a reference without a digest', ['show', 'docker.io/acme/app:v1', '--token', 't'], /is not UPSTREAM\/REPOSITORY@DIGEST/],
    ['a reference with a bad digest', ['show', 'docker.io/acme/app@sha256:abc', '--token', 't'], /sha256:abc is not a digest/],
    ['a release without --reason', ['release', `docker.io/a/b@sha256:${'1'.repeat(64)}`, '--expires', '7d', '--token', 't'], /--reason TEXT is required/],
    ['a release without --expires', ['release', `docker.io/a/b@sha256:${'1'.repeat(64)}`, '--reason', 'r', '--token', 't'], /--expires .* is required/],
    ['an expiry without a unit', ['release', `docker.io/a/b@sha256:${'1'.repeat(64)}`, '--reason', 'r', '--expires', '7', '--token', 't'], /--expires needs a unit/],
    ['an expiry without an offset', ['release', `docker.io/a/b@sha256:${'1'.repeat(64)}`, '--reason', 'r', '--expires', '2026-12-31T00:00:00', '--token', 't'], /is not a time with its offset/],
    ['a URL with credentials', ['ls', '--token', 't', '--url', 'http://u:p@127.0.0.1:9'], /--url must be an http\(s\) URL without credentials/],
    ['--ca with http', ['ls', '--token', 't', '--url', 'http://127.0.0.1:9', '--ca', '/nonexistent'], /--ca, --cert and --key need an https:\/\/ --url/],
    ['--cert without --key', ['ls', '--token', 't', '--url', 'https://127.0.0.1:9', '--cert', '/x'], /--cert and --key go together/],
  ]
  for (const [what, args, message] of cases) {
    it(`for ${what}`, async () => {
      const out = await cli(quarantineCommand, args)
      assert.equal(out.code, 2)
      assert.match(out.stderr, message)
      assert.match(out.stderr, /usage:\n {2}customs quarantine ls/)
    })
  }

  it('for decisions with a bad verdict or digest', async () => {
    const verdict = await cli(decisionsCommand, ['ls', '--token', 't', '--verdict', 'denied'])
    assert.equal(verdict.code, 2)
    assert.match(verdict.stderr, /--verdict must be one of cleared, cleared-with-warnings, detained/)
    const digest = await cli(decisionsCommand, ['ls', '--token', 't', '--digest', 'latest'])
    assert.equal(digest.code, 2)
    assert.match(digest.stderr, /--digest latest is not a digest/)
  })
})

describe('the customs command', () => {
  function customsCli(args: readonly string[], env: Record<string, string>): Promise<RunResult> {
    return run(process.execPath, ['--import', 'tsx', MAIN, ...args], { cwd: ROOT, allowFailure: true, timeoutMs: 60_000, env: { ...process.env, ...env } })
  }

  it('runs quarantine ls through the entry point, with the environment', async () => {
    const result = await customsCli(['quarantine', 'ls', '--json'], { CUSTOMS_URL: customs.url, CUSTOMS_ADMIN_TOKEN: VIEWER })
    assert.equal(result.code, 0, result.stderr)
    assert.equal((JSON.parse(result.stdout) as { records: Array<{ digest: string }> }).records[0]?.digest, image.digest)
  })

  it('exits 2 on a usage problem', async () => {
    const result = await customsCli(['decisions', 'ls', '--limit', 'many'], { CUSTOMS_ADMIN_TOKEN: VIEWER })
    assert.equal(result.code, 2)
    assert.match(result.stderr, /--limit must be a whole number/)
  })
})

// ---------------------------------------------------------------------------------------------
// CONTRACT STAND-IN for the purge and decisions routes (being built elsewhere): only the agreed
// request and answer shapes, over HTTPS with a required client certificate.

interface StandIn {
  readonly url: string
  readonly requests: Array<{ method: string; path: string; query: Record<string, string>; body?: unknown; cn?: string }>
  close(): Promise<void>
}

const T0 = Date.parse('2026-06-01T12:00:00Z')
const DIGEST_A = `sha256:${'a'.repeat(64)}`
const DIGEST_B = `sha256:${'b'.repeat(64)}`
/** Newest first, as the audit log answers. */
const EVENTS = [
  { type: 'decision', time: new Date(T0 - 30_000).toISOString(), verdict: 'detained', upstream: 'docker.io', repository: 'acme/app', reference: 'v1', digest: DIGEST_A, reasons: ["policy 'must-be-non-root' rule 'nonRoot': runs as root"], client: { address: '10.0.0.7', identity: 'ci-bot' } },
  { type: 'decision', time: new Date(T0 - 5 * 60_000).toISOString(), verdict: 'cleared', upstream: 'docker.io', repository: 'library/alpine', reference: '3.20', digest: DIGEST_B, client: { address: '10.0.0.8' } },
  { type: 'decision', time: new Date(T0 - 3 * 3_600_000).toISOString(), verdict: 'cleared-with-warnings', upstream: 'ghcr.io', repository: 'org/tool', reference: DIGEST_B, digest: DIGEST_B, reasons: ['unsigned'] },
]

async function startStandIn(tlsDir: string): Promise<StandIn> {
  const requests: StandIn['requests'] = []
  const app = new Hono()
  const roleOf = (auth: string | undefined): string | undefined =>
    ({ [`Bearer ${VIEWER}`]: 'viewer', [`Bearer ${APPROVER}`]: 'approver', [`Bearer ${ADMIN}`]: 'admin' })[auth ?? '']
  const error = (status: 401 | 403 | 404, code: string, message: string): Response =>
    Response.json({ errors: [{ code, message }] }, { status })
  app.use('*', async (c, next) => {
    const socket = (c.env as { incoming: { socket: TLSSocket } }).incoming.socket
    const cn = socket.getPeerCertificate().subject?.CN
    requests.push({ method: c.req.method, path: c.req.path, query: { ...c.req.query() }, ...(typeof cn === 'string' ? { cn } : {}) })
    if (roleOf(c.req.header('authorization')) === undefined) return error(401, 'UNAUTHORIZED', 'the admin bearer token is not valid')
    await next()
  })
  app.post('/admin/v1/quarantine/:upstream/:digest/purge', async (c) => {
    const body = (await c.req.json()) as { repository: string; reason: string }
    ;(requests.at(-1) as { body?: unknown }).body = body
    if (roleOf(c.req.header('authorization')) !== 'admin') return error(403, 'DENIED', 'this admin request needs the admin role')
    if (body.repository !== 'acme/app') return error(404, 'MANIFEST_UNKNOWN', 'no such record')
    return c.json({ upstream: c.req.param('upstream'), repository: body.repository, digest: c.req.param('digest'), state: 'purged' })
  })
  app.get('/admin/v1/quarantine/:upstream/:digest', (c) => {
    const history = [
      { action: 'detained', by: 'customs', at: T0 - 60_000, reasons: ["policy 'p' rule 'r': unsigned", 'too old'], revision: 'rev-3' },
      { action: 'cleared', by: 'customs', at: T0 - 120_000, revision: 'rev-2' },
      { action: 'purge', by: 'adam', at: T0 - 180_000, reason: 'malware found' },
    ]
    const digest = c.req.param('digest')
    return c.json({ upstream: c.req.param('upstream'), repository: c.req.query('repository'), digest, state: 'detained', history })
  })
  app.get('/admin/v1/decisions', (c) => {
    const q = c.req.query()
    let events = EVENTS.filter((e) => (q.upstream === undefined || e.upstream === q.upstream) && (q.verdict === undefined || e.verdict === q.verdict))
    const start = q.before === undefined ? 0 : Number(q.before)
    const limit = Math.min(Number(q.limit ?? '50'), 2)
    events = events.slice(start)
    const page = events.slice(0, limit)
    return c.json({ decisions: page, ...(events.length > limit ? { next: String(start + limit) } : {}) })
  })
  const server = serve({
    fetch: app.fetch,
    hostname: '127.0.0.1',
    port: 0,
    createServer: createHttpsServer,
    serverOptions: {
      cert: await readFile(join(tlsDir, 'server.crt')),
      key: await readFile(join(tlsDir, 'server.key')),
      ca: await readFile(join(tlsDir, 'ca.crt')),
      requestCert: true,
      rejectUnauthorized: true,
    },
  }) as unknown as HttpsServer
  await new Promise<void>((resolve) => server.once('listening', () => resolve()))
  const { port } = server.address() as AddressInfo
  return {
    url: `https://127.0.0.1:${port}`,
    requests,
    async close() {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

describe('purge and decisions against the CONTRACT STAND-IN, over HTTPS with mTLS', () => {
  let standIn: StandIn
  let tlsDir: string
  let tlsFlags: string[]

  before(async () => {
    tlsDir = join(work, 'tls')
    const io = { stdout: { write: () => true }, stderr: { write: () => true } }
    assert.equal(await certsCommand(['init', '--hosts', '127.0.0.1', '--out', tlsDir], io), 0)
    assert.equal(await certsCommand(['client', '--name', 'oncall-laptop', '--out', tlsDir], io), 0)
    standIn = await startStandIn(tlsDir)
    tlsFlags = ['--url', standIn.url, '--ca', join(tlsDir, 'ca.crt'), '--cert', join(tlsDir, 'oncall-laptop.crt'), '--key', join(tlsDir, 'oncall-laptop.key')]
  })

  after(async () => standIn?.close())

  it('purges with an admin token, sending the repository and reason', async () => {
    const ref = `docker.io/acme/app@${DIGEST_A}`
    const out = await cli(quarantineCommand, ['purge', ref, '--reason', 'malware confirmed', '--token', ADMIN, ...tlsFlags])
    assert.equal(out.code, 0, out.stderr)
    assert.equal(out.stdout, `purged ${ref}; state purged\n`)
    const request = standIn.requests.at(-1)
    assert.equal(request?.path, `/admin/v1/quarantine/docker.io/${DIGEST_A}/purge`)
    assert.deepEqual(request?.body, { repository: 'acme/app', reason: 'malware confirmed' })
    assert.equal(request?.cn, 'oncall-laptop', 'the client certificate was presented')
  })

  it('shows each history entry with its revision and its reason or reasons', async () => {
    const out = await cli(quarantineCommand, ['show', `docker.io/acme/app@${DIGEST_A}`, '--token', VIEWER, ...tlsFlags], {}, T0)
    assert.equal(out.code, 0, out.stderr)
    const history = out.stdout.slice(out.stdout.indexOf('history (newest first):\n')).trimEnd().split('\n').slice(1)
    assert.deepEqual(history, [
      `  ${new Date(T0 - 60_000).toISOString()} (1m ago)  detained by customs at revision rev-3: policy 'p' rule 'r': unsigned; too old`,
      `  ${new Date(T0 - 120_000).toISOString()} (2m ago)  cleared by customs at revision rev-2`,
      `  ${new Date(T0 - 180_000).toISOString()} (3m ago)  purge by adam: malware found`,
    ])
  })

  it('shows the refusal of a purge by an approver and exits 1', async () => {
    const out = await cli(quarantineCommand, ['purge', `docker.io/acme/app@${DIGEST_A}`, '--reason', 'x', '--token', APPROVER, ...tlsFlags])
    assert.equal(out.code, 1)
    assert.equal(out.stderr, 'customs: 403 DENIED: this admin request needs the admin role\n')
  })

  it('lists decisions as a table, newest first, following next as before', async () => {
    const out = await cli(decisionsCommand, ['ls', '--token', VIEWER, ...tlsFlags], {}, T0)
    assert.equal(out.code, 0, out.stderr)
    const lines = out.stdout.trimEnd().split('\n')
    assert.match(lines[0] as string, /^TIME +VERDICT +IMAGE +DIGEST +CLIENT +REASON$/)
    assert.equal(lines.length, 4)
    assert.match(lines[1] as string, /^30s ago +detained +docker\.io\/acme\/app:v1 +sha256:aaaaaaaaaaaa +ci-bot +policy 'must-be-non-root'/)
    assert.match(lines[2] as string, /^5m ago +cleared +docker\.io\/library\/alpine:3\.20 +sha256:bbbbbbbbbbbb +10\.0\.0\.8$/)
    assert.match(lines[3] as string, /^3h ago +cleared-with-warnings +ghcr\.io\/org\/tool +sha256:bbbbbbbbbbbb +- +unsigned$/)
    const pages = standIn.requests.filter((r) => r.path === '/admin/v1/decisions').slice(-2)
    assert.deepEqual(pages.map((p) => p.query.before), [undefined, '2'])
  })

  it('passes the filters and the limit, and prints full events for --json', async () => {
    const since = '2026-06-01T00:00:00Z'
    const args = ['ls', '--upstream', 'docker.io', '--repository', 'acme/app', '--digest', DIGEST_A, '--verdict', 'detained', '--since', since, '--limit', '1', '--json']
    const out = await cli(decisionsCommand, [...args, '--token', VIEWER, ...tlsFlags])
    assert.equal(out.code, 0, out.stderr)
    const { decisions } = JSON.parse(out.stdout) as { decisions: Array<{ digest: string; client: { identity: string } }> }
    assert.equal(decisions.length, 1)
    assert.equal(decisions[0]?.digest, DIGEST_A)
    assert.deepEqual(standIn.requests.at(-1)?.query, {
      upstream: 'docker.io',
      repository: 'acme/app',
      digest: DIGEST_A,
      verdict: 'detained',
      since: '2026-06-01T00:00:00.000Z',
      limit: '1',
    })
  })

  it('turns --since 1h into a time', async () => {
    const out = await cli(decisionsCommand, ['ls', '--since', '1h', '--json', '--token', VIEWER, ...tlsFlags], {}, T0)
    assert.equal(out.code, 0, out.stderr)
    assert.equal(standIn.requests.at(-1)?.query.since, new Date(T0 - 3_600_000).toISOString())
  })

  it('fails without --ca: Customs’ certificate is not trusted', async () => {
    const out = await cli(decisionsCommand, ['ls', '--token', VIEWER, '--url', standIn.url])
    assert.equal(out.code, 1)
    assert.match(out.stderr, /^customs: cannot reach https:\/\/127\.0\.0\.1:\d+: .*(self[- ]signed|unable to verify|local issuer)/i)
  })

  it('exits 2 when the --ca file cannot be read', async () => {
    const out = await cli(decisionsCommand, ['ls', '--token', VIEWER, '--url', standIn.url, '--ca', join(tlsDir, 'missing.crt')])
    assert.equal(out.code, 2)
    assert.match(out.stderr, /--ca .*missing\.crt: ENOENT/)
  })

  it('exits 2 when the --key file is over the bound for such files, without reading it whole', async () => {
    // Sparse: 64 MiB that take no disk, a file named by mistake.
    const huge = join(tlsDir, 'huge.key')
    await writeFile(huge, '')
    await truncate(huge, 64 * 1024 * 1024)
    const out = await cli(decisionsCommand, ['ls', '--token', VIEWER, ...tlsFlags.slice(0, -1), huge])
    assert.equal(out.code, 2)
    assert.match(out.stderr, /^customs: --key .*huge\.key: over the 4\.0 MiB limit\n/)
  })
})
