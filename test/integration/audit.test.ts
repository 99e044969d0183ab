// The audit log end to end, against a real registry, once with the in-process state and once with
// a real redis-server: a denied and a cleared pull appear in /admin/v1/decisions with client,
// revision and reasons; a release through the admin API appears in /admin/v1/audit with its actor,
// and refused admin requests do not; bad parameters are 400s; and `customs audit verify` passes
// the intact JSON-lines file (and Redis stream) and points at an edited or deleted entry.

import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { Redis } from 'ioredis'
import { startCustoms, type CustomsHandle } from '../helpers/customs.js'
import { buildImage, pushImage, type BuiltImage } from '../helpers/images.js'
import { isolatedEnv, makeTempDir, run, type RunResult } from '../helpers/processes.js'
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js'
import { startRegistry, type RegistryHandle } from '../helpers/registry.js'
import { RedisStateStore } from '../../src/state/redis.js'
import type { StateStore } from '../../src/state/store.js'
import { ACME_NON_ROOT_POLICY, sha256hex } from '../helpers/admin.js'

const ROOT = resolve(import.meta.dirname, '../..')
const MAIN = join(ROOT, 'src/main.ts')
const VIEWER = 'viewer-token-0123456789'
const APPROVER = 'approver-token-0123456789'
const ADMIN = 'admin-token-0123456789'

interface OciErrorBody {
  errors: Array<{ code: string; message: string }>
}
interface Decision {
  seq: number
  type: string
  upstream: string
  repository: string
  reference: string
  digest: string
  verdict: string
  revision: string
  reasons: string[]
  client?: { address?: string; userAgent?: string }
}
interface Entry {
  seq: number
  prev: string
  hash: string
  event: { type: string; actor?: string; action?: string; digest?: string; reasons?: string[]; repository?: string }
}

let registry: RegistryHandle
let denied: BuiltImage
let cleared: BuiltImage

function customsCli(args: string[]): Promise<RunResult> {
  return run(process.execPath, ['--import', 'tsx', MAIN, ...args], { cwd: ROOT, env: isolatedEnv(), allowFailure: true, timeoutMs: 60_000 })
}

before(async () => {
  registry = await startRegistry()
  denied = buildImage({ mediaType: 'oci', layers: [4096] })
  cleared = buildImage({ mediaType: 'oci', layers: [2048] })
  await pushImage(registry, 'acme/app', 'v1', denied)
  await pushImage(registry, 'other/app', 'v1', cleared)
})

after(async () => {
  await registry.stop()
})

describe('customs audit verify, usage', () => {
  it('exits 2 without exactly one of --file and --config', async () => {
    const none = await customsCli(['audit', 'verify'])
    assert.equal(none.code, 2)
    assert.match(none.stderr, /exactly one of --file or --config/)
    const both = await customsCli(['audit', 'verify', '--file', 'a', '--config', 'b'])
    assert.equal(both.code, 2)
  })

  it('exits 2 for the memory backend, which keeps the log inside the process', async () => {
    const work = await makeTempDir('audit-cli-')
    try {
      const config = join(work, 'customs.yaml')
      await writeFile(config, 'state: { backend: memory }\n')
      const res = await customsCli(['audit', 'verify', '--config', config])
      assert.equal(res.code, 2)
      assert.match(res.stderr, /cannot be verified from outside/)
    } finally {
      await rm(work, { recursive: true, force: true })
    }
  })
})

for (const backend of ['memory', 'redis'] as const) {
  describe(`the audit log with ${backend} state`, () => {
    let customs: CustomsHandle
    let work: string
    let auditFile: string
    let server: RedisServer | undefined
    let state: StateStore | undefined
    let stateConfig = ''

    const get = (path: string, token = VIEWER): Promise<Response> =>
      fetch(`${customs.url}${path}`, { headers: { Authorization: `Bearer ${token}` } })
    const pull = (repository: string, image: BuiltImage): Promise<Response> =>
      fetch(`${customs.url}/v2/${repository}/manifests/v1`, { headers: { Accept: image.mediaType, 'User-Agent': `audit-test/${backend}` } })
    const flush = async (): Promise<void> => assert.equal(await customs.services.audit.flush(10_000), true)

    before(async () => {
      work = await makeTempDir('audit-')
      auditFile = join(work, 'audit.jsonl')
      const policyDir = join(work, 'policies')
      await mkdir(policyDir)
      await writeFile(join(policyDir, 'root.yaml'), ACME_NON_ROOT_POLICY)
      if (backend === 'redis') {
        server = await startRedisServer()
        const prefix = `t-${randomUUID()}`
        state = await RedisStateStore.connect({ url: server.url, prefix })
        stateConfig = `state: { backend: redis, redis: { url: "${server.url}", prefix: "${prefix}" } }\n`
      }
      customs = await startCustoms({
        ...(state !== undefined ? { state } : {}),
        config: `upstreams: [{ name: docker.io, url: "${registry.url}", default: true }]
policy: { path: "${policyDir}", watch: false }
audit: { file: "${auditFile}" }
${stateConfig}admin:
  tokens:
    - { name: alice, sha256: "${sha256hex(VIEWER)}", role: viewer }
    - { name: bob, sha256: "${sha256hex(APPROVER)}", role: approver }
    - { name: carol, sha256: "${sha256hex(ADMIN)}", role: admin }
`,
      })
      const no = await pull('acme/app', denied)
      assert.equal(no.status, 403, await no.text())
      const yes = await pull('other/app', cleared)
      assert.equal(yes.status, 200, await yes.text())
      await flush()
    })

    after(async () => {
      await customs.stop()
      await state?.close()
      if (server !== undefined && !server.external) await server.stop()
      await rm(work, { recursive: true, force: true })
    })

    it('lists the denied and the cleared pull, newest first, with client, revision and reasons', async () => {
      const res = await get('/admin/v1/decisions')
      assert.equal(res.status, 200)
      const { decisions, next } = (await res.json()) as { decisions: Decision[]; next?: string }
      assert.equal(next, undefined)
      assert.deepEqual(decisions.map((d) => [d.repository, d.verdict]), [['other/app', 'cleared'], ['acme/app', 'detained']])
      const revision = customs.services.policies.current().revision
      for (const d of decisions) {
        assert.equal(d.type, 'decision')
        assert.equal(d.upstream, 'docker.io')
        assert.equal(d.reference, 'v1')
        assert.equal(d.revision.includes(revision), true, `${d.revision} names policy revision ${revision}`)
        assert.equal(d.client?.userAgent, `audit-test/${backend}`)
        assert.equal(typeof d.client?.address, 'string')
      }
      const [ok, no] = decisions as [Decision, Decision]
      assert.equal(ok.digest, cleared.manifestDigest)
      assert.deepEqual(ok.reasons, [])
      assert.equal(no.digest, denied.manifestDigest)
      assert.ok(no.reasons.some((r) => r.includes('must-be-non-root')), no.reasons.join('; '))
    })

    it('filters decisions and pages them with the before cursor', async () => {
      const byVerdict = (await (await get('/admin/v1/decisions?verdict=detained')).json()) as { decisions: Decision[] }
      assert.deepEqual(byVerdict.decisions.map((d) => d.repository), ['acme/app'])
      const byRepo = (await (await get('/admin/v1/decisions?repository=other/app&upstream=docker.io')).json()) as { decisions: Decision[] }
      assert.deepEqual(byRepo.decisions.map((d) => d.repository), ['other/app'])
      const byDigest = (await (await get(`/admin/v1/decisions?digest=${denied.manifestDigest}`)).json()) as { decisions: Decision[] }
      assert.deepEqual(byDigest.decisions.map((d) => d.digest), [denied.manifestDigest])
      const future = (await (await get('/admin/v1/decisions?since=2999-01-01T00:00:00Z')).json()) as { decisions: Decision[] }
      assert.deepEqual(future.decisions, [])
      const first = (await (await get('/admin/v1/decisions?limit=1')).json()) as { decisions: Decision[]; next?: string }
      assert.deepEqual(first.decisions.map((d) => d.repository), ['other/app'])
      assert.ok(first.next !== undefined)
      const second = (await (await get(`/admin/v1/decisions?limit=1&before=${first.next}`)).json()) as { decisions: Decision[] }
      assert.deepEqual(second.decisions.map((d) => d.repository), ['acme/app'])
    })

    describe('when parameters are bad', () => {
      const cases: Array<[string, string, string]> = [
        ['limit=0', '/admin/v1/decisions?limit=0', 'PAGINATION_NUMBER_INVALID'],
        ['limit=501', '/admin/v1/decisions?limit=501', 'PAGINATION_NUMBER_INVALID'],
        ['before=abc', '/admin/v1/decisions?before=abc', 'PAGINATION_NUMBER_INVALID'],
        ['verdict=maybe', '/admin/v1/decisions?verdict=maybe', 'UNSUPPORTED'],
        ['since=yesterday', '/admin/v1/decisions?since=yesterday', 'UNSUPPORTED'],
        ['a bad digest', '/admin/v1/decisions?digest=sha256:xyz', 'DIGEST_INVALID'],
        ['a bad repository', '/admin/v1/decisions?repository=UPPER/Case', 'NAME_INVALID'],
        ['a bad upstream', '/admin/v1/decisions?upstream=-x-', 'NAME_INVALID'],
        ['an unknown type', '/admin/v1/audit?type=nonsense', 'UNSUPPORTED'],
      ]
      for (const [what, path, code] of cases) {
        it(`answers 400 ${code} for ${what}`, async () => {
          const res = await get(path, ADMIN)
          assert.equal(res.status, 400)
          assert.equal(((await res.json()) as OciErrorBody).errors[0]?.code, code)
        })
      }
    })

    it('keeps the raw audit entries to the admin role', async () => {
      const res = await get('/admin/v1/audit', APPROVER)
      assert.equal(res.status, 403)
      assert.equal(((await res.json()) as OciErrorBody).errors[0]?.code, 'DENIED')
      const anonymous = await fetch(`${customs.url}/admin/v1/decisions`)
      assert.equal(anonymous.status, 401)
      await anonymous.body?.cancel()
    })

    it('records a release with its actor, and no refused or failed admin request', async () => {
      const release = (token: string, body: unknown): Promise<Response> =>
        fetch(`${customs.url}/admin/v1/quarantine/docker.io/${denied.manifestDigest}/release`, {
          method: 'POST',
          headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
          body: JSON.stringify(body),
        })
      const expires = new Date(Date.now() + 24 * 3600_000).toISOString()
      const refused = await release(VIEWER, { repository: 'acme/app', reason: 'viewer tries', expires })
      assert.equal(refused.status, 403)
      await refused.body?.cancel()
      const unknown = await release(APPROVER, { repository: 'acme/nothing', reason: 'no record', expires })
      assert.equal(unknown.status, 404)
      await unknown.body?.cancel()
      const invalid = await release(APPROVER, { repository: 'acme/app', reason: 'x', expires: 'tomorrow' })
      assert.equal(invalid.status, 400)
      await invalid.body?.cancel()
      const done = await release(APPROVER, { repository: 'acme/app', reason: 'CVE-1 accepted', expires })
      assert.equal(done.status, 200)
      await done.body?.cancel()
      await flush()

      const res = await get('/admin/v1/audit?type=release', ADMIN)
      assert.equal(res.status, 200)
      const { entries } = (await res.json()) as { entries: Entry[] }
      assert.equal(entries.length, 1)
      const entry = entries[0] as Entry
      assert.equal(entry.event.actor, 'bob')
      assert.equal(entry.event.action, 'release')
      assert.equal(entry.event.digest, denied.manifestDigest)
      assert.deepEqual(entry.event.reasons, ['CVE-1 accepted'])
      assert.match(entry.hash, /^[0-9a-f]{64}$/)

      const all = (await (await get('/admin/v1/audit', ADMIN)).json()) as { entries: Entry[] }
      // Newest first and linked: each entry's prev is the hash of the one listed after it.
      for (let i = 0; i + 1 < all.entries.length; i++) {
        assert.equal(all.entries[i]?.prev, all.entries[i + 1]?.hash)
        assert.equal(all.entries[i]?.seq, (all.entries[i + 1]?.seq ?? 0) + 1)
      }
      assert.ok(all.entries.every((e) => e.event.reasons?.includes('viewer tries') !== true && e.event.repository !== 'acme/nothing'))
    })

    it('records a cache eviction with its actor, and not one refused to a viewer', async () => {
      const evict = (token: string): Promise<Response> =>
        fetch(`${customs.url}/admin/v1/cache/evict`, {
          method: 'POST',
          headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
          body: JSON.stringify({ all: true }),
        })
      const refused = await evict(VIEWER)
      assert.equal(refused.status, 403)
      await refused.body?.cancel()
      const done = await evict(ADMIN)
      assert.equal(done.status, 200)
      await done.body?.cancel()
      await flush()
      const { entries } = (await (await get('/admin/v1/audit?type=admin', ADMIN)).json()) as { entries: Entry[] }
      assert.deepEqual(entries.map((e) => [e.event.action, e.event.actor]), [['evict', 'carol']])
    })

    describe('customs audit verify --file', () => {
      it('exits 0 on the intact file', async () => {
        await flush()
        const res = await customsCli(['audit', 'verify', '--file', auditFile])
        assert.equal(res.code, 0, res.stdout + res.stderr)
        assert.match(res.stdout, /intact, verified \d+ entries from seq 1 to seq \d+/)
      })

      it('exits 1 at an edited line, naming its seq and line', async () => {
        const lines = (await readFile(auditFile, 'utf8')).split('\n')
        const edited = join(work, 'edited.jsonl')
        // The cleared pull's decision, turned into a detention after the fact.
        const i = lines.findIndex((l) => l.includes('"verdict":"cleared"'))
        assert.ok(i >= 0)
        lines[i] = (lines[i] as string).replace('"verdict":"cleared"', '"verdict":"detained"')
        await writeFile(edited, lines.join('\n'))
        const res = await customsCli(['audit', 'verify', '--file', edited])
        assert.equal(res.code, 1, res.stdout + res.stderr)
        const at = `entry seq ${i + 1} (line ${i + 1}): hash does not match its content (edited)`
        assert.ok(res.stdout.includes(at), res.stdout)
      })

      it('exits 1 at a deleted line, naming the seq missing', async () => {
        const lines = (await readFile(auditFile, 'utf8')).split('\n')
        const deleted = join(work, 'deleted.jsonl')
        await writeFile(deleted, lines.filter((_, i) => i !== 0).join('\n'))
        const res = await customsCli(['audit', 'verify', '--file', deleted])
        assert.equal(res.code, 1, res.stdout + res.stderr)
        assert.match(res.stdout, /entry seq 2 \(line 1\): the log starts at seq 2: entry seq 1 is missing \(deleted\)/)
      })
    })

    if (backend === 'redis') {
      describe('customs audit verify --config', () => {
        it('exits 0 on the intact stream, and 1 once an entry is deleted from it', async () => {
          await flush()
          const config = join(work, 'customs.yaml')
          await writeFile(config, stateConfig)
          const ok = await customsCli(['audit', 'verify', '--config', config])
          assert.equal(ok.code, 0, ok.stdout + ok.stderr)
          assert.match(ok.stdout, /audit stream .*: intact, verified \d+ entries from seq 1/)

          const redis = new Redis((server as RedisServer).url)
          try {
            const prefix = /prefix: "([^"]+)"/.exec(stateConfig)?.[1] as string
            assert.equal(await redis.xdel(`${prefix}:v1:audit`, '2-0'), 1)
          } finally {
            redis.disconnect()
          }
          const broken = await customsCli(['audit', 'verify', '--config', config])
          assert.equal(broken.code, 1, broken.stdout + broken.stderr)
          assert.match(broken.stdout, /entry seq 3 \(stream id 3-0\): entry seq 2 is missing after seq 1 \(deleted\)/)
        })
      })
    }
  })
}
