// Two Customs processes sharing one Redis and one storage folder: a cold blob is fetched from the
// upstream once, whichever replica each client reaches, and every client gets the right bytes.

import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js'
import { startCustomsProcess, type CustomsProcess } from '../helpers/customs-process.js'
import { dripBlob, ociImage, putImage, sha256, startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js'

let redis: RedisServer
let upstream: FakeUpstream
let storage: string
const replicas: CustomsProcess[] = []

before(async () => {
  redis = await startRedisServer()
  upstream = await startFakeUpstream()
  storage = await mkdtemp(join(tmpdir(), 'customs-shared-'))
  const config = `
storage: { path: ${storage} }
state: { backend: redis, redis: { url: "${redis.url}", prefix: replicas } }
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
