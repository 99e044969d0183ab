// Hashing in worker threads must give exactly the digest hashing inline gives, whatever the chunk
// sizes, keep the bytes it was given intact (they are still written and served), bound what is in
// flight, and fail its jobs, never hang them, when it is closed.

import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { after, describe, it } from 'node:test'
import { HashPool, WORKER_HASH_MIN_BYTES } from '../../../src/cache/hasher.js'

const pool = new HashPool(2)
after(() => pool.close())

/** Feeds `bytes` in chunks of the given sizes (cycled), waiting when update() asks to. */
async function hashInChunks(p: HashPool, bytes: Buffer, sizes: number[], algorithm: 'sha256' | 'sha512' = 'sha256'): Promise<string> {
  const hasher = p.hasher(algorithm, bytes.byteLength)
  let at = 0
  for (let i = 0; at < bytes.byteLength; i++) {
    const n = sizes[i % sizes.length] as number
    const waited = hasher.update(bytes.subarray(at, at + n))
    if (waited !== undefined) await waited
    at += n
  }
  return hasher.digest()
}

describe('HashPool', () => {
  it('gives the inline digest for a large blob in uneven chunks, sha256 and sha512', async () => {
    const bytes = randomBytes(WORKER_HASH_MIN_BYTES * 3 + 12_345)
    const copy = Buffer.from(bytes)
    for (const algorithm of ['sha256', 'sha512'] as const) {
      const hex = await hashInChunks(pool, bytes, [1, 65_536, 700_001, 3 * 1024 * 1024], algorithm)
      assert.equal(hex, createHash(algorithm).update(bytes).digest('hex'))
    }
    assert.deepEqual(bytes, copy, 'the caller’s bytes were changed or detached')
  })

  it('hashes several blobs at once without mixing them', async () => {
    const blobs = [1, 2, 3, 4, 5].map(() => randomBytes(WORKER_HASH_MIN_BYTES + 1))
    const hexes = await Promise.all(blobs.map((b) => hashInChunks(pool, b, [256 * 1024])))
    assert.deepEqual(hexes, blobs.map((b) => createHash('sha256').update(b).digest('hex')))
  })

  it('hashes a small blob inline, with the same result', async () => {
    const bytes = randomBytes(1000)
    assert.equal(await hashInChunks(pool, bytes, [7]), createHash('sha256').update(bytes).digest('hex'))
  })

  it('makes the caller wait while too much is in flight, and lets it go on once hashed', async () => {
    const hasher = pool.hasher('sha256', 64 * 1024 * 1024)
    const chunk = randomBytes(1024 * 1024)
    let waits = 0
    const all = createHash('sha256')
    for (let i = 0; i < 64; i++) {
      all.update(chunk)
      const waited = hasher.update(chunk)
      if (waited !== undefined) {
        waits++
        await waited
      }
    }
    assert.equal(await hasher.digest(), all.digest('hex'))
    assert.ok(waits > 0, 'never waited with 64 MiB posted')
  })

  it('fails, not hangs, a digest asked of a pool closed under it', async () => {
    const own = new HashPool(1)
    const hasher = own.hasher('sha256', WORKER_HASH_MIN_BYTES * 2)
    hasher.update(randomBytes(WORKER_HASH_MIN_BYTES))
    await own.close()
    await assert.rejects(hasher.digest(), /hash worker/)
  })
})
