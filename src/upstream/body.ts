// A response body as the blob fill takes it: bytes handed over in views of memory the producer
// reuses, which the consumer copies (or finishes with) before its callback returns, or read by
// the producer straight into memory the consumer offers. Upstream blobs arrive this way from
// wire.ts, read by the socket itself; node streams are adapted to the same shape, so a fill and
// the small-body readers take either.

import type { Readable } from 'node:stream'

/** Where a body's bytes go. */
export interface BodySink {
  /**
   * Memory of the sink's own that a producer may read the next body bytes into, to hand them to
   * data() as a view of its start: the sink then need not copy them. A producer may ask again
   * before each read, and need not use it.
   */
  target?(): Uint8Array
  /**
   * A view valid only during the call: unless it is in the sink's target, the memory behind it is
   * reused afterwards.
   */
  data(view: Uint8Array): void
  /** The body is complete. */
  end(): void
  /** The body broke off. */
  error(err: Error): void
}

/**
 * A body delivered once, to one sink. Exactly one of `end` and `error` ends the delivery, unless
 * `destroy` was called first: after `destroy`, the sink hears nothing more.
 */
export interface BodyStream {
  start(sink: BodySink): void
  /** Asks for no more data until `resume`; a read already in hand may still be delivered. */
  pause(): void
  resume(): void
  /** Stops delivery and closes the connection behind it. */
  destroy(reason?: Error): void
}

/** A node stream as a BodyStream (node's HTTP client, tests). */
export function readableBody(readable: Readable): BodyStream {
  let sink: BodySink | undefined
  let early: true | Error | undefined
  let done = false
  const finish = (outcome: true | Error) => {
    if (done) return
    if (sink === undefined) {
      early ??= outcome
      return
    }
    done = true
    if (outcome === true) sink.end()
    else sink.error(outcome)
  }
  // Listened to from the start: a body can fail before its reader comes (a fill opening its temp
  // file), and an 'error' nobody listens to would take the process down.
  readable.on('error', (err) => finish(err))
  readable.once('end', () => finish(true))
  // Destroyed quietly, without 'end' or 'error': the body was cut short.
  readable.once('close', () => finish(new Error('the body was closed before its end')))
  return {
    start(s) {
      if (sink !== undefined) throw new Error('a body is read once')
      sink = s
      if (early !== undefined) return finish(early)
      readable.on('data', (chunk: Buffer) => {
        if (!done) s.data(chunk)
      })
    },
    pause: () => void readable.pause(),
    resume: () => void readable.resume(),
    destroy() {
      done = true
      readable.destroy()
    },
  }
}

/**
 * Reads a whole body into memory of its own, refusing more than `limit` bytes. Rejects with
 * `tooLarge()` past the limit (the body is cut) and with the body's own error when it breaks off.
 */
export function collectBody(body: BodyStream, limit: number, tooLarge: () => Error): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let total = 0
    body.start({
      data(view) {
        total += view.byteLength
        if (total > limit) {
          body.destroy()
          reject(tooLarge())
          return
        }
        // Copied: the view's memory is the producer's to reuse.
        chunks.push(Buffer.from(view))
      },
      end() {
        // Memory of its own, not Buffer.concat's: a small result would be cut from the shared
        // 8 KiB pool, and a manifest kept in memory (cache/manifest-memory.ts) would pin the slab.
        const bytes = Buffer.allocUnsafeSlow(total)
        let at = 0
        for (const chunk of chunks) {
          bytes.set(chunk, at)
          at += chunk.byteLength
        }
        resolve(bytes)
      },
      error: reject,
    })
  })
}
