// The read-buffer pool hands back the buffers it was given, keeps no more than it may, and never
// keeps a buffer of another size.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { BufferPool } from '../../../src/cache/buffers.js'

describe('BufferPool', () => {
  it('reuses a buffer that was given back', () => {
    const pool = new BufferPool(1024, 2)
    const first = pool.take()
    assert.equal(first.byteLength, 1024)
    pool.give(first)
    assert.equal(pool.take(), first)
  })

  it('keeps at most `keep` free buffers and leaves the rest to the collector', () => {
    const pool = new BufferPool(16, 2)
    const taken = [pool.take(), pool.take(), pool.take()]
    for (const b of taken) pool.give(b)
    assert.equal(pool.free, 2)
  })

  it('refuses a buffer of another size, such as a view of a pooled one', () => {
    const pool = new BufferPool(16, 4)
    pool.give(Buffer.alloc(8))
    pool.give(pool.take().subarray(0, 8))
    assert.equal(pool.free, 0)
  })

  it('hands out separate buffers while none are free', () => {
    const pool = new BufferPool(16, 4)
    const a = pool.take()
    const b = pool.take()
    assert.notEqual(a.buffer, b.buffer)
  })
})

describe('BufferPool while busy', () => {
  it('keeps up to `busyKeep` free buffers, then shrinks back to `keep` once idle', (t) => {
    // Mocked clock and timers: the shrink is decided by elapsed time, which a loaded machine stretches.
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'] })
    const pool = new BufferPool(16, 2, { busyKeep: 5, idleMs: 1000 })
    const taken = Array.from({ length: 7 }, () => pool.take())
    for (const b of taken) pool.give(b)
    assert.equal(pool.free, 5)
    // A take before idleMs passed postpones the shrink.
    t.mock.timers.tick(900)
    pool.give(pool.take())
    t.mock.timers.tick(200)
    assert.equal(pool.free, 5)
    t.mock.timers.tick(900)
    assert.equal(pool.free, 2)
    // The buffers kept are among those given back.
    assert.ok(taken.includes(pool.take()))
  })
  it('lends readers up to its limit at once, then hands a waiting reader the next buffer given back', async () => {
    const pool = new BufferPool(16, 2, { lendLimit: 2, lendWaitMs: 60_000 })
    const a = pool.acquire()
    const b = pool.acquire()
    assert.ok(a instanceof Buffer && b instanceof Buffer)
    const waiting = pool.acquire()
    assert.ok(waiting instanceof Promise)
    pool.release(a)
    assert.equal(await waiting, a)
    assert.equal(pool.lent, 2)
    assert.equal(pool.free, 0)
  })

  it('gives a waiting reader a new buffer when none comes back, so a stalled client stalls no one else', async () => {
    const pool = new BufferPool(16, 2, { lendLimit: 1, lendWaitMs: 1 })
    const held = pool.acquire() as Buffer
    const fresh = await pool.acquire()
    assert.notEqual(fresh.buffer, held.buffer)
    assert.equal(pool.lent, 2)
    pool.release(fresh)
    pool.release(held)
    assert.equal(pool.lent, 0)
    assert.equal(pool.free, 2)
  })
})
