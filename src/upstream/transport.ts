// HTTP/1.1 to upstream registries and token servers over node:http and node:https, with keep-alive
// agents. Bodies are node streams: a blob fill takes each chunk as the socket read it. Through
// fetch, every chunk was copied out of undici's parser and passed through a web stream; for a
// 200 MiB blob that cost about 0.3 s more CPU and a third more garbage (measured side by side on
// the bench's registry). Nothing here follows redirects or answers challenges: the client does.

import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http'
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https'
import type { Readable } from 'node:stream'

/**
 * Connections kept per agent. Idle ones are closed after a while so that an upstream's DNS change
 * or a load balancer's idle cut is picked up without a failed request first.
 */
const agentOptions = { keepAlive: true, keepAliveMsecs: 1000, maxFreeSockets: 32, timeout: 60_000, scheduling: 'lifo' as const }
const agents = { http: new HttpAgent(agentOptions), https: new HttpsAgent(agentOptions) }

/** Bodies up to this size are read to their end when dropped, so their connection is reused. */
const DRAIN_LIMIT = 64 * 1024

export interface TransportRequest {
  readonly method: 'GET' | 'HEAD' | 'POST'
  readonly headers: Record<string, string>
  readonly body?: string
  /** Aborts the request, and the response body once it is streaming. */
  readonly signal?: AbortSignal
}

/** An upstream's answer: status, headers, and the body as a node stream (null for HEAD). */
export class UpstreamResponse {
  readonly status: number
  readonly headers: Headers
  readonly body: Readable | null

  constructor(init: { status: number; headers?: Headers; body?: Readable | null }) {
    this.status = init.status
    this.headers = init.headers ?? new Headers()
    this.body = init.body ?? null
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
      agent: secure ? agents.https : agents.http,
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
  if (Number.isFinite(declared) && declared > limit) {
    res.body?.destroy()
    throw errors.tooLarge()
  }
  const body = res.body
  if (body === null) return Buffer.alloc(0)
  const chunks: Buffer[] = []
  let total = 0
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      total += chunk.byteLength
      if (total > limit) {
        body.destroy()
        throw errors.tooLarge()
      }
      chunks.push(chunk)
    }
  } catch (cause) {
    if (total > limit) throw cause
    throw errors.broken(cause)
  }
  // Memory of its own, not Buffer.concat's: a small result would be cut from the shared 8 KiB
  // pool, and a manifest kept in memory (cache/manifest-memory.ts) would pin the whole slab.
  const bytes = Buffer.allocUnsafeSlow(total)
  let at = 0
  for (const chunk of chunks) {
    bytes.set(chunk, at)
    at += chunk.byteLength
  }
  return bytes
}
