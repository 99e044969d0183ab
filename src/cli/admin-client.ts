// The CLI's side of the admin API: JSON requests to a running Customs with a bearer token, over
// HTTP or HTTPS (optionally with Customs' own CA and an mTLS client certificate). A refusal comes
// back as the server's OCI error message; the token never appears in any message.

import { request as httpRequest, type IncomingMessage } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { readBounded, readFailure } from '../files.js'
import { MAX_SETTING_FILE_BYTES } from '../tls/files.js'

/** Where and how to reach Customs: `--url`, `--token`, `--ca`, `--cert`, `--key`. */
export interface AdminTarget {
  readonly url: string
  readonly token: string
  readonly ca?: string
  readonly cert?: string
  readonly key?: string
}

/** A request that could not be answered: Customs refused it (status set) or was not reached. */
export class AdminRequestError extends Error {
  constructor(
    message: string,
    readonly status?: number
  ) {
    super(message)
    this.name = 'AdminRequestError'
  }
}

/** A bad --url or unreadable --ca/--cert/--key: a usage problem, before any request. */
export class AdminUsageError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'AdminUsageError'
  }
}

/** The largest answer read; a page of 500 quarantine records fits well within it. */
const RESPONSE_MAX_BYTES = 32 * 1024 * 1024
const TIMEOUT_MS = 30_000

export interface AdminClient {
  get(path: string, query?: Readonly<Record<string, string | undefined>>): Promise<unknown>
  post(path: string, body: unknown): Promise<unknown>
}

/** Checks the target (URL shape, TLS files) and returns a client for it. */
export async function adminClient(target: AdminTarget): Promise<AdminClient> {
  let base: URL
  try {
    base = new URL(target.url)
  } catch {
    throw new AdminUsageError(`--url ${JSON.stringify(target.url)} is not a URL`)
  }
  if ((base.protocol !== 'http:' && base.protocol !== 'https:') || base.username !== '' || base.password !== '' || base.search !== '' || base.hash !== '') {
    throw new AdminUsageError('--url must be an http(s) URL without credentials, query or fragment')
  }
  if ((target.cert === undefined) !== (target.key === undefined)) {
    throw new AdminUsageError('--cert and --key go together')
  }
  const tls = base.protocol === 'https:' ? await tlsFiles(target) : {}
  if (base.protocol === 'http:' && (target.ca ?? target.cert) !== undefined) {
    throw new AdminUsageError('--ca, --cert and --key need an https:// --url')
  }
  const root = base.pathname.replace(/\/+$/, '')

  async function send(method: 'GET' | 'POST', path: string, body?: unknown): Promise<unknown> {
    const url = new URL(`${root}${path}`, base)
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body))
    const headers: Record<string, string> = {
      Authorization: `Bearer ${target.token}`,
      Accept: 'application/json',
      'User-Agent': 'customs-cli',
      ...(payload !== undefined ? { 'Content-Type': 'application/json', 'Content-Length': String(payload.length) } : {}),
    }
    const request = url.protocol === 'https:' ? httpsRequest : httpRequest
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      const req = request(url, { method, headers, timeout: TIMEOUT_MS, ...tls }, resolve)
      req.on('timeout', () => req.destroy(new Error(`no answer within ${TIMEOUT_MS / 1000}s`)))
      req.on('error', (err) => reject(new AdminRequestError(`cannot reach ${base.origin}: ${err.message}`)))
      req.end(payload)
    })
    const text = await readBody(res).catch((err: unknown) => {
      if (err instanceof AdminRequestError) throw err
      throw new AdminRequestError(`the answer from ${base.origin} broke off: ${(err as Error).message}`)
    })
    const status = res.statusCode ?? 0
    if (status >= 200 && status < 300) {
      try {
        return JSON.parse(text) as unknown
      } catch {
        throw new AdminRequestError(`${base.origin} answered ${status} with a body that is not JSON`, status)
      }
    }
    throw new AdminRequestError(`${status} ${errorMessage(text)}`, status)
  }

  return {
    get(path, query = {}) {
      const params = new URLSearchParams()
      for (const [name, value] of Object.entries(query)) if (value !== undefined) params.set(name, value)
      const qs = params.toString()
      return send('GET', qs === '' ? path : `${path}?${qs}`)
    },
    post(path, body) {
      return send('POST', path, body)
    },
  }
}

async function tlsFiles(target: AdminTarget): Promise<{ ca?: Buffer; cert?: Buffer; key?: Buffer }> {
  const read = async (flag: string, file: string | undefined): Promise<Buffer | undefined> => {
    if (file === undefined) return undefined
    try {
      return await readBounded(file, MAX_SETTING_FILE_BYTES)
    } catch (err) {
      throw new AdminUsageError(`${flag} ${file}: ${readFailure(err)}`)
    }
  }
  const [ca, cert, key] = await Promise.all([read('--ca', target.ca), read('--cert', target.cert), read('--key', target.key)])
  return { ...(ca !== undefined ? { ca } : {}), ...(cert !== undefined ? { cert } : {}), ...(key !== undefined ? { key } : {}) }
}

async function readBody(res: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = []
  let total = 0
  for await (const chunk of res) {
    total += (chunk as Buffer).length
    if (total > RESPONSE_MAX_BYTES) {
      res.destroy()
      throw new AdminRequestError(`the answer is larger than ${RESPONSE_MAX_BYTES} bytes`)
    }
    chunks.push(chunk as Buffer)
  }
  return Buffer.concat(chunks).toString('utf8')
}

/** `CODE: message` of the first OCI error in a body, or the start of the body as it is. */
function errorMessage(text: string): string {
  try {
    const body = JSON.parse(text) as { errors?: Array<{ code?: unknown; message?: unknown }> }
    const first = body.errors?.[0]
    if (first !== undefined && typeof first.message === 'string') {
      return typeof first.code === 'string' ? `${first.code}: ${first.message}` : first.message
    }
  } catch {
    // Not an OCI error body: show what came.
  }
  return oneLine(text).slice(0, 200) || '(empty answer)'
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim()
}
