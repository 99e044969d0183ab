// A fill's bytes in memory: received bytes land in pooled 1 MiB segments (read into them by the
// socket, or copied in), are hashed and written to the temp file from there, and the last few
// segments stay readable for the readers at the fill's head, from the moment they arrive.
//
// Why copy: keeping the socket's chunks for the readers kept each one alive for tens of
// milliseconds, long enough to be promoted out of V8's young generation; only full collections
// free those, and a 200 MiB fill then cost seven mark-compacts instead of one (measured with
// --trace-gc). A copy into reused memory costs about 20 ms per 200 MiB and ends that churn.
//
// A segment handed out as a view (to a reader, or to the hasher) is counted; it goes back to the
// pool only once it has left the window and every view was released.

import type { Chunk } from './reader.js'
import type { BufferPool } from './buffers.js'

interface Segment {
  /** The blob offset of the segment's first byte. */
  readonly start: number
  readonly buffer: Buffer
  /** Bytes copied in. */
  filled: number
  /** Of those, bytes written to the file. */
  written: number
  /** Of those, bytes given to the hasher. */
  hashed: number
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

  /**
   * The free memory after the last byte received, for a socket to read the next bytes into; given
   * to append() afterwards, they are found in place and not copied. Until then the memory is
   * unused, so asking again returns the same.
   */
  reserve(): Uint8Array {
    let last = this.#segments.at(-1)
    if (last === undefined || last.filled === last.buffer.byteLength) last = this.#grow(this.#received)
    return last.buffer.subarray(last.filled)
  }

  /** Takes received bytes in: counted where they were read in place (see reserve), else copied. */
  append(chunk: Uint8Array): void {
    const last = this.#segments.at(-1)
    if (last !== undefined && chunk.byteLength > 0 && chunk.buffer === last.buffer.buffer && chunk.byteOffset === last.buffer.byteOffset + last.filled && chunk.byteLength <= last.buffer.byteLength - last.filled) {
      last.filled += chunk.byteLength
      this.#received += chunk.byteLength
      this.#unwritten += chunk.byteLength
      return
    }
    let offset = 0
    while (offset < chunk.byteLength) {
      let last = this.#segments.at(-1)
      if (last === undefined || last.filled === last.buffer.byteLength) last = this.#grow(this.#received + offset)
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
   * Bytes received and not yet given to the hasher, as views held until released: those of full
   * segments, or all of them when `all` (the body has ended).
   */
  unhashed(all: boolean): Chunk[] {
    const chunks: Chunk[] = []
    for (const segment of this.#segments) {
      if (segment.hashed === segment.filled) continue
      if (!all && segment.filled !== segment.buffer.byteLength) break
      chunks.push(this.#view(segment, segment.hashed, segment.filled))
      segment.hashed = segment.filled
    }
    return chunks
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
      chunks.push(this.#view(segment, offset, offset + n))
      at += n
      want -= n
    }
    return chunks.length > 0 ? chunks : undefined
  }

  /** A new last segment, starting at blob offset `start`. */
  #grow(start: number): Segment {
    const segment = { start, buffer: this.#pool.take(), filled: 0, written: 0, hashed: 0, refs: 0, retired: false }
    this.#segments.push(segment)
    return segment
  }

  /** The segment's bytes [from, to) as a view that holds the segment until released (once). */
  #view(segment: Segment, from: number, to: number): Chunk {
    segment.refs++
    let released = false
    return {
      bytes: segment.buffer.subarray(from, to),
      release: () => {
        if (released) return
        released = true
        segment.refs--
        this.#recycle(segment)
      },
    }
  }

  /** Drops every segment (the fill ended and its readers are gone, or it failed). */
  clear(): void {
    for (const segment of this.#segments.splice(0)) {
      segment.retired = true
      this.#recycle(segment)
    }
    this.#unwritten = 0
  }

  /** Retires the oldest full, written, hashed segments while the written bytes held exceed the window. */
  #trim(): void {
    let held = 0
    for (const segment of this.#segments) held += segment.written
    while (this.#segments.length > 1) {
      const first = this.#segments[0] as Segment
      if (held - first.written < this.#window || first.written !== first.buffer.byteLength) break
      // Not yet given to the hasher (a fill gives each full segment at once; this keeps it so).
      if (first.hashed !== first.filled) break
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
