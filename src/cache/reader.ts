// Reads a byte range of a blob for one client, from a committed file or from a fill in progress.
// Each reader pulls at its own pace (backpressure comes from the client's socket), so memory stays
// at a couple of chunks per client whatever the blob's size. Chunks read from disk land in pooled
// buffers that the consumer gives back once its socket has taken them; chunks a fill still holds
// in memory are handed out as views, without a copy.

import type { FileHandle } from 'node:fs/promises'
import { BufferPool } from './buffers.js'

/** Readers ask for this much at a time: large enough for throughput, small enough for memory. */
export const READ_CHUNK = 1024 * 1024
/** A reader of a growing fill reads at least this much at a time (unless at the end)... */
const MIN_GROWING_READ = 256 * 1024
/** ...or whatever there is after waiting this long for more. */
const GATHER_MS = 5
/**
 * Free read buffers kept for the next reader or fill when idle: a few clients' worth (two in
 * flight each), since every MiB kept stays resident.
 */
const POOLED_BUFFERS = 8
/** Free buffers kept while reads go on: a burst of clients, and a fill's segments. */
const BUSY_POOLED_BUFFERS = 64
/**
 * How long after the last take the pool shrinks back to POOLED_BUFFERS. A buffer let go is only
 * freed when a major collection finds it (the memory of a SharedArrayBuffer goes with its last
 * object), and with V8's memory reducer off (see the Dockerfile) none comes while the process is
 * quiet. Shrunk after 2 s, the pool's buffers stayed resident as garbage and the next burst
 * allocated new ones beside them: the bench's 32-client phase, seconds after the cold and warm
 * pulls, allocated 36-51 new buffers and peaked at 186-199 MB RSS; kept for a minute, it took
 * most from the pool (17-33 new) and peaked at 162-178 MB (three runs each).
 */
const POOL_IDLE_MS = 60_000

/**
 * Buffers all readers may hold at once before they wait a moment for one another gives back. 32
 * clients reading one blob from disk held two each, 64 MiB on top of the fill's segments: the
 * bench's concurrent phase peaked at 179-186 MiB RSS with ArrayBuffers at 74-80 MiB.
 */
const LENT_BUFFERS = 24

/** The process's read buffers, which are also fills' segments (shared: hashed in place by a worker). */
export const readBuffers = new BufferPool(READ_CHUNK, POOLED_BUFFERS, {
  busyKeep: BUSY_POOLED_BUFFERS,
  idleMs: POOL_IDLE_MS,
  lendLimit: LENT_BUFFERS,
  shared: true,
})

/** Where a reader's bytes come from. */
export interface ByteSource {
  /** The bytes at `position` (at most `length`) that are held in memory, as views; else undefined. */
  peek(position: number, length: number): Chunk[] | undefined
  /** Reads bytes at `position` into `target`; resolves how many (0 only past the end). */
  readInto(position: number, target: Uint8Array): Promise<number>
  /** Bytes that may be read now: at most the blob's size. */
  readable(): number
  /** Whether every byte is final (verified). Until then the response's last byte is held back. */
  final(): boolean
  /** The error that ends every reader, when the source failed. */
  failure(): Error | undefined
  /** Resolves when more bytes or a state change may be available. */
  changed(): Promise<void>
  release(): void
}

export function fileSource(handle: FileHandle, size: number, onRelease: () => void): ByteSource {
  let released = false
  return {
    peek: () => undefined,
    async readInto(position, target) {
      const { bytesRead } = await handle.read(target, 0, target.byteLength, position)
      return bytesRead
    },
    readable: () => size,
    final: () => true,
    failure: () => undefined,
    changed: () => Promise.resolve(),
    release() {
      if (released) return
      released = true
      void handle.close().catch(() => {})
      onRelease()
    },
  }
}

/** The part of a fill that readers see. */
export interface GrowingBlob {
  /** Bytes received so far (readable from memory or the file). */
  readonly available: number
  readonly verified: boolean
  readonly state: 'filling' | 'committed' | 'failed'
  readonly error: Error | undefined
  acquire(): void
  release(): void
  peek(position: number, length: number): Chunk[] | undefined
  readInto(position: number, target: Uint8Array): Promise<number>
  changed(): Promise<void>
}

export function fillSource(fill: GrowingBlob): ByteSource {
  let released = false
  fill.acquire()
  return {
    peek: (position, length) => fill.peek(position, length),
    readInto: (position, target) => fill.readInto(position, target),
    readable: () => fill.available,
    // Verified bytes are final even if committing them to the cache fails afterwards: the temp
    // file stays open (and readable) until the last reader releases it.
    final: () => fill.verified,
    failure: () => (fill.state === 'failed' && !fill.verified ? (fill.error ?? new Error('fill failed')) : undefined),
    changed: () => fill.changed(),
    release() {
      if (released) return
      released = true
      fill.release()
    },
  }
}

/** Bytes for the client, and how to give their memory back once the client's socket took them. */
export interface Chunk {
  readonly bytes: Uint8Array
  /**
   * Returns the memory (a lent read buffer, a fill's segment). Every consumer calls it once it is
   * done with the bytes: a lent buffer never returned shrinks the readers' budget for good. Calling
   * it again does nothing.
   */
  readonly release: () => void
}

/** Resolves when `promise` settles or `signal` aborts, whichever is first. */
function unlessAborted(promise: Promise<unknown>, signal: AbortSignal | undefined): Promise<unknown> {
  if (signal === undefined) return promise
  if (signal.aborted) return Promise.resolve()
  return new Promise((resolve) => {
    const done = () => {
      signal.removeEventListener('abort', done)
      resolve(undefined)
    }
    signal.addEventListener('abort', done, { once: true })
    promise.then(done, done)
  })
}

/** True when the source changed within `ms`, false when the time ran out first. */
function changedWithin(source: ByteSource, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms)
    void source.changed().then(() => {
      clearTimeout(timer)
      resolve(true)
    })
  })
}

/**
 * The bytes [start, end] (inclusive) of the source, in order. Byte `end` is yielded only once the
 * source is final, so a fill that fails its digest check throws before the range is complete.
 * The source is released when the range ends, fails, is abandoned, or `signal` aborts.
 */
export function rangeChunks(source: ByteSource, start: number, end: number, signal?: AbortSignal): AsyncGenerator<Chunk, void, undefined> {
  const release = () => source.release()
  // Released at once on abort, not at the next step: a client that left holds nothing open. Set
  // here rather than in the generator, whose body only runs at the first next().
  signal?.addEventListener('abort', release, { once: true })
  return pump(source, start, end, signal, release)
}

async function* pump(source: ByteSource, start: number, end: number, signal: AbortSignal | undefined, release: () => void): AsyncGenerator<Chunk, void, undefined> {
  try {
    let position = start
    let waited = false
    while (signal?.aborted !== true) {
      const failure = source.failure()
      if (failure !== undefined) throw failure
      const final = source.final()
      if (position > end) {
        if (final) return
        await unlessAborted(source.changed(), signal)
        continue
      }
      // Hold back byte `end` until the source is final.
      const limit = final ? end + 1 : Math.min(source.readable(), end)
      if (position >= limit) {
        await unlessAborted(source.changed(), signal)
        continue
      }
      // While a fill grows fast, wait a moment for a worthwhile amount rather than chase every
      // write; a slow upstream still gets its bytes through after that moment.
      if (limit - position < MIN_GROWING_READ && !final && limit !== end && !waited) {
        waited = !(await changedWithin(source, GATHER_MS))
        continue
      }
      waited = false
      const length = Math.min(READ_CHUNK, limit - position)
      const views = source.peek(position, length)
      if (views !== undefined) {
        let i = 0
        try {
          for (; i < views.length; i++) {
            const view = views[i] as Chunk
            position += view.bytes.byteLength
            yield view
          }
        } finally {
          // Abandoned part-way: the views not handed out are let go here.
          for (let j = i + 1; j < views.length; j++) (views[j] as Chunk).release()
        }
        continue
      }
      const lent = readBuffers.acquire()
      const buffer = lent instanceof Promise ? await lent : lent
      let n: number
      try {
        n = await source.readInto(position, buffer.subarray(0, length))
      } catch (err) {
        readBuffers.release(buffer)
        throw err
      }
      // A source that has bytes to give but returns none would spin this loop forever.
      if (n === 0) {
        readBuffers.release(buffer)
        throw new Error('the blob source returned no bytes')
      }
      position += n
      // Once only: a second release would hand the same buffer to two readers.
      let released = false
      const giveBack = (): void => {
        if (released) return
        released = true
        readBuffers.release(buffer)
      }
      yield { bytes: buffer.subarray(0, n), release: giveBack }
    }
  } finally {
    signal?.removeEventListener('abort', release)
    release()
  }
}

/** Options of {@link rangeStream}. */
export interface RangeStreamOptions {
  /** The client's request signal: releases the source when the client goes away. */
  readonly signal?: AbortSignal
  readonly onBytes?: (n: number) => void
  /** Called instead of erroring the stream when the source fails; the stream then ends short. */
  readonly abort?: (err: unknown) => void
}

/**
 * The range as a web stream, for consumers that keep what they read (small blobs read whole, and
 * tests). Clients are served by `sendRange`, which writes to the socket and reuses buffers.
 */
export function rangeStream(source: ByteSource, start: number, end: number, options: RangeStreamOptions = {}): ReadableStream<Uint8Array> {
  const { signal, onBytes, abort } = options
  const chunks = rangeChunks(source, start, end, signal)
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          const next = await chunks.next()
          if (next.done === true) return controller.close()
          const { bytes, release } = next.value
          onBytes?.(bytes.byteLength)
          // The consumer keeps what it reads: a copy, so that a reader's buffer (or a fill's
          // segment) goes back now; a lent buffer never given back would shrink the readers' budget.
          controller.enqueue(Uint8Array.prototype.slice.call(bytes))
          release()
        } catch (err) {
          if (abort === undefined) return controller.error(err)
          abort(err)
          controller.close()
        }
      },
      async cancel() {
        // A generator never started has no finally to run: release the source here as well.
        source.release()
        await chunks.return()
      },
    },
    // No read-ahead: the next chunk is read when this one is taken.
    { highWaterMark: 0 }
  )
}
