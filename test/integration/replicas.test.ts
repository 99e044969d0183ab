// Customs processes sharing one Redis and one storage folder: a cold blob is fetched from the
// upstream once, whichever replica each client reaches, and every client gets the right bytes; a
// replica killed mid-fetch leaves the others to take the fill over once its lock lapses.

import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js'
import { startCustomsProcess, type CustomsProcess } from '../helpers/customs-process.js'
import { dripBlob, ociImage, putImage, sha256, startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js'

let redis: RedisServer
let upstream: FakeUpstream
let storage: string
let config: string
const replicas: CustomsProcess[] = []

before(async () => {
  redis = await startRedisServer()
  upstream = await startFakeUpstream()
  storage = await mkdtemp(join(tmpdir(), 'customs-shared-'))
  // A short lock ttl (renewed every 2 s, so a loaded machine does not lose it), so that a killed
  // replica's fill passes to another within the test.
  config = `
storage: { path: ${storage} }
state: { backend: redis, redis: { url: "${redis.url}", prefix: replicas }, lockTtl: 6s }
upstreams:
  - name: docker.io
    url: ${upstream.url}
    default: true
`
  replicas.push(await startCustomsProcess(config, { name: 'a' }), await startCustomsProcess(config, { name: 'b' }))
})

after(async () => {
  await Promise.all(replicas.map((r) => r.stop()))
  await upstream?.close()
  await redis?.stop()
  await rm(storage, { recursive: true, force: true })
})

describe('when 20 clients spread over two replicas ask for one cold blob', () => {
  it('the upstream serves it once and every client gets the right bytes', async () => {
    const layer = Buffer.alloc(16 * 1024 * 1024)
    for (let i = 0; i < layer.length; i += 4) layer.writeUInt32LE((i * 2246822519) >>> 0, i)
    const image = ociImage([layer])
    putImage(upstream, 'library/big', image, 'v1')
    const digest = sha256(layer)
    // Drip the body a little so that both replicas are asked while the fill runs.
    upstream.intercept = dripBlob(digest, layer, 1024 * 1024, 10)
    for (const r of replicas) assert.equal((await fetch(`${r.url}/v2/library/big/manifests/v1`)).status, 200)
    const results = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const res = await fetch(`${(replicas[i % 2] as CustomsProcess).url}/v2/library/big/blobs/${digest}`)
        return { status: res.status, digest: sha256(Buffer.from(await res.arrayBuffer())) }
      })
    )
    for (const r of results) assert.deepEqual(r, { status: 200, digest })
    assert.equal(upstream.count((r) => r.method === 'GET' && r.path.includes(`/blobs/${digest}`)), 1)
  })
})

describe('when the replica fetching a cold blob is killed mid-fetch', () => {
  it('the other replicas take the fill over and every one of their clients gets the right bytes', async () => {
    const layer = Buffer.alloc(12 * 1024 * 1024)
    for (let i = 0; i < layer.length; i += 4) layer.writeUInt32LE((i * 3266489917) >>> 0, i)
    const image = ociImage([layer])
    putImage(upstream, 'library/killed', image, 'v1')
    const digest = sha256(layer)
    upstream.intercept = dripBlob(digest, layer, 512 * 1024, 50)
    const doomed = await startCustomsProcess(config, { name: 'c' })
    replicas.push(doomed)
    for (const r of replicas) assert.equal((await fetch(`${r.url}/v2/library/killed/manifests/v1`)).status, 200)
    // The doomed replica starts the fill (and holds the lock) ...
    const first = await fetch(`${doomed.url}/v2/library/killed/blobs/${digest}`)
    const reader = (first.body as ReadableStream<Uint8Array>).getReader()
    await reader.read()
    // ... the others' clients ask while it runs, and then it dies.
    const survivors = replicas.filter((r) => r !== doomed)
    const pulls = Array.from({ length: 6 }, async (_, i) => {
      const res = await fetch(`${(survivors[i % survivors.length] as CustomsProcess).url}/v2/library/killed/blobs/${digest}`)
      return { status: res.status, digest: sha256(Buffer.from(await res.arrayBuffer())) }
    })
    await new Promise((r) => setTimeout(r, 300))
    await doomed.kill()
    await reader.cancel().catch(() => {})
    for (const r of await Promise.all(pulls)) assert.deepEqual(r, { status: 200, digest })
    // One fetch cut by the kill, one by the replica that took over: no more.
    const fetches = upstream.count((r) => r.method === 'GET' && r.path.includes(`/blobs/${digest}`))
    assert.ok(fetches >= 1 && fetches <= 2, `${fetches} upstream fetches`)
    // No torn file: whatever is committed hashes to its name.
    const root = join(storage, 'blobs', 'sha256')
    for (const prefix of await readdir(root)) {
      for (const hex of await readdir(join(root, prefix))) assert.equal(sha256(await readFile(join(root, prefix, hex))), `sha256:${hex}`)
    }
  })
})
