// Hashing in worker threads, which read the fill's segments in place from shared memory, must give
// exactly the digest hashing inline gives, whatever the update sizes; hand every update's memory
// back exactly once, after the worker read it; and fail its jobs, never hang them, when the pool
// is closed under them.

import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { after, describe, it } from 'node:test'
import { HashPool, WORKER_HASH_MIN_BYTES, type StreamHasher } from '../../../src/cache/hasher.js'

const pool = new HashPool(2)
after(async () => {
  await pool.close()
})

/** `bytes` copied into shared memory, as a fill's segments hold them. */
function shared(bytes: Uint8Array): Buffer {
  const copy = Buffer.from(new SharedArrayBuffer(bytes.byteLength))
  copy.set(bytes)
  return copy
}

/** Feeds `bytes` in updates of the given sizes (cycled); counts the `done` calls. */
function feed(hasher: StreamHasher, bytes: Uint8Array, sizes: number[]): { updates: number; done: () => number } {
  let done = 0
  let updates = 0
  for (let at = 0, i = 0; at < bytes.byteLength; i++) {
    const chunk = bytes.subarray(at, at + (sizes[i % sizes.length] as number))
    at += chunk.byteLength
    updates++
    let called = false
    hasher.update(chunk, () => {
      assert.equal(called, false, 'an update was given back twice')
      called = true
      done++
    })
  }
  return { updates, done: () => done }
}

async function hashOf(p: HashPool, bytes: Uint8Array, sizes: number[], algorithm: 'sha256' | 'sha512' = 'sha256'): Promise<string> {
  const hasher = p.hasher(algorithm, bytes.byteLength)
  const fed = feed(hasher, bytes, sizes)
  const hex = await hasher.digest()
  assert.equal(fed.done(), fed.updates, 'an update was not given back by the time of the digest')
  return hex
}

const sha = (algorithm: string, bytes: Uint8Array): string => createHash(algorithm).update(bytes).digest('hex')

describe('HashPool', () => {
  it('gives the inline digest for a large blob in uneven updates of shared memory, sha256 and sha512', async () => {
    const bytes = shared(randomBytes(WORKER_HASH_MIN_BYTES * 3 + 12_345))
    for (const algorithm of ['sha256', 'sha512'] as const) {
      const hex = await hashOf(pool, bytes, [1, 65_536, 700_001, 3 * 1024 * 1024], algorithm)
      assert.equal(hex, sha(algorithm, bytes))
    }
  })

  it('hashes several blobs at once without mixing them', async () => {
    const blobs = [1, 2, 3, 4, 5].map(() => shared(randomBytes(WORKER_HASH_MIN_BYTES + 1)))
    const hexes = await Promise.all(blobs.map((b) => hashOf(pool, b, [256 * 1024])))
    assert.deepEqual(hexes, blobs.map((b) => sha('sha256', b)))
  })

  it('hashes a small blob inline and gives each update back at once', () => {
    const bytes = randomBytes(1000)
    const hasher = pool.hasher('sha256', bytes.byteLength)
    const fed = feed(hasher, bytes, [7])
    assert.equal(fed.done(), fed.updates)
    return hasher.digest().then((hex) => assert.equal(hex, sha('sha256', bytes)))
  })

  it('copies memory it cannot share, gives it back at once, and leaves it intact', async () => {
    const bytes = randomBytes(WORKER_HASH_MIN_BYTES + 5)
    const original = Buffer.from(bytes)
    const hasher = pool.hasher('sha256', bytes.byteLength)
    const fed = feed(hasher, bytes, [1024 * 1024])
    assert.equal(fed.done(), fed.updates, 'copied updates were held')
    // Reused at once, as a producer reuses its buffer: the copy was hashed, not this.
    bytes.fill(0)
    assert.equal(await hasher.digest(), sha('sha256', original))
  })

  it('hashes the memory as it was until given back: changing it afterwards changes nothing', async () => {
    const bytes = shared(randomBytes(WORKER_HASH_MIN_BYTES * 2))
    const expected = sha('sha256', bytes)
    const hasher = pool.hasher('sha256', bytes.byteLength)
    const half = bytes.byteLength / 2
    hasher.update(bytes.subarray(0, half), () => bytes.fill(1, 0, half))
    hasher.update(bytes.subarray(half), () => bytes.fill(2, half))
    assert.equal(await hasher.digest(), expected)
    assert.equal(bytes[0], 1, 'the first update was not given back')
  })

  it('gives back every pending update when aborted', async () => {
    const bytes = shared(randomBytes(WORKER_HASH_MIN_BYTES * 2))
    const hasher = pool.hasher('sha256', bytes.byteLength)
    const fed = feed(hasher, bytes, [64 * 1024])
    hasher.abort()
    assert.equal(fed.done(), fed.updates)
    // The worker answers the updates it was sent; they must not be given back a second time.
    assert.equal(await hashOf(pool, bytes, [1024 * 1024]), sha('sha256', bytes))
  })

  it('fails, not hangs, a digest asked of a pool closed under it, and gives its memory back', async () => {
    const own = new HashPool(1)
    const bytes = shared(randomBytes(WORKER_HASH_MIN_BYTES * 2))
    const hasher = own.hasher('sha256', bytes.byteLength)
    const fed = feed(hasher, bytes, [1024 * 1024])
    await own.close()
    await assert.rejects(hasher.digest(), /hash worker/)
    assert.equal(fed.done(), fed.updates)
    let late = false
    hasher.update(bytes, () => (late = true))
    assert.equal(late, true, 'an update after the failure was held')
  })

  it('stops a worker once it is idle, and starts another for the next large blob', async () => {
    const idle = new HashPool(1, 1)
    try {
      const bytes = shared(randomBytes(WORKER_HASH_MIN_BYTES + 1))
      const expected = sha('sha256', bytes)
      assert.equal(await hashOf(idle, bytes, [1024 * 1024]), expected)
      // The idle timer is 1 ms; waits for it however slow the machine is.
      while (idle.running > 0) await new Promise((resolve) => setTimeout(resolve, 5))
      // Hashed by a new worker: this size never hashes inline.
      assert.equal(await hashOf(idle, bytes, [1024 * 1024]), expected)
    } finally {
      await idle.close()
    }
  })

  it('starts a worker ahead of a large blob only, which the blob then uses or the idle time stops', async () => {
    const own = new HashPool(1, 1)
    try {
      own.prepare(WORKER_HASH_MIN_BYTES - 1)
      assert.equal(own.running, 0, 'a worker was started for a blob hashed inline')
      own.prepare(WORKER_HASH_MIN_BYTES)
      assert.equal(own.running, 1)
      own.prepare(WORKER_HASH_MIN_BYTES)
      assert.equal(own.running, 1, 'a second worker was started for the same slot')
      while (own.running > 0) await new Promise((resolve) => setTimeout(resolve, 5))
      own.prepare(WORKER_HASH_MIN_BYTES)
      const bytes = shared(randomBytes(WORKER_HASH_MIN_BYTES))
      assert.equal(await hashOf(own, bytes, [1024 * 1024]), sha('sha256', bytes))
    } finally {
      await own.close()
    }
    own.prepare(WORKER_HASH_MIN_BYTES)
    assert.equal(own.running, 0, 'a closed pool started a worker')
  })
})
