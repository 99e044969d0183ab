// Customs and a Redis that goes away. Started while Redis is away, Customs comes up not ready
// instead of exiting, serves /healthz, refuses pulls with 503, and becomes ready by itself when
// Redis answers. Redis killed mid-traffic (append-only file on): what was recently seen cleared
// keeps being served from memory, the rest is refused, /readyz says not ready, Customs reconnects
// by itself, and nothing Redis acknowledged (quarantine records, releases) is lost.

import assert from 'node:assert/strict'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js'
import { startCustomsProcess, type CustomsProcess } from '../helpers/customs-process.js'
import { ociImage, putImage, sha256, startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js'
import { waitFor } from '../helpers/ports.js'
import { makeTempDir } from '../helpers/processes.js'
import { ACME_NON_ROOT_POLICY, sha256hex } from '../helpers/admin.js'

let redis: RedisServer | undefined
let customs: CustomsProcess | undefined
let upstream: FakeUpstream | undefined

after(async () => {
  await customs?.stop()
  await redis?.stop()
  await upstream?.close()
})

describe('when Redis is down at start', () => {
  it('starts not ready, then becomes ready when Redis comes back', async () => {
    redis = await startRedisServer()
    await redis.kill()
    customs = await startCustomsProcess(`state: { backend: redis, redis: { url: "${redis.url}", prefix: startup } }\n`)
    assert.equal((await fetch(`${customs.url}/healthz`)).status, 200)
    assert.equal((await fetch(`${customs.url}/readyz`)).status, 503)
    const pull = await fetch(`${customs.url}/v2/library/alpine/manifests/3.19`)
    assert.equal(pull.status, 503)
    assert.equal(((await pull.json()) as { errors: Array<{ code: string }> }).errors[0]?.code, 'UNAVAILABLE')
    await redis.restart()
    await waitFor('readyz 200', async () => (await fetch(`${(customs as CustomsProcess).url}/readyz`)).status === 200, 20_000)
    await customs.stop()
    await redis.stop()
    customs = undefined
    redis = undefined
  })
})

const VIEWER = 'viewer-token-0123456789'
const APPROVER = 'approver-token-0123456789'

describe('when Redis is killed mid-traffic and restarted', () => {
  it('serves what it saw cleared, refuses the rest, reports not ready, reconnects, and loses nothing acknowledged', async () => {
    redis = await startRedisServer({ appendonly: true })
    upstream = await startFakeUpstream()
    const nonRoot = { architecture: 'amd64', os: 'linux', config: { User: '1000' } }
    const cleared = ociImage([Buffer.alloc(256 * 1024, 1)], nonRoot)
    const unseen = ociImage([Buffer.from('never pulled before the outage')], nonRoot)
    const detained = ociImage([Buffer.from('runs as root')])
    const released = ociImage([Buffer.from('runs as root, released')])
    putImage(upstream, 'acme/app', cleared, 'v1')
    putImage(upstream, 'acme/new', unseen, 'v1')
    putImage(upstream, 'acme/root', detained, 'v1')
    putImage(upstream, 'acme/rel', released, 'v1')
    const work = await makeTempDir('redis-loss-')
    await mkdir(join(work, 'policies'))
    await writeFile(join(work, 'policies', 'root.yaml'), ACME_NON_ROOT_POLICY)
    customs = await startCustomsProcess(`
storage: { path: ${join(work, 'storage')} }
state: { backend: redis, redis: { url: "${redis.url}", prefix: loss } }
policy: { path: "${join(work, 'policies')}", watch: false }
admin:
  tokens:
    - { name: alice, sha256: "${sha256hex(VIEWER)}", role: viewer }
    - { name: bob, sha256: "${sha256hex(APPROVER)}", role: approver }
upstreams:
  - name: docker.io
    url: ${upstream.url}
    default: true
    tagTtl: 0s
`)
    const url = customs.url
    const status = async (path: string): Promise<number> => {
      const res = await fetch(`${url}${path}`)
      await res.arrayBuffer().catch(() => undefined)
      return res.status
    }
    const admin = (path: string, body?: unknown): Promise<Response> =>
      fetch(`${url}/admin/v1${path}`, {
        method: body === undefined ? 'GET' : 'POST',
        headers: { Authorization: `Bearer ${body === undefined ? VIEWER : APPROVER}`, 'Content-Type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      })
    const layer = sha256(cleared.layers[0] as Buffer)

    // Before the outage: one cleared image pulled whole, two detained (one then released).
    assert.equal(await status('/v2/acme/app/manifests/v1'), 200)
    assert.equal(await status(`/v2/acme/app/blobs/${layer}`), 200)
    assert.equal(await status('/v2/acme/root/manifests/v1'), 403)
    assert.equal(await status('/v2/acme/rel/manifests/v1'), 403)
    const expires = new Date(Date.now() + 24 * 3600 * 1000).toISOString()
    const granted = await admin(`/quarantine/docker.io/${released.digest}/release`, { repository: 'acme/rel', reason: 'vendor fix due', expires })
    assert.equal(granted.status, 200)
    assert.equal(await status('/v2/acme/rel/manifests/v1'), 200)

    // Traffic while Redis dies: a bounded loop of pulls of the cleared image, Redis killed after
    // the fifth round. Every answer is 200: nothing cleared turns into an error. (tagTtl 0s: each
    // pull by tag is checked with the upstream, and its mapping cannot be recorded meanwhile.)
    const answers: number[] = []
    for (let round = 0; round < 20; round++) {
      if (round === 5) await (redis as RedisServer).kill()
      const batch = await Promise.all([
        status('/v2/acme/app/manifests/v1'),
        status(`/v2/acme/app/manifests/${cleared.digest}`),
        status(`/v2/acme/app/blobs/${layer}`),
      ])
      answers.push(...batch)
    }
    assert.deepEqual(new Set(answers), new Set([200]))

    // While Redis is away: not ready; what was never decided is refused, never served.
    assert.equal(await status('/readyz'), 503)
    const unknown = await fetch(`${url}/v2/acme/new/manifests/v1`)
    assert.equal(unknown.status, 503)
    assert.equal(((await unknown.json()) as { errors: Array<{ code: string }> }).errors[0]?.code, 'UNAVAILABLE')
    assert.notEqual(await status('/v2/acme/root/manifests/v1'), 200)
    assert.notEqual(await status(`/v2/acme/root/blobs/${sha256(detained.layers[0] as Buffer)}`), 200)
    // A release is read from Redis on every pull: without Redis it cannot be proven, so refused.
    assert.notEqual(await status('/v2/acme/rel/manifests/v1'), 200)
    const metrics = await (await fetch(`${url}/metrics`)).text()
    assert.match(metrics, /customs_state_fallback_total\{op="getManifest",result="found"\} [1-9]/)

    // Redis comes back with its append-only file: Customs reconnects by itself.
    await (redis as RedisServer).restart()
    await waitFor('readyz 200', async () => (await fetch(`${url}/readyz`)).status === 200, 20_000)
    const root = (await (await admin(`/quarantine/docker.io/${detained.digest}?repository=acme/root`)).json()) as { state: string; refused: number }
    assert.equal(root.state, 'detained')
    assert.ok(root.refused >= 1)
    const rel = (await (await admin(`/quarantine/docker.io/${released.digest}?repository=acme/rel`)).json()) as { state: string; release?: { by: string } }
    assert.equal(rel.state, 'released')
    assert.equal(rel.release?.by, 'bob')
    assert.equal(await status('/v2/acme/rel/manifests/v1'), 200)
    assert.equal(await status('/v2/acme/new/manifests/v1'), 200)
    assert.equal(await status('/v2/acme/root/manifests/v1'), 403)
  })
})
