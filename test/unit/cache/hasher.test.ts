// Hashing in worker threads, which read the bytes back from the file the fill writes, must give
// exactly the digest hashing inline gives, whatever the write sizes, leave the written bytes
// alone, and fail its jobs, never hang them, when the file cannot be read or the pool is closed.

import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, open, rm, truncate } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { HashPool, WORKER_HASH_MIN_BYTES } from '../../../src/cache/hasher.js'

const pool = new HashPool(2)
let root: string
let n = 0
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'customs-hasher-'))
})
after(async () => {
  await pool.close()
  await rm(root, { recursive: true, force: true })
})

/** Writes `bytes` to a new file in writes of the given sizes (cycled), telling the hasher after each. */
async function hashAsWritten(p: HashPool, bytes: Buffer, sizes: number[], algorithm: 'sha256' | 'sha512' = 'sha256'): Promise<string> {
  const path = join(root, `blob-${++n}`)
  const handle = await open(path, 'wx+')
  try {
    const hasher = p.hasher(algorithm, bytes.byteLength, path)
    let at = 0
    for (let i = 0; at < bytes.byteLength; i++) {
      const chunk = bytes.subarray(at, at + (sizes[i % sizes.length] as number))
      await handle.write(chunk, 0, chunk.byteLength, at)
      at += chunk.byteLength
      hasher.written([chunk], at)
    }
    return await hasher.digest()
  } finally {
    await handle.close()
  }
}

describe('HashPool', () => {
  it('gives the inline digest for a large blob in uneven writes, sha256 and sha512', async () => {
    const bytes = randomBytes(WORKER_HASH_MIN_BYTES * 3 + 12_345)
    const copy = Buffer.from(bytes)
    for (const algorithm of ['sha256', 'sha512'] as const) {
      const hex = await hashAsWritten(pool, bytes, [1, 65_536, 700_001, 3 * 1024 * 1024], algorithm)
      assert.equal(hex, createHash(algorithm).update(bytes).digest('hex'))
    }
    assert.deepEqual(bytes, copy, 'the caller’s bytes were changed or detached')
  })

  it('hashes several blobs at once without mixing them', async () => {
    const blobs = [1, 2, 3, 4, 5].map(() => randomBytes(WORKER_HASH_MIN_BYTES + 1))
    const hexes = await Promise.all(blobs.map((b) => hashAsWritten(pool, b, [256 * 1024])))
    assert.deepEqual(hexes, blobs.map((b) => createHash('sha256').update(b).digest('hex')))
  })

  it('hashes a small blob inline, from the written batches, with the same result', async () => {
    const bytes = randomBytes(1000)
    assert.equal(await hashAsWritten(pool, bytes, [7]), createHash('sha256').update(bytes).digest('hex'))
  })

  it('hashes what is in the file: bytes changed on disk after the write change the digest', async () => {
    const bytes = randomBytes(WORKER_HASH_MIN_BYTES)
    const path = join(root, `blob-${++n}`)
    const handle = await open(path, 'wx+')
    const hasher = pool.hasher('sha256', bytes.byteLength, path)
    await handle.write(bytes, 0, bytes.byteLength, 0)
    await handle.write(Buffer.from('X'), 0, 1, 0)
    await handle.close()
    hasher.written([bytes], bytes.byteLength)
    const changed = Buffer.from(bytes)
    changed[0] = 'X'.charCodeAt(0)
    assert.equal(await hasher.digest(), createHash('sha256').update(changed).digest('hex'))
  })

  it('fails the digest when the file is shorter than what was said to be written', async () => {
    const bytes = randomBytes(WORKER_HASH_MIN_BYTES + 10)
    const path = join(root, `blob-${++n}`)
    const handle = await open(path, 'wx+')
    const hasher = pool.hasher('sha256', bytes.byteLength, path)
    await handle.write(bytes, 0, bytes.byteLength, 0)
    await handle.close()
    await truncate(path, 100)
    hasher.written([bytes], bytes.byteLength)
    await assert.rejects(hasher.digest(), /hash worker could not read the blob/)
  })

  it('fails the digest when the file is missing', async () => {
    const hasher = pool.hasher('sha256', WORKER_HASH_MIN_BYTES, join(root, 'never-written'))
    hasher.written([], WORKER_HASH_MIN_BYTES)
    await assert.rejects(hasher.digest(), /ENOENT/)
  })

  it('fails, not hangs, a digest asked of a pool closed under it', async () => {
    const own = new HashPool(1)
    const path = join(root, `blob-${++n}`)
    const handle = await open(path, 'wx+')
    await handle.close()
    const hasher = own.hasher('sha256', WORKER_HASH_MIN_BYTES * 2, path)
    await own.close()
    await assert.rejects(hasher.digest(), /hash worker/)
  })
  it('stops a worker once it is idle, and starts another for the next large blob', async () => {
    const idle = new HashPool(1, 1)
    try {
      const bytes = randomBytes(WORKER_HASH_MIN_BYTES + 1)
      const expected = createHash('sha256').update(bytes).digest('hex')
      assert.equal(await hashAsWritten(idle, bytes, [1024 * 1024]), expected)
      // The idle timer is 1 ms; waits for it however slow the machine is.
      while (idle.running > 0) await new Promise((resolve) => setTimeout(resolve, 5))
      // Hashed by a new worker: this size never hashes inline.
      assert.equal(await hashAsWritten(idle, bytes, [1024 * 1024]), expected)
    } finally {
      await idle.close()
    }
  })
})
