// A fill's segments: bytes copied in (or read in place) come out unchanged as writes, as views
// for readers (from the moment they arrive) and as views for the hasher; the window keeps only
// the recent ones, and a segment goes back to the pool only after it left the window, was hashed,
// and its last view was released.

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

/** Hashes what there is, releasing each view at once (an inline hasher). */
function hashAll(segments: Segments, all = true): Buffer {
  const chunks = segments.unhashed(all)
  const out = joined(chunks)
  for (const c of chunks) c.release()
  return out
}

/** Hashes and writes everything (as a fill does) and returns what was written. */
function writeAll(segments: Segments): Buffer {
  hashAll(segments)
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

  it('takes bytes read in place into reserved memory without a copy, and copies others', () => {
    const pool = new BufferPool(SIZE, 16)
    const segments = new Segments(pool, 8 * SIZE)
    const target = segments.reserve()
    assert.equal(target.byteLength, SIZE)
    assert.equal(segments.reserve().byteOffset, target.byteOffset, 'asking again gave other memory')
    target.set(Buffer.from('hello'))
    segments.append(target.subarray(0, 5))
    assert.equal(segments.received, 5)
    const next = segments.reserve()
    assert.equal(next.byteLength, SIZE - 5)
    assert.equal(next.buffer, target.buffer, 'the rest of the segment was not offered')
    // Not at the reserved place: copied, as any producer's view.
    segments.append(Buffer.from(' world'))
    next.set(Buffer.from('12'), 6)
    segments.append(next.subarray(6, 8))
    assert.equal(writeAll(segments).toString(), 'hello world12')
    // A full segment: the next reservation starts a new one, at the next blob offset.
    const rest = segments.reserve()
    rest.fill(7)
    segments.append(rest)
    const fresh = segments.reserve()
    assert.notEqual(fresh.buffer, target.buffer)
    fresh[0] = 9
    segments.append(fresh.subarray(0, 1))
    assert.equal(segments.received, SIZE + 1)
    assert.deepEqual(joined(segments.peek(SIZE - 1, 2)), Buffer.from([7, 9]))
  })

  it('gives the hasher full segments as they fill, the rest at the end, each byte once and in order', () => {
    const segments = new Segments(new BufferPool(SIZE, 16), 8 * SIZE)
    const content = randomBytes(3 * SIZE + 10)
    const hashed: Buffer[] = []
    segments.append(content.subarray(0, SIZE - 1))
    assert.equal(segments.unhashed(false).length, 0, 'a partial segment went to the hasher early')
    segments.append(content.subarray(SIZE - 1, 2 * SIZE + 3))
    hashed.push(hashAll(segments, false))
    assert.equal(hashed[0]?.byteLength, 2 * SIZE)
    segments.append(content.subarray(2 * SIZE + 3))
    hashed.push(hashAll(segments, false), hashAll(segments, true), hashAll(segments, true))
    assert.deepEqual(Buffer.concat(hashed), content)
  })

  it('keeps a segment the hasher holds, and one not yet hashed, even out of the window', () => {
    const pool = new BufferPool(SIZE, 16)
    const segments = new Segments(pool, SIZE)
    const content = randomBytes(SIZE)
    segments.append(content)
    const [held] = segments.unhashed(false)
    assert.ok(held !== undefined)
    segments.append(randomBytes(3 * SIZE))
    // Written, but the three later segments not hashed yet: none of them may be dropped.
    const { commit } = segments.unwrittenViews()
    commit()
    assert.deepEqual(Buffer.from(held.bytes), content)
    const peeked = segments.peek(SIZE, 1)
    assert.ok(peeked !== undefined, 'a segment not yet hashed was dropped')
    for (const c of peeked) c.release()
    hashAll(segments, false)
    segments.append(randomBytes(1))
    const free = pool.free
    writeAll(segments)
    assert.deepEqual(Buffer.from(held.bytes), content, 'a segment the hasher holds was reused')
    assert.equal(pool.free, free + 2, 'the hashed segments out of the window did not come back')
    held.release()
    assert.equal(pool.free, free + 3)
  })
})
