// Streams a byte range of a blob to one client, from a committed file or from a fill in progress.
// Each reader pulls at its own pace (backpressure comes from the client's socket), so memory stays
// at about one chunk per client whatever the blob's size.

import type { FileHandle } from 'node:fs/promises'
import { READ_CHUNK, type Fill } from './fill.js'

/** A reader of a growing fill reads at least this much at a time (unless at the end)... */
const MIN_GROWING_READ = 256 * 1024
/** ...or whatever there is after waiting this long for more. */
const GATHER_MS = 5

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

/** Where a reader's bytes come from. */
export interface ByteSource {
  read(position: number, length: number): Promise<Buffer>
  /** Bytes that may be read now; Infinity-free: at most the blob's size. */
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
    async read(position, length) {
      const buffer = Buffer.allocUnsafe(length)
      const { bytesRead } = await handle.read(buffer, 0, length, position)
      if (bytesRead === 0) throw new Error('cached blob is shorter than recorded')
      return bytesRead === length ? buffer : buffer.subarray(0, bytesRead)
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

export function fillSource(fill: Fill): ByteSource {
  let released = false
  fill.acquire()
  return {
    read: (position, length) => fill.read(position, length),
    readable: () => fill.written,
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

/**
 * A stream of bytes [start, end] (inclusive) of the source. The last byte is sent only once the
 * source is final, so a fill that fails its digest check aborts the response short of complete.
 */
export interface RangeStreamOptions {
  /** The client's request signal: releases the source when the client goes away. */
  readonly signal?: AbortSignal
  readonly onBytes?: (n: number) => void
  /**
   * Cuts the client's connection when the source fails. Without it the stream errors, which the
   * HTTP layer turns into a reset too, but only after logging the error as unexpected.
   */
  readonly abort?: (err: unknown) => void
}

export function rangeStream(source: ByteSource, start: number, end: number, options: RangeStreamOptions = {}): ReadableStream<Uint8Array> {
  const { signal, onBytes, abort } = options
  let position = start
  let waited = false
  const cleanup = () => {
    signal?.removeEventListener('abort', cleanup)
    source.release()
  }
  signal?.addEventListener('abort', cleanup, { once: true })
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          for (;;) {
            const failure = source.failure()
            if (failure !== undefined) throw failure
            // Hold back byte `end` until the source is final.
            const limit = source.final() ? end + 1 : Math.min(source.readable(), end)
            // While a fill grows fast, wait a moment for a worthwhile amount rather than chase
            // every write; a slow upstream still gets its bytes through after that moment.
            const worthwhile = limit - position >= MIN_GROWING_READ || source.final() || limit === end || waited
            if (position < limit && !worthwhile) {
              waited = await changedWithin(source, GATHER_MS)
              waited = !waited
              continue
            }
            waited = false
            if (position < limit) {
              const chunk = await source.read(position, Math.min(READ_CHUNK, limit - position))
              // A source that has bytes to give but returns none would spin this loop forever.
              if (chunk.byteLength === 0) throw new Error('the blob source returned no bytes')
              position += chunk.byteLength
              onBytes?.(chunk.byteLength)
              controller.enqueue(chunk)
              if (position > end) {
                controller.close()
                cleanup()
              }
              return
            }
            if (position > end && source.final()) {
              controller.close()
              cleanup()
              return
            }
            await source.changed()
          }
        } catch (err) {
          cleanup()
          if (abort === undefined) return controller.error(err)
          abort(err)
          controller.close()
        }
      },
      cancel() {
        cleanup()
      },
    },
    // No read-ahead: the next chunk is read when the socket has taken this one.
    { highWaterMark: 0 }
  )
}
