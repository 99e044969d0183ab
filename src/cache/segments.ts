// A fill's bytes in memory: received chunks are copied into pooled 1 MiB segments, written to the
// temp file from there, and the last few segments stay readable for the readers at the fill's
// head, from the moment they arrive. The upstream's own chunks are dropped as soon as they are
// copied.
//
// Why copy: keeping the socket's chunks for the readers kept each one alive for tens of
// milliseconds, long enough to be promoted out of V8's young generation; only full collections
// free those, and a 200 MiB fill then cost seven mark-compacts instead of one (measured with
// --trace-gc). A copy into reused memory costs about 20 ms per 200 MiB and ends that churn.
//
// A segment handed to a reader as a view is counted; it goes back to the pool only once it has
// left the window and every reader's socket has taken its view.

import type { Chunk } from './reader.js'
import type { BufferPool } from './buffers.js'

interface Segment {
  /** The blob offset of the segment's first byte. */
  readonly start: number
  readonly buffer: Buffer
  /** Bytes copied in. */
  filled: number
  /** Of those, bytes written to the file (readable). */
  written: number
  /** Views handed out and not yet released. */
  refs: number
  /** Out of the window: given back to the pool when `refs` reaches 0. */
  retired: boolean
}

export class Segments {
  readonly #pool: BufferPool
  /** How much written data stays readable from memory. */
  readonly #window: number
  /** Segments in blob order: the window, then those still being filled or written. */
  #segments: Segment[] = []
  #received = 0
  #unwritten = 0

  constructor(pool: BufferPool, window: number) {
    this.#pool = pool
    this.#window = window
  }

  /** Bytes copied in so far. */
  get received(): number {
    return this.#received
  }

  /** Bytes copied in and not yet written. */
  get unwritten(): number {
    return this.#unwritten
  }

  /** Copies a received chunk in. */
  append(chunk: Uint8Array): void {
    let offset = 0
    while (offset < chunk.byteLength) {
      let last = this.#segments.at(-1)
      if (last === undefined || last.filled === last.buffer.byteLength) {
        last = { start: this.#received + offset, buffer: this.#pool.take(), filled: 0, written: 0, refs: 0, retired: false }
        this.#segments.push(last)
      }
      const n = Math.min(chunk.byteLength - offset, last.buffer.byteLength - last.filled)
      last.buffer.set(chunk.subarray(offset, offset + n), last.filled)
      last.filled += n
      offset += n
    }
    this.#received += chunk.byteLength
    this.#unwritten += chunk.byteLength
  }

  /**
   * The bytes copied in but not yet written, as views to write (with one writev), and a function
   * that marks them written once the write succeeded.
   */
  unwrittenViews(): { views: Buffer[]; bytes: number; commit: () => void } {
    const views: Buffer[] = []
    const marks: Array<[Segment, number]> = []
    let bytes = 0
    for (const segment of this.#segments) {
      if (segment.written === segment.filled) continue
      views.push(segment.buffer.subarray(segment.written, segment.filled))
      marks.push([segment, segment.filled])
      bytes += segment.filled - segment.written
    }
    this.#unwritten -= bytes
    return {
      views,
      bytes,
      commit: () => {
        for (const [segment, upTo] of marks) segment.written = upTo
        this.#trim()
      },
    }
  }

  /**
   * Bytes at `position` (at most `length`) from memory, as views each released once its reader is
   * done with it; undefined when memory no longer holds `position`. Bytes not yet written to the
   * file are included: a client need not wait for the disk to get what the upstream sent.
   */
  peek(position: number, length: number): Chunk[] | undefined {
    const chunks: Chunk[] = []
    let at = position
    let want = length
    for (const segment of this.#segments) {
      if (want === 0) break
      const offset = at - segment.start
      if (offset < 0) return chunks.length > 0 ? chunks : undefined
      if (offset >= segment.filled) {
        if (offset < segment.buffer.byteLength) break
        continue
      }
      const n = Math.min(want, segment.filled - offset)
      segment.refs++
      let released = false
      chunks.push({
        bytes: segment.buffer.subarray(offset, offset + n),
        release: () => {
          if (released) return
          released = true
          segment.refs--
          this.#recycle(segment)
        },
      })
      at += n
      want -= n
    }
    return chunks.length > 0 ? chunks : undefined
  }

  /** Drops every segment (the fill ended and its readers are gone, or it failed). */
  clear(): void {
    for (const segment of this.#segments.splice(0)) {
      segment.retired = true
      this.#recycle(segment)
    }
    this.#unwritten = 0
  }

  /** Retires the oldest full, written segments while the written bytes held exceed the window. */
  #trim(): void {
    let held = 0
    for (const segment of this.#segments) held += segment.written
    while (this.#segments.length > 1) {
      const first = this.#segments[0] as Segment
      if (held - first.written < this.#window || first.written !== first.buffer.byteLength) break
      this.#segments.shift()
      held -= first.written
      first.retired = true
      this.#recycle(first)
    }
  }

  #recycle(segment: Segment): void {
    if (segment.retired && segment.refs === 0) this.#pool.give(segment.buffer)
  }
}
