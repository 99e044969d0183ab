// HTTP/1.1 to upstream registries and token servers over node:http and node:https, with keep-alive
// agents. Bodies are node streams: a blob fill takes each chunk as the socket read it. Through
// fetch, every chunk was copied out of undici's parser and passed through a web stream; for a
// 200 MiB blob that cost about 0.3 s more CPU and a third more garbage (measured side by side on
// the bench's registry). Nothing here follows redirects or answers challenges: the client does.

import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http'
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https'
import type { LookupFunction } from 'node:net'
import type { Readable } from 'node:stream'
import type { ConnectionOptions } from 'node:tls'
import { collectBody, readableBody, type BodyStream } from './body.js'

/**
 * Connections kept per agent. Idle ones are closed after a while so that an upstream's DNS change
 * or a load balancer's idle cut is picked up without a failed request first.
 */
const agentOptions = { keepAlive: true, keepAliveMsecs: 1000, maxFreeSockets: 32, timeout: 60_000, scheduling: 'lifo' as const }

/** A keep-alive pool for plain and TLS connections. */
export interface Agents {
  readonly http: HttpAgent
  readonly https: HttpsAgent
}

/**
 * A pool whose every connection resolves its host through `lookup` (node's resolver by default)
 * and, over TLS, connects with `tls` (an upstream's CA or client certificate; the system's CAs by
 * default). A pool reuses a socket by host and port alone, so connections made under different
 * rules for where they may go, or with other TLS settings, need pools of their own.
 */
export function keepAliveAgents(lookup?: LookupFunction, tls: ConnectionOptions = {}): Agents {
  const options = lookup === undefined ? agentOptions : { ...agentOptions, lookup }
  return { http: new HttpAgent(options), https: keepAliveHttpsAgent(lookup, tls) }
}

/** The TLS half of {@link keepAliveAgents}: for a pool whose TLS settings were renewed. */
export function keepAliveHttpsAgent(lookup: LookupFunction | undefined, tls: ConnectionOptions): HttpsAgent {
  return new HttpsAgent({ ...agentOptions, ...(lookup === undefined ? {} : { lookup }), ...tls })
}

/**
 * Takes a pool out of use without cutting anything short: its idle connections close now, and
 * each one busy with a request closes when that answer has been read, instead of going back to
 * the pool. Nothing sends on the pool any more, so without this its idle connections would only
 * linger until their timeout.
 */
export function retireAgent(agent: HttpsAgent): void {
  // node's agent destroys a freed socket, rather than keeping it, when this answers false.
  agent.keepSocketAlive = () => false
  for (const sockets of Object.values(agent.freeSockets)) for (const socket of sockets ?? []) socket.destroy()
}

const agents = keepAliveAgents()

/** Bodies up to this size are read to their end when dropped, so their connection is reused. */
const DRAIN_LIMIT = 64 * 1024

export interface TransportRequest {
  readonly method: 'GET' | 'HEAD' | 'POST'
  readonly headers: Record<string, string>
  readonly body?: string
  /** Aborts the request, and the response body once it is streaming. */
  readonly signal?: AbortSignal
  /** The pool to connect through; a shared one, on node's resolver, by default. */
  readonly agents?: Agents
}

/**
 * An upstream's answer: status, headers, and the body: a node stream from node's client (null for
 * HEAD), or a BodyStream from wire.ts (blob fills).
 */
export class UpstreamResponse {
  readonly status: number
  readonly headers: Headers
  readonly body: Readable | null
  readonly #stream: BodyStream | undefined

  constructor(init: { status: number; headers?: Headers; body?: Readable | null; stream?: BodyStream }) {
    this.status = init.status
    this.headers = init.headers ?? new Headers()
    this.body = init.body ?? null
    this.#stream = init.stream
  }

  /** The body as a BodyStream, whichever client read it; null when there is none. */
  bodyStream(): BodyStream | null {
    if (this.#stream !== undefined) return this.#stream
    return this.body === null ? null : readableBody(this.body)
  }

  /** The answer node's client parsed; a HEAD answer has no body. */
  static of(message: IncomingMessage, method: string): UpstreamResponse {
    const headers = new Headers()
    const raw = message.rawHeaders
    for (let i = 0; i + 1 < raw.length; i += 2) {
      // A header value that is not a valid HTTP value is dropped, not fatal: the answer is
      // judged by what it says elsewhere (status, body, digest).
      try {
        headers.append(raw[i] as string, raw[i + 1] as string)
      } catch {
        // dropped on purpose
      }
    }
    if (method === 'HEAD') message.resume()
    return new UpstreamResponse({ status: message.statusCode ?? 0, headers, body: method === 'HEAD' ? null : message })
  }

  get ok(): boolean {
    return this.status >= 200 && this.status < 300
  }

  /**
   * Drops the body. A small one is read to its end so its connection goes back to the pool; a large
   * or unknown one closes the connection rather than download what nobody reads.
   */
  async discard(): Promise<void> {
    // wire.ts connections serve one answer and close: nothing is worth reading on.
    this.#stream?.destroy()
    const body = this.body
    if (body === null || body.destroyed || body.readableEnded) return
    const declared = Number(this.headers.get('content-length') ?? NaN)
    if (Number.isFinite(declared) && declared <= DRAIN_LIMIT) body.resume()
    else body.destroy()
  }
}

/** Sends one request; resolves at the response's head, rejects when no answer comes. */
export function send(url: URL, init: TransportRequest): Promise<UpstreamResponse> {
  const secure = url.protocol === 'https:'
  const request = secure ? httpsRequest : httpRequest
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...init.headers }
    if (init.body !== undefined) headers['Content-Length'] = String(Buffer.byteLength(init.body))
    const req = request(url, {
      method: init.method,
      headers,
      agent: secure ? (init.agents ?? agents).https : (init.agents ?? agents).http,
      ...(init.signal !== undefined ? { signal: init.signal } : {}),
    })
    req.once('response', (message) => resolve(UpstreamResponse.of(message, init.method)))
    req.once('error', reject)
    req.end(init.body)
  })
}

/** Reads a whole body, refusing more than `limit` bytes (declared or actual); `errors` makes the errors. */
export async function readBody(res: UpstreamResponse, limit: number, errors: { tooLarge: () => Error; broken: (cause: unknown) => Error }): Promise<Buffer> {
  const declared = Number(res.headers.get('content-length') ?? NaN)
  const body = res.bodyStream()
  if (Number.isFinite(declared) && declared > limit) {
    body?.destroy()
    throw errors.tooLarge()
  }
  if (body === null) return Buffer.alloc(0)
  let tooLarge: Error | undefined
  try {
    return await collectBody(body, limit, () => (tooLarge = errors.tooLarge()))
  } catch (cause) {
    if (cause === tooLarge) throw cause
    throw errors.broken(cause)
  }
}
