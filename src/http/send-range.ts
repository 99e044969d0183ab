// Writes a blob answer straight to node's response, not through a web ReadableStream: chunks go to
// the socket as they are read, at most two chunks ahead of it, and each pooled read buffer is given
// back when the socket has taken it. Through a web stream every chunk was a fresh buffer and
// several promise hops; this path allocates nothing per chunk.

import type { OutgoingHttpHeaders, ServerResponse } from 'node:http'
import { READ_CHUNK, type Chunk } from '../cache/reader.js'

/** Bytes written to the response but not yet taken by the socket, at most (two read chunks). */
const MAX_UNFLUSHED = 2 * READ_CHUNK

/** How a response ended: every byte sent, the client gone, or the source failed (connection cut). */
export interface SendOutcome {
  readonly sent: number
  readonly aborted: boolean
  /** Why the source failed, if it did. */
  readonly error?: unknown
  /** The status of the error answer sent instead, when the source failed before its first byte. */
  readonly errorStatus?: number
}

/**
 * Sends the head, then every chunk. `chunks` must stop when `signal` aborts; the signal aborts when
 * the client goes away before the answer is complete. A source that fails before its first byte
 * gets the error answer `renderError` makes; one that fails later cuts the connection, so the
 * client sees a broken transfer, never a complete-looking one. Never rejects.
 */
export async function sendRange(
  res: ServerResponse,
  status: number,
  headers: OutgoingHttpHeaders,
  chunks: (signal: AbortSignal) => AsyncGenerator<Chunk, void, undefined>,
  options: { onBytes?: (n: number) => void; renderError?: (error: unknown) => Response } = {}
): Promise<SendOutcome> {
  const gone = new AbortController()
  let wake: (() => void) | undefined
  const onClose = () => {
    if (!res.writableFinished) gone.abort()
    wake?.()
  }
  res.once('close', onClose)
  let sent = 0
  let unflushed = 0
  const source = chunks(gone.signal)
  let first: IteratorResult<Chunk, void>
  try {
    first = await source.next()
  } catch (error) {
    res.off('close', onClose)
    try {
      const answer = options.renderError?.(error)
      if (answer !== undefined && !res.destroyed) {
        const body = Buffer.from(await answer.arrayBuffer())
        res.writeHead(answer.status, Object.fromEntries(answer.headers))
        res.end(body)
        return { sent, aborted: false, error, errorStatus: answer.status }
      }
    } catch {
      // The error answer itself failed: cutting the connection below says enough.
    }
    res.destroy()
    return { sent, aborted: true, error }
  }
  try {
    res.writeHead(status, headers)
    for (let next = first; next.done !== true; next = await source.next()) {
      const { bytes, release } = next.value
      // A socket destroyed before its 'close' reached us takes no write, and one no longer writable
      // (the client's end arrived, so node ended our side) has the write parked in the response's
      // own buffer, which only a writable socket ever flushes: either way node's _writeRaw never
      // calls the write's callback, and the chunk's memory is given back here instead.
      const socket = res.socket
      if (socket !== null && (socket.destroyed || !socket.writable)) gone.abort()
      if (gone.signal.aborted) {
        release()
        break
      }
      const n = bytes.byteLength
      unflushed += n
      res.write(bytes, () => {
        unflushed -= n
        release()
        wake?.()
      })
      sent += n
      options.onBytes?.(n)
      while (unflushed >= MAX_UNFLUSHED && !gone.signal.aborted) {
        await new Promise<void>((resolve) => (wake = resolve))
        wake = undefined
      }
    }
    if (gone.signal.aborted) {
      await source.return()
      return { sent, aborted: true }
    }
    res.end()
    return { sent, aborted: false }
  } catch (error) {
    res.destroy()
    return { sent, aborted: true, error }
  } finally {
    res.off('close', onClose)
  }
}
