// A fill's segments: bytes copied in come out unchanged as writes and as views (readable from
// the moment they are copied in), the window keeps only the recent ones, and a segment goes back
// to the pool only after it left the window and its last view was released.

import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { describe, it } from 'node:test'
import { BufferPool } from '../../../src/cache/buffers.js'
import { Segments } from '../../../src/cache/segments.js'
import type { Chunk } from '../../../src/cache/reader.js'

const SIZE = 64

function joined(chunks: Chunk[] | undefined): Buffer {
  return Buffer.concat((chunks ?? []).map((c) => c.bytes))
}

/** Writes everything unwritten (as a fill's flush does) and returns what was written. */
function writeAll(segments: Segments): Buffer {
  const { views, bytes, commit } = segments.unwrittenViews()
  const out = Buffer.concat(views)
  assert.equal(out.byteLength, bytes)
  commit()
  return out
}

describe('Segments', () => {
  it('writes out exactly the bytes appended, in order, across segment boundaries', () => {
    const segments = new Segments(new BufferPool(SIZE, 8), 4 * SIZE)
    const content = randomBytes(5 * SIZE + 7)
    const written: Buffer[] = []
    for (let at = 0; at < content.byteLength; at += 23) {
      segments.append(content.subarray(at, at + 23))
      if (at % 46 === 0) written.push(writeAll(segments))
    }
    written.push(writeAll(segments))
    assert.deepEqual(Buffer.concat(written), content)
    assert.equal(segments.unwritten, 0)
  })

  it('does not keep the appended chunk: changing it afterwards changes nothing', () => {
    const segments = new Segments(new BufferPool(SIZE, 8), 4 * SIZE)
    const chunk = Buffer.from('abcdef')
    segments.append(chunk)
    chunk.fill(0)
    assert.equal(writeAll(segments).toString(), 'abcdef')
  })

  it('lets readers peek at bytes as soon as they are copied in, before the write', () => {
    const segments = new Segments(new BufferPool(SIZE, 8), 4 * SIZE)
    segments.append(Buffer.from('0123456789'))
    assert.equal(joined(segments.peek(2, 100)).toString(), '23456789')
    writeAll(segments)
    segments.append(Buffer.from('abc'))
    assert.equal(joined(segments.peek(8, 100)).toString(), '89abc')
    assert.equal(segments.peek(13, 3), undefined, 'bytes not received yet were readable')
    assert.equal(segments.received, 13)
  })

  it('peeks across segments, bounded by the length asked', () => {
    const segments = new Segments(new BufferPool(SIZE, 8), 8 * SIZE)
    const content = randomBytes(3 * SIZE)
    segments.append(content)
    writeAll(segments)
    const views = segments.peek(SIZE - 5, SIZE + 10)
    assert.equal(views?.length, 3)
    assert.deepEqual(joined(views), content.subarray(SIZE - 5, 2 * SIZE + 5))
    assert.deepEqual(joined(segments.peek(SIZE, 3)), content.subarray(SIZE, SIZE + 3))
  })

  it('keeps about a window of written bytes and forgets older ones', () => {
    const pool = new BufferPool(SIZE, 16)
    const segments = new Segments(pool, 2 * SIZE)
    segments.append(randomBytes(6 * SIZE))
    writeAll(segments)
    assert.equal(segments.peek(0, 1), undefined, 'the oldest bytes are still held')
    assert.ok(segments.peek(5 * SIZE, 1) !== undefined, 'the newest bytes are not held')
    assert.ok(pool.free >= 3, `only ${pool.free} segments came back to the pool`)
  })

  it('gives a retired segment back only after its last view is released', () => {
    const pool = new BufferPool(SIZE, 16)
    const segments = new Segments(pool, SIZE)
    segments.append(randomBytes(SIZE))
    writeAll(segments)
    const [view] = segments.peek(0, SIZE) ?? []
    assert.ok(view !== undefined)
    const copy = Buffer.from(view.bytes)
    segments.append(randomBytes(3 * SIZE))
    writeAll(segments)
    const free = pool.free
    // The first segment left the window but is still being sent: its bytes must not change.
    assert.deepEqual(Buffer.from(view.bytes), copy)
    view.release()
    view.release()
    assert.equal(pool.free, free + 1)
  })

  it('clear() returns every unreferenced segment and keeps referenced ones until released', () => {
    const pool = new BufferPool(SIZE, 16)
    const segments = new Segments(pool, 8 * SIZE)
    segments.append(randomBytes(3 * SIZE))
    writeAll(segments)
    const held = segments.peek(0, 1) ?? []
    segments.clear()
    assert.equal(pool.free, 2)
    for (const c of held) c.release()
    assert.equal(pool.free, 3)
    assert.equal(segments.peek(0, 1), undefined)
  })
})
