// Crash consistency (DESIGN "a crash at any instant leaves a cache that is valid after restart"):
// Customs, as its own process on Redis, is SIGKILLed at points a fixed-seed PRNG picks during
// cold pulls, 20 times in a row on one storage folder. After each restart every cached file
// hashes to its name, no temp file of a dead process survives the sweep, a blob recorded in state
// but missing on disk is fetched again (never served empty), and the interrupted pull succeeds.

import assert from 'node:assert/strict'
import { readdir, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js'
import { startCustomsProcess, type CustomsProcess } from '../helpers/customs-process.js'
import { dripBlob, ociImage, putImage, sha256, startFakeUpstream, type FakeUpstream, type Intercept } from '../helpers/fake-upstream.js'
import { makeTempDir } from '../helpers/processes.js'

const ITERATIONS = 20
const SEED = 0x5eed_c0de
const LAYER_BYTES = 3 * 1024 * 1024

/** mulberry32: a small PRNG, so that a failing run can be replayed exactly. */
function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function layerBytes(n: number): Buffer {
  const bytes = Buffer.alloc(LAYER_BYTES)
  for (let i = 0; i < bytes.length; i += 4) bytes.writeUInt32LE(((i + 1) * 2654435761 + n * 97) >>> 0, i)
  return bytes
}

let redis: RedisServer
let upstream: FakeUpstream
let work: string
let customs: CustomsProcess | undefined

before(async () => {
  redis = await startRedisServer()
  upstream = await startFakeUpstream()
  work = await makeTempDir('crash-')
})

after(async () => {
  await customs?.stop()
  await upstream?.close()
  await redis?.stop()
  await rm(work, { recursive: true, force: true })
})

/** Every committed file hashes to its name; returns how many there are. */
async function assertCommittedValid(storage: string): Promise<number> {
  const root = join(storage, 'blobs', 'sha256')
  let files = 0
  for (const prefix of await readdir(root).catch(() => [] as string[])) {
    for (const hex of await readdir(join(root, prefix))) {
      assert.equal(sha256(await readFile(join(root, prefix, hex))), `sha256:${hex}`, `blobs/sha256/${prefix}/${hex} does not match its name`)
      files++
    }
  }
  return files
}

/** The temp files left under tmp/: after a restart's sweep only the live process's folder, empty of parts. */
async function leftoverParts(storage: string): Promise<string[]> {
  const parts: string[] = []
  const tmp = join(storage, 'tmp')
  for (const dir of await readdir(tmp).catch(() => [] as string[])) {
    for (const f of await readdir(join(tmp, dir)).catch(() => [] as string[])) if (f.endsWith('.part')) parts.push(`${dir}/${f}`)
  }
  return parts
}

describe('when Customs is SIGKILLed during cold pulls, 20 times', () => {
  it('restarts every time onto a valid cache and finishes every pull', async () => {
    const storage = join(work, 'storage')
    const config = `
storage: { path: ${storage} }
state: { backend: redis, redis: { url: "${redis.url}", prefix: crash }, lockTtl: 2s }
upstreams:
  - name: docker.io
    url: ${upstream.url}
    default: true
`
    const random = prng(SEED)
    const images = Array.from({ length: ITERATIONS }, (_, i) => ociImage([layerBytes(i)]))
    const drips = new Map<string, Intercept>()
    images.forEach((image, i) => {
      putImage(upstream, `library/app${i}`, image, 'v1')
      const layer = image.layers[0] as Buffer
      // Dripped, so that a kill lands while the fill is writing.
      drips.set(sha256(layer), dripBlob(sha256(layer), layer, 128 * 1024, 5))
    })
    upstream.intercept = (req, res, path) => {
      const digest = /\/blobs\/(sha256:[0-9a-f]{64})/.exec(path)?.[1]
      const drip = digest === undefined ? undefined : drips.get(digest)
      return drip === undefined ? false : drip(req, res, path)
    }
    const kills: string[] = []

    for (let i = 0; i <= ITERATIONS; i++) {
      customs = await startCustomsProcess(config, { name: `customs-${i}` })
      // After the restart's sweep: nothing half-written anywhere, every committed file valid.
      assert.deepEqual(await leftoverParts(storage), [], `iteration ${i}: temp files survived the sweep`)
      await assertCommittedValid(storage)

      if (i > 0) {
        // The interrupted pull now succeeds.
        const previous = images[i - 1] as ReturnType<typeof ociImage>
        const layer = sha256(previous.layers[0] as Buffer)
        assert.equal((await fetch(`${customs.url}/v2/library/app${i - 1}/manifests/v1`)).status, 200)
        const res = await fetch(`${customs.url}/v2/library/app${i - 1}/blobs/${layer}`)
        assert.equal(res.status, 200)
        assert.equal(sha256(Buffer.from(await res.arrayBuffer())), layer, `iteration ${i}: the interrupted blob`)
      }
      if (i > 1 && random() < 0.5) {
        // State says an earlier blob and manifest were cleared; the disk lost them: fetched again.
        const earlier = images[Math.floor(random() * (i - 1))] as ReturnType<typeof ociImage>
        const n = images.indexOf(earlier)
        const layer = sha256(earlier.layers[0] as Buffer)
        for (const digest of [layer, earlier.digest]) await rm(join(storage, 'blobs', 'sha256', digest.slice(7, 9), digest.slice(7)), { force: true })
        const manifest = await fetch(`${customs.url}/v2/library/app${n}/manifests/${earlier.digest}`)
        assert.equal(manifest.status, 200)
        assert.equal(sha256(Buffer.from(await manifest.arrayBuffer())), earlier.digest)
        const res = await fetch(`${customs.url}/v2/library/app${n}/blobs/${layer}`)
        assert.equal(res.status, 200)
        assert.equal(sha256(Buffer.from(await res.arrayBuffer())), layer, `iteration ${i}: a lost blob is fetched again`)
      }
      if (i === ITERATIONS) break

      // A cold pull, killed at a random point: after a time into the manifest request, or after
      // a number of the layer's bytes reached the client.
      const image = images[i] as ReturnType<typeof ociImage>
      const running = customs
      if (random() < 0.25) {
        const delay = Math.floor(random() * 60)
        kills.push(`${i}: ${delay} ms into the manifest`)
        const pull = fetch(`${running.url}/v2/library/app${i}/manifests/v1`).then((r) => r.arrayBuffer()).catch(() => undefined)
        await new Promise((r) => setTimeout(r, delay))
        await running.kill()
        await pull
      } else {
        const at = Math.floor(random() * LAYER_BYTES)
        kills.push(`${i}: after ${at} layer bytes`)
        assert.equal((await fetch(`${running.url}/v2/library/app${i}/manifests/v1`)).status, 200)
        const res = await fetch(`${running.url}/v2/library/app${i}/blobs/${sha256(image.layers[0] as Buffer)}`)
        const reader = (res.body as ReadableStream<Uint8Array>).getReader()
        let received = 0
        try {
          while (received <= at) {
            const { done, value } = await reader.read()
            if (done) break
            received += value.byteLength
          }
        } finally {
          await running.kill()
          await reader.cancel().catch(() => {})
        }
      }
    }
    await customs?.stop()
    customs = undefined
    // Every image's layer ended committed and valid, whatever the kills interrupted.
    await assertCommittedValid(storage)
    for (const image of images) {
      const hex = sha256(image.layers[0] as Buffer).slice(7)
      const names = await readdir(join(storage, 'blobs', 'sha256', hex.slice(0, 2))).catch(() => [] as string[])
      assert.ok(names.includes(hex), `layer ${hex} is not committed; kills: ${kills.join('; ')}`)
    }
  })
})
