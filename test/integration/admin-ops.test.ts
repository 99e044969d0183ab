// The operations admin API and the metrics behind it, against a running Customs with three
// upstreams: Debian's docker-registry as docker.io (real pulls, cache figures, eviction and
// refetch), an in-process fake that can hold a response (fills and inspections in flight), and a
// fake that answers 503 to everything (the circuit breaker). Each metric is read from /metrics
// after the action that moves it.

import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { readFile, stat, mkdir, writeFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { CustomsEvent } from '../../src/audit/events.js'
import type { Digest } from '../../src/oci/digest.js'
import { startCustoms, type CustomsHandle } from '../helpers/customs.js'
import { ociImage, putImage, send, startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js'
import { buildImage, pushImage, randomBlob, type BuiltImage } from '../helpers/images.js'
import { waitFor } from '../helpers/ports.js'
import { makeTempDir } from '../helpers/processes.js'
import { startRegistry, type RegistryHandle } from '../helpers/registry.js'
import { CustomsError } from '../../src/errors.js'
import { MemoryStateStore } from '../../src/state/memory.js'
import { legacySigLayer } from '../helpers/sign.js'
import { pushLegacySignature } from '../helpers/signed-images.js'
import { sha256hex } from '../helpers/admin.js'

const TOKENS = { viewer: 'viewer-token-0123456789', approver: 'approver-token-0123456789', admin: 'admin-token-0123456789' }

// An audit policy every image fails (no image here sets a user) and an enforcing one for one
// repository: the per-policy verdict counter then moves under both names.
const POLICIES = `
apiVersion: customs.dev/v1
kind: ImagePolicy
metadata: { name: audit-non-root }
spec:
  mode: audit
  match: [{ repository: "**" }]
  rules: { nonRoot: true }
---
apiVersion: customs.dev/v1
kind: ImagePolicy
metadata: { name: blocked-repo }
spec:
  mode: enforce
  match: [{ repository: "acme/blocked" }]
  rules: { nonRoot: true }
`

let registry: RegistryHandle
let slow: FakeUpstream
let failing: FakeUpstream
let customs: CustomsHandle
let work: string
const events: CustomsEvent[] = []
let app: BuiltImage
let blocked: BuiltImage

interface OciErrorBody {
  errors: Array<{ code: string; message: string }>
}

/** An admin request with `token` as bearer token; null sends no Authorization header. */
async function admin(path: string, token: string | null = TOKENS.viewer, body?: unknown, contentType = 'application/json'): Promise<Response> {
  const headers: Record<string, string> = token === null ? {} : { Authorization: `Bearer ${token}` }
  if (body === undefined) return fetch(`${customs.url}${path}`, { headers })
  const text = typeof body === 'string' ? body : JSON.stringify(body)
  return fetch(`${customs.url}${path}`, { method: 'POST', headers: { ...headers, 'Content-Type': contentType }, body: text })
}

/** The value of one sample in the Prometheus text, matched by name and a subset of its labels. */
async function metric(name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const text = await (await fetch(`${customs.url}/metrics`)).text()
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (m === null || m[1] !== name) continue
    const found = new Map([...(m[2] ?? '').matchAll(/([a-z_]+)="([^"]*)"/g)].map((l) => [l[1], l[2]]))
    if (Object.entries(labels).every(([k, v]) => found.get(k) === v)) return Number(m[3])
  }
  return undefined
}

/** How many times the registry answered a GET of this blob (its access log). */
async function registryBlobGets(repo: string, digest: string): Promise<number> {
  const log = await readFile(registry.process.logFile, 'utf8')
  return log.split('\n').filter((l) => l.includes(`"GET /v2/${repo}/blobs/${digest} `)).length
}

/** Pulls an image's manifest by tag and every blob through Customs, checking each answer. */
async function pull(repo: string, image: BuiltImage, tag = 'v1'): Promise<void> {
  const res = await fetch(`${customs.url}/v2/${repo}/manifests/${tag}`, { headers: { Accept: image.mediaType } })
  assert.equal(res.status, 200, await res.clone().text())
  assert.deepEqual(Buffer.from(await res.arrayBuffer()), image.manifest)
  for (const [digest, bytes] of [[image.configDigest, image.config], ...image.layers.map((l) => [l.digest, l.bytes] as const)] as const) {
    const blob = await fetch(`${customs.url}/v2/${repo}/blobs/${digest}`)
    assert.equal(blob.status, 200)
    assert.deepEqual(Buffer.from(await blob.arrayBuffer()), bytes)
  }
  // A client has its last byte once the bytes are verified; the commit to the cache follows.
  const digests = [image.manifestDigest, image.configDigest, ...image.layers.map((l) => l.digest)]
  await waitFor('the blobs committed to the cache', async () => {
    const { blobs } = (await (await admin('/admin/v1/cache/blobs?limit=1000')).json()) as { blobs: Array<{ digest: string }> }
    return digests.every((d) => blobs.some((b) => b.digest === d))
  }, 10_000)
}

before(async () => {
  registry = await startRegistry()
  slow = await startFakeUpstream()
  failing = await startFakeUpstream()
  failing.intercept = (req, res) => {
    send(res, 503, '{"errors":[{"code":"UNAVAILABLE","message":"down"}]}', 'application/json', req.method === 'HEAD')
    return true
  }
  app = buildImage({ mediaType: 'oci', layers: [randomBlob(200_000, 'ops-app')] })
  blocked = buildImage({ mediaType: 'oci', layers: [randomBlob(1000, 'ops-blocked')] })
  await pushImage(registry, 'acme/app', 'v1', app)
  await pushImage(registry, 'acme/blocked', 'v1', blocked)
  work = await makeTempDir('admin-ops-')
  const policyDir = join(work, 'policies')
  await mkdir(policyDir)
  await writeFile(join(policyDir, 'policies.yaml'), POLICIES)
  customs = await startCustoms({
    config: `
upstreams:
  - { name: docker.io, url: "${registry.url}", default: true, aliases: [hub] }
  - { name: slow.test, url: "${slow.url}", retries: { max: 0 } }
  - name: failing.test
    url: "${failing.url}"
    retries: { max: 0 }
    breaker: { failures: 2, cooldown: 10m }
policy: { path: "${policyDir}", watch: false }
admin:
  tokens:
    - { name: vera, sha256: "${sha256hex(TOKENS.viewer)}", role: viewer }
    - { name: april, sha256: "${sha256hex(TOKENS.approver)}", role: approver }
    - { name: adam, sha256: "${sha256hex(TOKENS.admin)}", role: admin }
`,
  })
  customs.services.events.subscribe((e) => events.push(e))
})

after(async () => {
  await customs?.stop()
  await registry?.stop()
  await slow?.close()
  await failing?.close()
  await rm(work, { recursive: true, force: true })
})

describe('roles', () => {
  const reads = ['/admin/v1/upstreams', '/admin/v1/cache', '/admin/v1/cache/blobs']
  for (const route of reads) {
    describe(`GET ${route}`, () => {
      it('answers 401 UNAUTHORIZED with a Bearer challenge without a token', async () => {
        const res = await admin(route, null)
        assert.equal(res.status, 401)
        assert.equal(res.headers.get('www-authenticate'), 'Bearer realm="customs-admin"')
        assert.equal(((await res.json()) as OciErrorBody).errors[0]?.code, 'UNAUTHORIZED')
      })
      it('answers 401 UNAUTHORIZED for a wrong token', async () => {
        const res = await admin(route, 'not-the-token')
        assert.equal(res.status, 401)
        await res.body?.cancel()
      })
      for (const role of ['viewer', 'approver', 'admin'] as const) {
        it(`answers a ${role}`, async () => {
          const res = await admin(route, TOKENS[role])
          assert.equal(res.status, 200)
          assert.equal(typeof (await res.json()), 'object')
        })
      }
    })
  }

  describe('POST /admin/v1/cache/evict', () => {
    const body = { digest: `sha256:${'0'.repeat(64)}` }
    it('answers 401 without a token and for a wrong token', async () => {
      for (const token of [null, 'not-the-token']) {
        const res = await admin('/admin/v1/cache/evict', token, body)
        assert.equal(res.status, 401)
        await res.body?.cancel()
      }
    })
    for (const role of ['viewer', 'approver'] as const) {
      it(`answers 403 DENIED to a ${role}`, async () => {
        const res = await admin('/admin/v1/cache/evict', TOKENS[role], body)
        assert.equal(res.status, 403)
        const error = ((await res.json()) as OciErrorBody).errors[0]
        assert.equal(error?.code, 'DENIED')
        assert.match(error?.message ?? '', /needs the admin role/)
      })
    }
    it('answers an admin with what was removed: nothing, the digest is not cached', async () => {
      const res = await admin('/admin/v1/cache/evict', TOKENS.admin, body)
      assert.equal(res.status, 200)
      assert.deepEqual(await res.json(), { removed: [], bytes: 0, busy: [], absent: [body.digest] })
    })
  })
})

describe('after a pull through the registry', () => {
  before(async () => {
    await pull('acme/app', app)
  })

  it('GET /admin/v1/cache counts the blobs, bytes, lookups and bytes moved', async () => {
    const res = await admin('/admin/v1/cache')
    assert.equal(res.status, 200)
    const cache = (await res.json()) as Record<string, number | string | null | Record<string, number>>
    const layer = app.layers[0]?.bytes.byteLength ?? 0
    assert.equal(cache.path, customs.storage)
    assert.equal(cache.maxSize, customs.services.config.storage.maxSize)
    // The manifest, its config and its layer are on disk.
    assert.ok((cache.blobs as number) >= 3, JSON.stringify(cache))
    assert.equal(cache.bytes, customs.services.store.totalBytes)
    assert.ok((cache.bytes as number) >= layer + app.config.byteLength + app.manifest.byteLength)
    assert.ok((cache.misses as number) >= 1)
    assert.ok((cache.bytesServed as number) >= layer)
    assert.ok((cache.bytesFetched as number) >= layer)
    assert.equal(typeof cache.hitRatio, 'number')
  })

  it('GET /admin/v1/cache/blobs lists each blob with its size and last access, page by page', async () => {
    const all = (await (await admin('/admin/v1/cache/blobs?limit=1000')).json()) as {
      blobs: Array<{ digest: string; size: number; lastAccess: number }>
      next?: string
    }
    assert.equal(all.next, undefined)
    const layer = all.blobs.find((b) => b.digest === app.layers[0]?.digest)
    assert.equal(layer?.size, app.layers[0]?.bytes.byteLength)
    assert.ok(typeof layer?.lastAccess === 'number' && layer.lastAccess > Date.parse('2020-01-01'))
    assert.ok(all.blobs.some((b) => b.digest === app.manifestDigest))
    const seen: string[] = []
    let after: string | undefined
    for (let pages = 0; pages <= all.blobs.length; pages++) {
      const res = await admin(`/admin/v1/cache/blobs?limit=1${after === undefined ? '' : `&after=${after}`}`)
      assert.equal(res.status, 200)
      const page = (await res.json()) as { blobs: Array<{ digest: string }>; next?: string }
      seen.push(...page.blobs.map((b) => b.digest))
      if (page.next === undefined) break
      after = page.next
    }
    assert.deepEqual(seen, all.blobs.map((b) => b.digest))
  })

  it('counts upstream latency, inspections, per-policy verdicts and cache lookups in /metrics', async () => {
    assert.ok(((await metric('customs_upstream_request_duration_seconds_count', { upstream: 'docker.io' })) ?? 0) >= 1)
    assert.ok(((await metric('customs_inspections_total', { result: 'cleared-with-warnings' })) ?? 0) >= 1)
    assert.ok(((await metric('customs_inspection_duration_seconds_count')) ?? 0) >= 1)
    assert.ok(((await metric('customs_policy_verdicts_total', { policy: 'audit-non-root', outcome: 'warned' })) ?? 0) >= 1)
    assert.ok(((await metric('customs_cache_requests_total', { kind: 'blob', result: 'miss' })) ?? 0) >= 1)
  })

  describe('POST /admin/v1/cache/evict of the layer', () => {
    const repo = 'acme/app'
    let digest: Digest
    let evicted: Response
    let evictionsBefore: number
    before(async () => {
      digest = app.layers[0]?.digest as Digest
      evictionsBefore = (await metric('customs_cache_evictions_total', { cause: 'admin' })) ?? 0
      evicted = await admin('/admin/v1/cache/evict', TOKENS.admin, { digest })
    })

    it('answers the blob removed with its size, and removes its file', async () => {
      assert.equal(evicted.status, 200)
      const size = app.layers[0]?.bytes.byteLength
      assert.deepEqual(await evicted.json(), { removed: [{ digest, size }], bytes: size, busy: [], absent: [] })
      await assert.rejects(stat(customs.services.store.paths.blob(digest)), { code: 'ENOENT' })
      const inventory = (await (await admin('/admin/v1/cache/blobs?limit=1000')).json()) as { blobs: Array<{ digest: string }> }
      assert.ok(!inventory.blobs.some((b) => b.digest === digest))
    })

    it('counts the eviction by cause and announces it as an admin event with its actor', async () => {
      assert.equal(await metric('customs_cache_evictions_total', { cause: 'admin' }), evictionsBefore + 1)
      const event = events.find((e) => e.type === 'admin' && e.action === 'evict' && e.digest === digest)
      assert.equal(event?.actor, 'adam')
      assert.equal(event?.detail?.removed, 1)
    })

    it('refetches the blob from the upstream once on the next pull, verified, and leaves the verdict alone', async () => {
      await waitFor('the first fetch in the registry log', async () => (await registryBlobGets(repo, digest)) === 1, 10_000)
      const record = await customs.services.state.getManifest({ upstream: 'docker.io', repository: repo }, app.manifestDigest as Digest)
      await pull(repo, app)
      await pull(repo, app)
      await waitFor('the refetch in the registry log', async () => (await registryBlobGets(repo, digest)) === 2, 10_000)
      const now = await customs.services.state.getManifest({ upstream: 'docker.io', repository: repo }, app.manifestDigest as Digest)
      assert.deepEqual(now?.verdict, record?.verdict)
      assert.equal((await stat(customs.services.store.paths.blob(digest))).size, app.layers[0]?.bytes.byteLength)
      assert.equal(await registryBlobGets(repo, digest), 2)
    })
  })
})

describe('when a fill is in progress', () => {
  const bytes = randomBlob(256 * 1024, 'ops-held-fill')
  const image = ociImage([bytes])
  const layer = image.layers[0] as Buffer
  const digest = `sha256:${createHash('sha256').update(layer).digest('hex')}` as Digest
  let letGo: () => void = () => {}
  const held = new Promise<void>((resolve) => (letGo = resolve))

  before(async () => {
    putImage(slow, 'acme/fill', image, 'v1')
    // Half the blob at once, the rest only when the test lets go: the fill is surely running.
    slow.intercept = async (req, res, path) => {
      if (!path.includes(`/blobs/${digest}`) || req.method !== 'GET') return false
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': String(layer.byteLength) })
      res.write(layer.subarray(0, layer.byteLength / 2))
      await held
      res.end(layer.subarray(layer.byteLength / 2))
      return true
    }
    const manifest = await fetch(`${customs.url}/v2/slow.test/acme/fill/manifests/v1`, { headers: { Accept: image.mediaType } })
    assert.equal(manifest.status, 200)
    await manifest.body?.cancel()
  })
  after(() => {
    letGo()
    slow.intercept = undefined
  })

  it('leaves the filling blob alone, reports it busy, and the client still gets every byte', async () => {
    const pulling = await fetch(`${customs.url}/v2/slow.test/acme/fill/blobs/${digest}`)
    assert.equal(pulling.status, 200)
    const one = await admin('/admin/v1/cache/evict', TOKENS.admin, { digest })
    assert.equal(one.status, 200)
    assert.deepEqual(await one.json(), { removed: [], bytes: 0, busy: [digest], absent: [] })
    const all = await admin('/admin/v1/cache/evict', TOKENS.admin, { all: true })
    assert.equal(all.status, 200)
    // Not committed yet, so not among "all" (what is on disk): untouched either way.
    const result = (await all.json()) as { busy: string[]; removed: Array<{ digest: string }> }
    assert.ok(!result.removed.some((r) => r.digest === digest))
    assert.ok(result.removed.length > 0, 'the committed blobs of earlier pulls were removed')
    letGo()
    assert.deepEqual(Buffer.from(await pulling.arrayBuffer()), layer)
    await waitFor('the fill to commit', async () => (await stat(customs.services.store.paths.blob(digest)).catch(() => undefined))?.size === layer.byteLength, 10_000)
    const announced = events.find((e) => e.type === 'admin' && e.action === 'evict' && e.detail?.scope === 'all')
    assert.equal(announced?.actor, 'adam')
  })
})

describe('single-flight waiters', () => {
  const image = ociImage([Buffer.from('held inspection layer')])
  let letGo: () => void = () => {}
  const held = new Promise<void>((resolve) => (letGo = resolve))

  before(() => {
    putImage(slow, 'acme/held', image, 'v1')
    slow.intercept = async (req, _res, path) => {
      if (req.method === 'GET' && path.includes(`/acme/held/manifests/${image.digest}`)) await held
      return false
    }
  })
  after(() => {
    letGo()
    slow.intercept = undefined
  })

  it('counts callers waiting on one inspection while it runs, and none after', async () => {
    const asks = Array.from({ length: 3 }, () =>
      fetch(`${customs.url}/v2/slow.test/acme/held/manifests/${image.digest}`, { headers: { Accept: image.mediaType } })
    )
    await waitFor('two waiters', async () => (await metric('customs_singleflight_waiters', { kind: 'inspection' })) === 2, 10_000)
    letGo()
    for (const res of await Promise.all(asks)) {
      assert.equal(res.status, 200)
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), image.manifest)
    }
    assert.equal(await metric('customs_singleflight_waiters', { kind: 'inspection' }), 0)
    assert.equal(await metric('customs_singleflight_waiters', { kind: 'resolution' }), 0)
  })
})

describe('a denied pull', () => {
  it('counts the enforcing policy as denied and the quarantine record in /metrics', async () => {
    const before = (await metric('customs_quarantine_records')) ?? -1
    assert.equal(before, 0)
    const res = await fetch(`${customs.url}/v2/acme/blocked/manifests/v1`, { headers: { Accept: blocked.mediaType } })
    assert.equal(res.status, 403)
    await res.body?.cancel()
    assert.equal(await metric('customs_quarantine_records'), 1)
    assert.ok(((await metric('customs_policy_verdicts_total', { policy: 'blocked-repo', outcome: 'denied' })) ?? 0) >= 1)
    assert.ok(((await metric('customs_inspections_total', { result: 'detained' })) ?? 0) >= 1)
  })
})

describe('a signature that fails verification', () => {
  it('is counted by bounded reason in /metrics', async () => {
    const signed = buildImage({ mediaType: 'oci', layers: [randomBlob(1000, 'ops-signed')] })
    await pushImage(registry, 'acme/signed', 'v1', signed)
    // Over the size limit: discovery refuses it without reading it (reason: malformed).
    const big = randomBlob(1024 * 1024 + 1, 'ops-big-signature')
    await pushLegacySignature(registry, 'acme/signed', signed.manifestDigest, [legacySigLayer({ payload: big, signature: 'AAAA' })])
    const before = (await metric('customs_verification_failures_total', { reason: 'malformed' })) ?? 0
    const res = await fetch(`${customs.url}/v2/acme/signed/manifests/v1`, { headers: { Accept: signed.mediaType } })
    assert.equal(res.status, 200)
    await res.body?.cancel()
    assert.equal(await metric('customs_verification_failures_total', { reason: 'malformed' }), before + 1)
  })
})

describe('when an upstream answers 503', () => {
  before(async () => {
    // Two failures open the circuit (breaker.failures 2); the third is refused without a request.
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${customs.url}/v2/failing.test/acme/app/manifests/v1`)
      assert.equal(res.status, 503)
      await res.body?.cancel()
    }
  })

  it('GET /admin/v1/upstreams shows its circuit open, since when, the last error and the counts', async () => {
    const res = await admin('/admin/v1/upstreams')
    assert.equal(res.status, 200)
    const { upstreams } = (await res.json()) as { upstreams: Array<Record<string, unknown> & { circuit: { state: string; since: string } }> }
    assert.deepEqual(upstreams.map((u) => u.name), ['docker.io', 'slow.test', 'failing.test'])
    const down = upstreams.find((u) => u.name === 'failing.test')
    assert.equal(down?.circuit.state, 'open')
    assert.ok(Date.parse(down?.circuit.since ?? '') <= Date.now())
    assert.equal(down?.requests, 2)
    assert.equal(down?.errors, 3)
    assert.equal((down?.lastError as { kind: string }).kind, 'circuit-open')
    assert.equal(down?.lastSuccess, undefined)
    assert.equal(down?.url, `${failing.url}/`)
    const hub = upstreams.find((u) => u.name === 'docker.io')
    assert.equal(hub?.circuit.state, 'closed')
    assert.deepEqual(hub?.aliases, ['hub'])
    assert.equal(hub?.default, true)
    assert.ok(Date.parse(hub?.lastSuccess as string) > 0)
    assert.ok((hub?.requests as number) >= 1)
  })

  it('counts its errors by kind and its open circuit in /metrics', async () => {
    assert.equal(await metric('customs_upstream_errors_total', { upstream: 'failing.test', kind: 'server' }), 2)
    assert.equal(await metric('customs_upstream_errors_total', { upstream: 'failing.test', kind: 'circuit-open' }), 1)
    assert.equal(await metric('customs_upstream_circuit_open', { upstream: 'failing.test' }), 1)
  })
})

describe('GET /readyz', () => {
  it('reports the policy set in force', async () => {
    const res = await fetch(`${customs.url}/readyz`)
    assert.equal(res.status, 200)
    const body = (await res.json()) as { checks: Record<string, string>; policyRevision: string }
    assert.equal(body.checks.policies, 'ok')
    assert.equal(body.policyRevision, customs.services.policies.current().revision)
  })
})

describe('bad input', () => {
  const cases: Array<[string, unknown, string?]> = [
    ['a body that is not JSON', '{digest', undefined],
    ['a body that is not declared JSON', JSON.stringify({ all: true }), 'text/plain'],
    ['an empty object', {}],
    ['an unknown field', { digest: `sha256:${'1'.repeat(64)}`, force: true }],
    ['both a digest and all', { digest: `sha256:${'1'.repeat(64)}`, all: true }],
    ['all: false', { all: false }],
    ['a digest that is no digest', { digest: '../../etc/passwd' }],
    ['a short digest', { digest: 'sha256:abc' }],
    ['an array', [{ all: true }]],
  ]
  for (const [what, body, type] of cases) {
    it(`answers 400 to an eviction with ${what} and removes nothing`, async () => {
      const count = customs.services.store.blobCount
      const res = await admin('/admin/v1/cache/evict', TOKENS.admin, body, type)
      assert.equal(res.status, 400)
      const error = ((await res.json()) as OciErrorBody).errors[0]
      assert.equal(error?.code, 'UNSUPPORTED')
      assert.ok((error?.message ?? '').length > 0)
      // Removes nothing. A fill an earlier test started may commit meanwhile: the count may grow.
      assert.ok(customs.services.store.blobCount >= count, `${count - customs.services.store.blobCount} blobs were removed`)
    })
  }

  const queries: Array<[string, string]> = [
    ['limit=0', '/admin/v1/cache/blobs?limit=0'],
    ['limit above the maximum', '/admin/v1/cache/blobs?limit=1001'],
    ['limit=abc', '/admin/v1/cache/blobs?limit=abc'],
    ['an after that is no digest', '/admin/v1/cache/blobs?after=zzz'],
  ]
  for (const [what, path] of queries) {
    it(`answers 400 PAGINATION_NUMBER_INVALID for ${what}`, async () => {
      const res = await admin(path)
      assert.equal(res.status, 400)
      assert.equal(((await res.json()) as OciErrorBody).errors[0]?.code, 'PAGINATION_NUMBER_INVALID')
    })
  }
})

describe('when state does not answer a scrape', () => {
  let broken: CustomsHandle
  before(async () => {
    const state = new MemoryStateStore()
    state.countQuarantine = async () => {
      throw new CustomsError('STATE_UNAVAILABLE', 'redis state countQuarantine failed: test')
    }
    broken = await startCustoms({ state, config: `upstreams: [{ name: docker.io, url: "${registry.url}", default: true }]` })
  })
  after(async () => {
    await broken?.stop()
  })

  it('still answers /metrics, with NaN rather than a count for the quarantine', async () => {
    const res = await fetch(`${broken.url}/metrics`)
    assert.equal(res.status, 200)
    const text = await res.text()
    assert.match(text, /^customs_quarantine_records nan$/im)
    assert.match(text, /^customs_singleflight_waiters\{kind="inspection"\} 0$/m)
  })
})
