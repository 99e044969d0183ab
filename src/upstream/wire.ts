// One GET on a connection of its own, for blob bodies: the socket reads into memory the body's
// sink offers (net.Socket's `onread` with a buffer function), so a fill's bytes land in its
// segments with no copy on the way; the response head, chunked bodies and bytes that come before
// the sink does are read into a buffer of the connection's and handed over as views of it.
//
// Why not node:http: its client copies every body chunk out of the socket's read into a new
// Buffer, so each 64 KiB of a blob cost two fresh external allocations. For a 200 MiB cold pull
// that was about 0.2 s of main-thread parsing and copying and a mark-compact every few dozen
// megabytes ("external memory pressure" in --trace-gc), whose concurrent marking cost the GC
// threads another 0.3-0.45 s. Reading the same 200 MiB this way costs about 0.04 s of CPU against
// 0.37-0.43 s through node:http (measured side by side against a local server). TLS sockets take
// `onread` as well.
//
// Deliberately small: `Connection: close` (one blob per connection, so no pool and no reuse
// bugs), GET only, no request body. The head is parsed strictly and bounded; the body is framed by
// Content-Length, chunked encoding, or the connection's close, as RFC 9112 §6.3 orders them, and
// a response that carries both Content-Length and Transfer-Encoding is refused. Over TLS, a
// session the caller kept (tls-sessions.ts) is resumed, so a connection per blob is not a full
// handshake each.

import { validateHeaderName, validateHeaderValue } from 'node:http'
import { connect as netConnect, type LookupFunction, type Socket } from 'node:net'
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls'
import type { BodySink, BodyStream } from './body.js'
import type { TlsSessions } from './tls-sessions.js'
import { UpstreamResponse } from './transport.js'

/**
 * The connection's own read buffer: the head, and bodies that cannot be read in place. A body
 * that can goes into its sink's memory, so this need not be large.
 */
const READ_BUFFER = 64 * 1024
/** The most a response head (status line and headers) may take. */
const MAX_HEAD = 64 * 1024
/** The most a chunk-size line or a trailer line may take. */
const MAX_LINE = 4096
/** Interim (1xx) answers skipped before the real one. */
const MAX_INTERIM = 8

const STATUS_LINE = /^HTTP\/1\.[01] ([1-9]\d\d)(?: [^\r\n]*)?$/
const HEADER_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([^\r\n]*?)[ \t]*$/
const CHUNK_SIZE = /^([0-9A-Fa-f]{1,12})[ \t]*(?:;[^\r\n]*)?$/

/** A response that breaks HTTP/1.1's framing rules. */
export class WireError extends Error {
  override readonly name = 'WireError'
}

export interface StreamedRequest {
  readonly headers: Record<string, string>
  /** Aborts the request, and the body once it is streaming. */
  readonly signal?: AbortSignal
  /** Resolves the host when connecting; node's resolver by default. */
  readonly lookup?: LookupFunction
  /** TLS sessions to resume and to keep, so that a connection per blob is not a full handshake each. */
  readonly sessions?: TlsSessions
}

/**
 * GETs `url` on a new connection; resolves at the response head, with the body (none for 204 and
 * 304) as a BodyStream. `tls` adds TLS options (an upstream's secure context, with its CA and
 * client certificate: upstream/tls-settings.ts); the system's trust is the default.
 */
export function getStreamed(url: URL, init: StreamedRequest, tls: ConnectionOptions = {}): Promise<UpstreamResponse> {
  return new Promise((resolve, reject) => {
    let request: string
    try {
      request = requestHead(url, init.headers)
    } catch (err) {
      reject(err)
      return
    }
    const exchange = new Exchange(resolve, reject)
    const secure = url.protocol === 'https:'
    const host = url.hostname.replace(/^\[|\]$/g, '')
    const port = Number(url.port || (secure ? 443 : 80))
    // The function gives the memory for the read after each one (node calls it once at the start).
    const onread = { buffer: () => exchange.readInto(), callback: (n: number, buf: Uint8Array) => exchange.read(buf.subarray(0, n)) }
    const lookup = init.lookup
    const resumption = secure ? init.sessions?.resumption(host, port, tls) : undefined
    const socket = secure
      ? tlsConnect({ ...tls, ...resumption?.options, host, port, lookup, ALPNProtocols: ['http/1.1'], onread } as ConnectionOptions)
      : netConnect({ host, port, lookup, onread })
    resumption?.watch(socket as TLSSocket)
    exchange.attach(socket, init.signal)
    socket.write(request)
  })
}

/** The request's head; throws on a header name or value that could split it. */
function requestHead(url: URL, headers: Record<string, string>): string {
  let head = `GET ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\nConnection: close\r\n`
  for (const [name, value] of Object.entries(headers)) {
    validateHeaderName(name)
    validateHeaderValue(name, value)
    head += `${name}: ${value}\r\n`
  }
  return `${head}\r\n`
}

type Framing = { kind: 'length'; remaining: number } | { kind: 'chunked' } | { kind: 'close' } | { kind: 'none' }

/** One request's connection: the head, then the body as a BodyStream. */
class Exchange implements BodyStream {
  #socket!: Socket
  #resolve: ((res: UpstreamResponse) => void) | undefined
  #reject: ((err: unknown) => void) | undefined
  #head: Buffer[] = []
  #headBytes = 0
  #interim = 0
  #framing: Framing | undefined
  #sink: BodySink | undefined
  /** Body bytes (copied) that arrived before the sink did. */
  #early: Buffer[] = []
  /** How the body ended before the sink came: `true` for its end, an Error for a failure. */
  #outcome: true | Error | undefined
  #paused = false
  #finished = false
  #onAbort: (() => void) | undefined
  #signal: AbortSignal | undefined
  #chunks: ChunkedDecoder | undefined
  /** The connection's own read buffer, made when first needed. */
  #own: Buffer | undefined

  constructor(resolve: (res: UpstreamResponse) => void, reject: (err: unknown) => void) {
    this.#resolve = resolve
    this.#reject = reject
  }

  attach(socket: Socket, signal: AbortSignal | undefined): void {
    this.#socket = socket
    socket.on('error', (err) => this.#fail(err))
    socket.on('end', () => this.#ended())
    socket.on('close', () => this.#fail(new Error('the upstream closed the connection')))
    if (signal !== undefined) {
      this.#signal = signal
      this.#onAbort = () => this.#fail(signal.reason instanceof Error ? signal.reason : new Error('aborted'))
      if (signal.aborted) this.#onAbort()
      else signal.addEventListener('abort', this.#onAbort, { once: true })
    }
  }

  /**
   * Where the next socket read goes: the sink's memory once the body flows and every byte read is
   * body (Content-Length or close-delimited framing), else the connection's own buffer.
   */
  readInto(): Uint8Array {
    const kind = this.#framing?.kind
    // Node asks for the next read's memory even after the read that ended the body: the sink is
    // not asked then, so a fill takes no segment it will never fill.
    const flowing = !this.#finished && (kind === 'length' || kind === 'close')
    const target = flowing ? this.#sink?.target?.() : undefined
    if (target !== undefined && target.byteLength > 0) return target
    this.#own ??= Buffer.allocUnsafeSlow(READ_BUFFER)
    return this.#own
  }

  /** One socket read; the return value keeps reading (true) or pauses the socket (false). */
  read(bytes: Uint8Array): boolean {
    if (this.#finished) return false
    try {
      const rest = this.#framing === undefined ? this.#readHead(bytes) : bytes
      if (rest !== undefined && rest.byteLength > 0) this.#body(rest)
    } catch (err) {
      this.#fail(err instanceof Error ? err : new Error(String(err)))
      return false
    }
    if (this.#finished) return false
    // The head is read to its end; then, until the caller starts the body, what came with the head
    // is kept (copied) and the socket paused.
    return this.#framing === undefined || (this.#sink !== undefined && !this.#paused)
  }

  start(sink: BodySink): void {
    if (this.#sink !== undefined) throw new Error('a body is read once')
    this.#sink = sink
    for (const chunk of this.#early.splice(0)) sink.data(chunk)
    const outcome = this.#outcome
    if (outcome !== undefined) {
      this.#outcome = undefined
      if (outcome === true) sink.end()
      else sink.error(outcome)
      return
    }
    if (!this.#paused) this.#socket.resume()
  }

  pause(): void {
    this.#paused = true
    if (!this.#finished) this.#socket.pause()
  }

  resume(): void {
    this.#paused = false
    // Before the sink comes, the socket stays paused: nothing would take the bytes.
    if (this.#sink !== undefined && !this.#finished) this.#socket.resume()
  }

  destroy(): void {
    this.#sink = undefined
    this.#finish()
    this.#socket.destroy()
  }

  /** Gathers the head; returns the bytes after it once it is complete, undefined until then. */
  #readHead(bytes: Uint8Array): Uint8Array | undefined {
    this.#headBytes += bytes.byteLength
    this.#head.push(Buffer.from(bytes))
    const all = this.#head.length === 1 ? (this.#head[0] as Buffer) : Buffer.concat(this.#head)
    const end = all.indexOf('\r\n\r\n')
    if (end === -1) {
      if (this.#headBytes > MAX_HEAD) throw new WireError(`the response head is over ${MAX_HEAD} bytes`)
      this.#head = [all]
      return undefined
    }
    if (end > MAX_HEAD) throw new WireError(`the response head is over ${MAX_HEAD} bytes`)
    this.#head = []
    this.#headBytes = 0
    const rest = all.subarray(end + 4)
    const { status, headers } = parseHead(all.toString('latin1', 0, end))
    if (status < 200) {
      // An interim answer (103 Early Hints, say): the real one follows on the same connection.
      if (status === 101 || ++this.#interim > MAX_INTERIM) throw new WireError(`unexpected interim answer ${status}`)
      return rest.byteLength > 0 ? this.#readHead(rest) : undefined
    }
    this.#framing = framing(status, headers)
    const resolve = this.#resolve
    this.#resolve = undefined
    this.#reject = undefined
    const none = this.#framing.kind === 'none'
    resolve?.(new UpstreamResponse({ status, headers, stream: none ? emptyBody() : this }))
    if (none) {
      this.#finish()
      this.#socket.destroy()
      return undefined
    }
    return rest
  }

  #body(bytes: Uint8Array): void {
    const framing = this.#framing as Framing
    if (framing.kind === 'length') {
      const n = Math.min(bytes.byteLength, framing.remaining)
      framing.remaining -= n
      if (n > 0) this.#deliver(bytes.subarray(0, n))
      // Bytes past the declared length are ignored: the connection closes after this answer.
      if (framing.remaining === 0) this.#complete()
    } else if (framing.kind === 'chunked') {
      this.#chunks ??= new ChunkedDecoder()
      if (this.#chunks.feed(bytes, (view) => this.#deliver(view))) this.#complete()
    } else {
      this.#deliver(bytes)
    }
  }

  #deliver(view: Uint8Array): void {
    if (this.#sink !== undefined) this.#sink.data(view)
    else this.#early.push(Buffer.from(view))
  }

  /** The body arrived whole. */
  #complete(): void {
    if (this.#finished) return
    const sink = this.#sink
    this.#finish()
    this.#socket.destroy()
    if (sink !== undefined) sink.end()
    else this.#outcome = true
  }

  /** The peer ended its side: the end of a close-delimited body, or a body cut short. */
  #ended(): void {
    if (this.#framing?.kind === 'close') this.#complete()
    else this.#fail(this.#framing === undefined ? new WireError('the upstream closed the connection before answering') : cutShort(this.#framing))
  }

  #fail(err: Error): void {
    if (this.#finished) return
    const sink = this.#sink
    const reject = this.#reject
    this.#finish()
    this.#socket.destroy()
    if (reject !== undefined) reject(err)
    else if (sink !== undefined) sink.error(err)
    else this.#outcome = err
  }

  #finish(): void {
    this.#finished = true
    this.#resolve = undefined
    this.#reject = undefined
    if (this.#onAbort !== undefined) this.#signal?.removeEventListener('abort', this.#onAbort)
  }
}

type ChunkState = 'size' | 'data' | 'data-end' | 'trailer' | 'done'

/**
 * Decodes a chunked body (RFC 9112 §7.1) fed in arbitrary pieces: chunk data goes out as views of
 * what was fed; extensions and trailer fields are checked for form and dropped.
 */
export class ChunkedDecoder {
  #state: ChunkState = 'size'
  #left = 0
  #line = ''

  /** Feeds bytes; returns true once the last chunk and the trailer section have arrived. Throws WireError. */
  feed(bytes: Uint8Array, deliver: (view: Uint8Array) => void): boolean {
    let at = 0
    while (at < bytes.byteLength && this.#state !== 'done') {
      if (this.#state === 'data') {
        const n = Math.min(bytes.byteLength - at, this.#left)
        deliver(bytes.subarray(at, at + n))
        at += n
        this.#left -= n
        if (this.#left === 0) this.#state = 'data-end'
        continue
      }
      // The other states read lines.
      const newline = bytes.indexOf(0x0a, at)
      const stop = newline === -1 ? bytes.byteLength : newline + 1
      this.#line += Buffer.from(bytes.buffer, bytes.byteOffset + at, stop - at).toString('latin1')
      at = stop
      if (this.#line.length > MAX_LINE) throw new WireError('a chunk line is too long')
      if (newline === -1) break
      if (!this.#line.endsWith('\r\n')) throw new WireError('a chunk line does not end with CRLF')
      const line = this.#line.slice(0, -2)
      this.#line = ''
      if (this.#state === 'data-end') {
        if (line !== '') throw new WireError('a chunk is longer than its size')
        this.#state = 'size'
      } else if (this.#state === 'size') {
        const m = CHUNK_SIZE.exec(line)
        if (m === null) throw new WireError('a chunk size is malformed')
        this.#left = Number.parseInt(m[1] as string, 16)
        this.#state = this.#left === 0 ? 'trailer' : 'data'
      } else if (line === '') {
        // The empty line after the trailer fields ends the body.
        this.#state = 'done'
      } else if (!HEADER_LINE.test(line)) {
        throw new WireError('a trailer field is malformed')
      }
    }
    return this.#state === 'done'
  }
}

function cutShort(framing: Framing): Error {
  if (framing.kind === 'length') return new Error(`the upstream closed the connection ${framing.remaining} bytes before the body's end`)
  return new Error("the upstream closed the connection before the body's last chunk")
}

/** The status and headers of a head (without its final CRLF CRLF); throws WireError on anything malformed. */
export function parseHead(text: string): { status: number; headers: Headers } {
  const lines = text.split('\r\n')
  const m = STATUS_LINE.exec(lines[0] ?? '')
  if (m === null) throw new WireError('the status line is malformed')
  const headers = new Headers()
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i] as string
    // obs-fold (a continuation line) is refused, as RFC 9112 §5.2 allows.
    const h = HEADER_LINE.exec(line)
    if (h === null) throw new WireError(`header line ${i} is malformed`)
    // A value Headers will not take is dropped, as transport.ts does for node's answers: the
    // answer is judged by its status, framing and digest.
    try {
      headers.append(h[1] as string, h[2] as string)
    } catch {
      // dropped on purpose
    }
  }
  return { status: Number(m[1]), headers }
}

/** How the body of an answer is delimited (RFC 9112 §6.3), for a GET. */
export function framing(status: number, headers: Headers): Framing {
  if (status === 204 || status === 304) return { kind: 'none' }
  const te = headers.get('transfer-encoding')
  const cl = headers.get('content-length')
  if (te !== null) {
    if (cl !== null) throw new WireError('the answer has both Transfer-Encoding and Content-Length')
    if (te.trim().toLowerCase() !== 'chunked') throw new WireError(`transfer coding ${te.slice(0, 40)} is not supported`)
    return { kind: 'chunked' }
  }
  if (cl !== null) {
    // Repeated fields arrive joined by ", "; every copy must agree.
    const values = new Set(cl.split(',').map((v) => v.trim()))
    const [value] = values
    if (values.size !== 1 || value === undefined || !/^\d{1,15}$/.test(value)) throw new WireError('the Content-Length is malformed')
    const remaining = Number(value)
    return remaining === 0 ? { kind: 'none' } : { kind: 'length', remaining }
  }
  return { kind: 'close' }
}

/** The body of an answer that has none. */
function emptyBody(): BodyStream {
  return {
    start: (sink) => sink.end(),
    pause() {},
    resume() {},
    destroy() {},
  }
}
