// The manifest memory keeps at most its limit in bytes, evicts the oldest unread entries first,
// and spares an entry read since it was stored (once) when the eviction reaches it.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ManifestMemory } from '../../../src/cache/manifest-memory.js'
import type { Digest } from '../../../src/oci/digest.js'

const d = (n: number): Digest => `sha256:${String(n).padStart(64, '0')}` as Digest
const bytes = (size: number, fill: number): Buffer => Buffer.alloc(size, fill)

describe('ManifestMemory', () => {
  it('returns the bytes stored under a digest, and nothing for another', () => {
    const memory = new ManifestMemory(100)
    const b = bytes(10, 1)
    memory.set(d(1), b)
    assert.equal(memory.get(d(1)), b)
    assert.equal(memory.get(d(2)), undefined)
  })

  it('refuses bytes larger than its limit', () => {
    const memory = new ManifestMemory(10)
    memory.set(d(1), bytes(11, 1))
    assert.equal(memory.get(d(1)), undefined)
  })

  it('evicts the oldest unread entry when full', () => {
    const memory = new ManifestMemory(30)
    for (const n of [1, 2, 3]) memory.set(d(n), bytes(10, n))
    memory.set(d(4), bytes(10, 4))
    assert.deepEqual([1, 2, 3, 4].map((n) => memory.get(d(n)) !== undefined), [false, true, true, true])
  })

  it('spares an entry read since it was stored, and evicts the next unread one', () => {
    const memory = new ManifestMemory(30)
    for (const n of [1, 2, 3]) memory.set(d(n), bytes(10, n))
    memory.get(d(1))
    memory.set(d(4), bytes(10, 4))
    assert.equal(memory.get(d(2)), undefined)
    assert.deepEqual(memory.get(d(1)), bytes(10, 1))
    assert.deepEqual(memory.get(d(4)), bytes(10, 4))
  })

  it('spares a read entry only once, and never holds more than its limit', () => {
    const memory = new ManifestMemory(30)
    for (const n of [1, 2, 3]) memory.set(d(n), bytes(10, n))
    for (const n of [1, 2, 3]) memory.get(d(n))
    // Every entry marked: each is spared once, then the oldest goes.
    memory.set(d(4), bytes(25, 4))
    const kept = [1, 2, 3, 4].filter((n) => memory.get(d(n)) !== undefined)
    assert.deepEqual(kept, [4])
  })

  it('replaces the bytes of a digest stored again, counting them once', () => {
    const memory = new ManifestMemory(20)
    memory.set(d(1), bytes(10, 1))
    memory.set(d(1), bytes(10, 9))
    memory.set(d(2), bytes(10, 2))
    assert.deepEqual(memory.get(d(1)), bytes(10, 9))
    assert.deepEqual(memory.get(d(2)), bytes(10, 2))
  })

  it('forgets a deleted digest and its bytes', () => {
    const memory = new ManifestMemory(20)
    memory.set(d(1), bytes(10, 1))
    memory.set(d(2), bytes(10, 2))
    memory.delete(d(1))
    memory.set(d(3), bytes(10, 3))
    assert.equal(memory.get(d(1)), undefined)
    assert.deepEqual([2, 3].map((n) => memory.get(d(n)) !== undefined), [true, true])
  })
})
