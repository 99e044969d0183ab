// The client for one upstream registry: auth challenges, redirects (blob CDNs, registry.k8s.io),
// retries on 408/429/5xx with backoff, and a circuit breaker, each a separate setting. It returns
// the final Response; callers turn statuses into typed errors with `statusError`.

import type { LookupFunction } from 'node:net'
import type { ConnectionOptions } from 'node:tls'
import type { UpstreamConfig } from '../config/schema.js'
import { CustomsError, type ErrorCode } from '../errors.js'
import type { Logger } from '../observability/logger.js'
import type { Metrics, UpstreamErrorKind } from '../observability/metrics.js'
import { Header } from '../oci/media-types.js'
import { UpstreamAuth, type Credentials } from './auth.js'
import { CircuitBreaker, type BreakerState } from './breaker.js'
import { parseChallenge } from './challenge.js'
import { cachedSocketLookup } from './dns-cache.js'
import { guardedLookup, isInternalRedirect, systemLookup, type HostLookup } from './egress.js'
import { keepAliveAgents, keepAliveHttpsAgent, retireAgent, send, type Agents, type UpstreamResponse } from './transport.js'
import { TlsSessions } from './tls-sessions.js'
import { tlsFor, type UpstreamTls } from './tls-settings.js'
import { getStreamed } from './wire.js'

export const USER_AGENT = 'customs/0.1'

/**
 * TLS sessions kept per upstream for its large-blob connections: one per host it sends blobs
 * from (the registry, a CDN or two, a bucket's regional names), so a few are plenty.
 */
const TLS_SESSIONS = 8

const REDIRECTS = new Set([301, 302, 303, 307, 308])
/** Request headers that never cross to another origin on a redirect. */
const RETRYABLE = (status: number) => status === 408 || status === 429 || status >= 500

export interface UpstreamRequest {
  readonly method: 'GET' | 'HEAD'
  /** Path and query on the upstream, already encoded: `/v2/library/alpine/manifests/3.19`. */
  readonly path: string
  /** The repository, for the token scope; omit for `/v2/`. */
  readonly repository?: string
  readonly accept?: string
  readonly range?: string
  /** Aborts the request and, for streamed bodies, the body too. */
  readonly signal?: AbortSignal
  /**
   * The body is large (a blob for a fill): each GET goes on a connection of its own that reads
   * into reused memory (wire.ts), rather than through node's client, which copies every chunk.
   */
  readonly bulk?: boolean
}

export interface RateLimit {
  readonly limit?: number
  readonly remaining: number
  readonly at: number
}

/** One upstream's health as this process saw it since start (admin API). */
export interface UpstreamHealth {
  readonly name: string
  readonly url: string
  readonly aliases: readonly string[]
  readonly default: boolean
  /** The circuit breaker's state and since when (ISO 8601). */
  readonly circuit: { readonly state: BreakerState; readonly since: string }
  /** Requests sent (each attempt and redirect hop) and failed ones, since start. */
  readonly requests: number
  readonly errors: number
  readonly lastSuccess?: string
  readonly lastError?: { readonly at: string; readonly kind: UpstreamErrorKind; readonly message: string }
  readonly rateLimit?: { readonly remaining: number; readonly limit?: number; readonly at: string }
}

export interface UpstreamClientDeps {
  readonly metrics: Metrics
  readonly logger: Logger
  readonly credentials?: Credentials
  /**
   * Resolves a host name to its addresses, for the redirect rule and for connecting to a redirect's
   * target; the system resolver by default.
   */
  readonly lookup?: HostLookup
  /** The upstream's own CA and client certificate (upstreams[].tls), loaded at start; see renewTls. */
  readonly tls?: UpstreamTls
}

export class UpstreamClient {
  readonly name: string
  readonly origin: string
  readonly breaker: CircuitBreaker
  #rateLimit: RateLimit | undefined
  #requests = 0
  #errors = 0
  #lastSuccess: number | undefined
  #lastError: { at: number; kind: UpstreamErrorKind; message: string } | undefined
  /** Errors #once already counted, so that send() does not count them again. */
  readonly #counted = new WeakSet<object>()
  readonly #config: UpstreamConfig
  readonly #base: URL
  readonly #auth: UpstreamAuth
  readonly #deps: UpstreamClientDeps
  readonly #lookup: HostLookup
  /** The redirect rule, applied when a connection to a redirect's target is made. */
  readonly #redirectLookup: LookupFunction
  /** Names this client may reach other than a redirect's target, resolved and kept a while (dns-cache.ts). */
  readonly #configuredLookup = cachedSocketLookup()
  /** The TLS settings in force and the pools made under them, replaced whole by {@link renewTls}. */
  #pools: Pools
  /** Sessions for wire.ts's connections; node:https agents keep their own. */
  readonly #sessions: TlsSessions

  constructor(config: UpstreamConfig, deps: UpstreamClientDeps) {
    this.#config = config
    this.#deps = deps
    this.#lookup = deps.lookup ?? systemLookup
    this.name = config.name
    this.#base = new URL(config.url)
    this.origin = this.#base.origin
    this.#redirectLookup = guardedLookup(
      this.#base.hostname,
      this.#lookup,
      (host) => new CustomsError('UPSTREAM_INVALID', `upstream ${this.name} redirected to an internal address: ${host.slice(0, 100)} resolved to one when connecting`)
    )
    // An upstream with `tls` never runs without it: it would connect under the system's trust
    // alone and without its client certificate, and only the upstream's refusals would say why.
    if (config.tls !== undefined && deps.tls === undefined) throw new Error(`upstream ${config.name}: its tls settings were not loaded`)
    this.#pools = this.#poolsFor(deps.tls)
    this.#sessions = new TlsSessions(TLS_SESSIONS, (resumed) => deps.metrics.tlsHandshakes.inc({ upstream: config.name, resumed: String(resumed) }))
    this.#auth = new UpstreamAuth({
      origin: this.origin,
      credentials: deps.credentials,
      tokenRealmHosts: config.tokenRealmHosts,
      timeout: config.timeout,
      userAgent: USER_AGENT,
      agents: (url) => this.#connection(url, 'token').agents,
    })
    this.breaker = new CircuitBreaker({
      failures: config.breaker.failures,
      cooldown: config.breaker.cooldown,
      onChange: (state) => {
        deps.metrics.breakerOpen.set({ upstream: config.name }, state === 'open' ? 1 : 0)
        deps.logger.warn({ upstream: config.name, state }, 'upstream circuit changed state')
      },
    })
  }

  /**
   * Puts renewed TLS settings (SIGHUP, upstream/tls-reload.ts) in force for every connection made
   * from now on, node's and wire.ts's alike; requests under way finish on the connections they
   * have. Their HTTPS pools are retired, not kept for reuse: an idle keep-alive connection
   * carries the handshake of the old settings, the old client certificate or trust, and an
   * operator rotates those because they must stop being used (a certificate about to be revoked,
   * a CA no longer trusted). Closing them costs a handshake per host on the next request, once.
   * Plain-HTTP pools carry no TLS and are kept. wire.ts's sessions need nothing: their cache key
   * names the secure context (tls-sessions.ts), and renewed settings are new contexts, so no
   * session earned under the old ones is offered to a connection made under the new.
   */
  renewTls(tls: UpstreamTls): void {
    const old = this.#pools
    this.#pools = this.#poolsFor(tls, old)
    for (const agents of [old.elsewhere, old.own, old.anyHost]) if (agents !== undefined) retireAgent(agents.https)
  }

  /** The pools for `tls`; given the `old` ones, their plain-HTTP agents are kept (they carry no TLS). */
  #poolsFor(tls: UpstreamTls | undefined, old?: Pools): Pools {
    const pool = (previous: Agents | undefined, lookup: LookupFunction | undefined, options: ConnectionOptions | undefined): Agents =>
      previous === undefined ? keepAliveAgents(lookup, options) : { http: previous.http, https: keepAliveHttpsAgent(lookup, options ?? {}) }
    return {
      tls,
      elsewhere: pool(old?.elsewhere, this.#redirectLookup, tls?.anyHost),
      own: tls === undefined ? undefined : pool(old?.own, undefined, tls.origin),
      anyHost: tls === undefined ? undefined : pool(old?.anyHost, undefined, tls.anyHost),
    }
  }

  /** What this process saw of the upstream since start. */
  health(): UpstreamHealth {
    const url = new URL(this.#config.url)
    url.username = ''
    url.password = ''
    const iso = (ms: number) => new Date(ms).toISOString()
    const rate = this.#rateLimit
    return {
      name: this.name,
      url: url.href,
      aliases: this.#config.aliases,
      default: this.#config.default,
      circuit: { state: this.breaker.state, since: iso(this.breaker.since) },
      requests: this.#requests,
      errors: this.#errors,
      ...(this.#lastSuccess !== undefined ? { lastSuccess: iso(this.#lastSuccess) } : {}),
      ...(this.#lastError !== undefined ? { lastError: { ...this.#lastError, at: iso(this.#lastError.at) } } : {}),
      ...(rate !== undefined ? { rateLimit: { remaining: rate.remaining, ...(rate.limit !== undefined ? { limit: rate.limit } : {}), at: iso(rate.at) } } : {}),
    }
  }

  /** Counts a failure by kind (a bounded label) and keeps the latest for the admin API. */
  #failed(kind: UpstreamErrorKind, message: string): void {
    this.#errors++
    this.#lastError = { at: Date.now(), kind, message: message.slice(0, 300) }
    this.#deps.metrics.upstreamErrors.inc({ upstream: this.name, kind })
  }

  /** The pull quota the upstream last reported, if it reports one. */
  get rateLimit(): RateLimit | undefined {
    return this.#rateLimit
  }

  /**
   * Sends a request with retries on 408/429/5xx and transport errors (only before a response
   * arrives), following redirects and answering auth challenges. Throws UPSTREAM_UNAVAILABLE when
   * the circuit is open or every attempt failed to reach the upstream.
   */
  async send(req: UpstreamRequest): Promise<UpstreamResponse> {
    if (!this.breaker.tryAcquire()) {
      this.#failed('circuit-open', 'the circuit is open: the request was not sent')
      const seconds = Math.ceil(this.breaker.retryAfterMs() / 1000)
      throw new CustomsError('UPSTREAM_UNAVAILABLE', `upstream ${this.name} is failing; its circuit is open`, {
        headers: { [Header.RETRY_AFTER]: String(Math.max(1, seconds)) },
      })
    }
    const { max, backoff, maxBackoff } = this.#config.retries
    let lastError: unknown
    for (let attempt = 0; ; attempt++) {
      let res: UpstreamResponse | undefined
      try {
        res = await this.#follow(req)
      } catch (err) {
        if (req.signal?.aborted) {
          this.breaker.success()
          throw err
        }
        // Failures of #once are counted there; these come from redirects and token servers.
        if (err instanceof Error && !this.#counted.has(err)) {
          const code = err instanceof CustomsError ? err.code : undefined
          this.#failed(code === 'UPSTREAM_DENIED' ? 'denied' : code === 'UPSTREAM_UNAVAILABLE' ? 'connection' : 'invalid', err.message)
        }
        if (err instanceof CustomsError && err.code !== 'UPSTREAM_UNAVAILABLE') {
          // A refusal or a malformed answer is not an outage: it does not trip the breaker.
          this.breaker.success()
          throw err
        }
        lastError = err
      }
      const retryable = res === undefined || RETRYABLE(res.status)
      if (!retryable) {
        this.breaker.success()
        const status = (res as UpstreamResponse).status
        if (status === 401 || status === 403) this.#failed('denied', `answered ${status} for ${req.path.slice(0, 200)}`)
        return res as UpstreamResponse
      }
      const retryAfter = res === undefined ? undefined : parseRetryAfter(res.headers.get(Header.RETRY_AFTER))
      const wait = retryAfter ?? Math.min(maxBackoff, backoff * 2 ** attempt) * (0.5 + Math.random() / 2)
      if (attempt >= max || wait > maxBackoff) {
        this.breaker.failure()
        if (res !== undefined) return res
        throw lastError instanceof CustomsError
          ? lastError
          : new CustomsError('UPSTREAM_UNAVAILABLE', `upstream ${this.name} is unreachable`, { cause: lastError })
      }
      await res?.discard()
      this.#deps.logger.debug({ upstream: this.name, path: req.path, status: res?.status, attempt }, 'retrying upstream request')
      await sleep(wait, req.signal)
    }
  }

  /** One attempt: follows redirects and answers at most one challenge per origin. */
  async #follow(req: UpstreamRequest): Promise<UpstreamResponse> {
    const scope = req.repository === undefined ? '' : `repository:${req.repository}:pull`
    let url = new URL(req.path, this.#base)
    let method = req.method
    const challenged = new Set<string>()
    for (let hop = 0; ; ) {
      const authorization = scope === '' && url.origin !== this.origin ? undefined : this.#auth.cached(url.origin, scope)
      const res = await this.#once(url, method, req, authorization)
      if (REDIRECTS.has(res.status)) {
        await res.discard()
        if (++hop > this.#config.maxRedirects) {
          throw new CustomsError('UPSTREAM_INVALID', `upstream ${this.name} redirected more than ${this.#config.maxRedirects} times`)
        }
        url = await this.#redirectTarget(url, res.headers.get('location'))
        if (res.status === 303 && method !== 'HEAD') method = 'GET'
        continue
      }
      if (res.status === 401 && !challenged.has(url.origin)) {
        const challenge = parseChallenge(res.headers.get(Header.WWW_AUTHENTICATE))
        if (challenge !== undefined) {
          await res.discard()
          challenged.add(url.origin)
          this.#auth.invalidate(url.origin, scope)
          const tokenScope = challenge.params.scope !== undefined && scope === '' ? challenge.params.scope : scope
          await this.#auth.authorize(challenge, url.origin, tokenScope, req.signal)
          continue
        }
      }
      return res
    }
  }

  async #redirectTarget(from: URL, location: string | null): Promise<URL> {
    let to: URL
    try {
      to = new URL(location ?? '', from)
    } catch {
      throw new CustomsError('UPSTREAM_INVALID', `upstream ${this.name} sent a redirect without a valid Location`)
    }
    if (to.protocol !== 'https:' && to.protocol !== 'http:') {
      throw new CustomsError('UPSTREAM_INVALID', `upstream ${this.name} redirected to a ${to.protocol} URL`)
    }
    if (from.protocol === 'https:' && to.protocol === 'http:') {
      throw new CustomsError('UPSTREAM_INVALID', `upstream ${this.name} redirected from https to plain http`)
    }
    // An upstream on the internet may not send Customs to an internal address (cloud metadata,
    // the cluster network): the bytes would fail their digest, but the request would be made.
    // Names are resolved too: a literal-only check let `metadata.attacker.example` (resolving to
    // 169.254.169.254) through. This refuses before any connection is made, and judges IP
    // literals, which no resolver sees; a name that answers differently when the connection is
    // made is judged again then (#redirectLookup).
    if (to.hostname !== from.hostname && (await isInternalRedirect(this.#base.hostname, to.hostname, this.#lookup))) {
      throw new CustomsError('UPSTREAM_INVALID', `upstream ${this.name} redirected to an internal address`)
    }
    return to
  }

  async #once(url: URL, method: 'GET' | 'HEAD', req: UpstreamRequest, authorization: string | undefined): Promise<UpstreamResponse> {
    const headers: Record<string, string> = { 'User-Agent': USER_AGENT }
    if (req.accept !== undefined) headers.Accept = req.accept
    if (req.range !== undefined) headers.Range = req.range
    // Authorization only ever goes to the origin it was issued for (never to a blob CDN).
    if (authorization !== undefined) headers.Authorization = authorization
    // The timeout bounds the wait for response headers; a streamed body is bounded by the caller.
    const headersTimeout = new AbortController()
    const timer = setTimeout(
      () => headersTimeout.abort(new Error(`no answer within ${this.#config.timeout} ms`)),
      this.#config.timeout
    )
    const signal = req.signal === undefined ? headersTimeout.signal : AbortSignal.any([req.signal, headersTimeout.signal])
    const { metrics } = this.#deps
    const endTimer = metrics.upstreamDuration.startTimer({ upstream: this.name })
    this.#requests++
    try {
      const connection = this.#connection(url, 'registry')
      const res =
        req.bulk === true && method === 'GET'
          ? await getStreamed(url, { headers, signal, lookup: connection.lookup, sessions: this.#sessions }, connection.tls)
          : await send(url, { method, headers, signal, agents: connection.agents })
      endTimer()
      metrics.upstreamRequests.inc({ upstream: this.name, method, status: String(res.status) })
      this.#recordRateLimit(res)
      const s = res.status
      if (s >= 500) this.#failed('server', `answered ${s} for ${url.pathname.slice(0, 200)}`)
      else if (s === 429) this.#failed('rate-limited', `answered 429 for ${url.pathname.slice(0, 200)}`)
      else if (s === 408) this.#failed('timeout', `answered 408 for ${url.pathname.slice(0, 200)}`)
      else this.#lastSuccess = Date.now()
      return res
    } catch (cause) {
      metrics.upstreamRequests.inc({ upstream: this.name, method, status: 'error' })
      // The redirect rule refused the connection: a refusal, not an outage, so neither retried
      // nor counted against the circuit.
      if (cause instanceof CustomsError) throw cause
      // A refused certificate is worth saying: the operator's fix (upstreams[].tls) differs from an outage's.
      const tls = tlsRefusal(cause)
      const error = new CustomsError('UPSTREAM_UNAVAILABLE', `upstream ${this.name} is unreachable${tls === undefined ? '' : `: ${tls}`}`, { cause })
      // A caller that gave up is not the upstream's failure.
      if (req.signal?.aborted !== true) {
        const timedOut = headersTimeout.signal.aborted
        this.#failed(timedOut ? 'timeout' : 'connection', timedOut ? `no answer within ${this.#config.timeout} ms` : describeCause(cause))
        this.#counted.add(error)
      }
      throw error
    } finally {
      clearTimeout(timer)
    }
  }

  /**
   * How a connection to `url` is made. A registry request to another host than the upstream's (a
   * redirect's target) resolves through the redirect rule, in pools of this client's own; one to
   * the upstream's host, and a token request (its realm was checked against tokenRealmHosts),
   * through the system's resolver with its answers kept 30 s. TLS as tls-settings.ts says: the CA
   * everywhere, the client certificate to the upstream's own origin only.
   */
  #connection(url: URL, purpose: 'registry' | 'token'): { agents?: Agents; lookup?: LookupFunction; tls: ConnectionOptions } {
    const pools = this.#pools
    const tls = tlsFor(pools.tls, this.origin, url)
    if (purpose === 'registry' && url.hostname !== this.#base.hostname) return { lookup: this.#redirectLookup, agents: pools.elsewhere, tls }
    return { lookup: this.#configuredLookup, agents: url.origin === this.origin ? pools.own : pools.anyHost, tls }
  }

  #recordRateLimit(res: UpstreamResponse): void {
    const remaining = parseQuota(res.headers.get(Header.RATELIMIT_REMAINING))
    if (remaining === undefined) return
    const limit = parseQuota(res.headers.get(Header.RATELIMIT_LIMIT))
    this.#rateLimit = { remaining, at: Date.now(), ...(limit !== undefined ? { limit } : {}) }
    this.#deps.metrics.rateLimitRemaining.set({ upstream: this.name }, remaining)
  }
}

/**
 * The TLS settings a client connects with and its pools, which a pool reuses a socket from by
 * host and port alone, so each kind of connection has its own:
 * - `elsewhere`: to any host but the upstream's own (a redirect's target), resolved through the
 *   redirect rule. One connected without that rule (by node's resolver, or for an internal
 *   upstream) must never carry a redirect's request.
 * - `own` and `anyHost`, with upstreams[].tls only: on node's resolver, to the upstream's own
 *   origin (with its client certificate) and to any other (its CA only). Without, the shared pool.
 */
interface Pools {
  readonly tls: UpstreamTls | undefined
  readonly elsewhere: Agents
  readonly own: Agents | undefined
  readonly anyHost: Agents | undefined
}

/**
 * The typed error for an upstream answer that is not a success. `notFound` names what was missing
 * (MANIFEST_UNKNOWN, BLOB_UNKNOWN, NAME_UNKNOWN).
 */
export async function statusError(res: UpstreamResponse, upstream: string, what: string, notFound: ErrorCode): Promise<CustomsError> {
  await res.discard()
  const s = res.status
  if (s === 404) return new CustomsError(notFound, `${what} not found on ${upstream}`)
  if (s === 401 || s === 403) return new CustomsError('UPSTREAM_DENIED', `${upstream} refused access to ${what}`)
  if (s === 429) {
    const retryAfter = res.headers.get(Header.RETRY_AFTER)
    return new CustomsError('TOOMANYREQUESTS', `${upstream} is rate-limiting pulls of ${what}`, {
      headers: retryAfter !== null && /^\d{1,6}$/.test(retryAfter) ? { [Header.RETRY_AFTER]: retryAfter } : {},
    })
  }
  if (s >= 500 || s === 408) return new CustomsError('UPSTREAM_UNAVAILABLE', `${upstream} answered ${s} for ${what}`)
  return new CustomsError('UPSTREAM_INVALID', `${upstream} answered ${s} for ${what}`)
}

/** Retry-After in ms: delta-seconds or an HTTP date; undefined when absent or malformed. */
export function parseRetryAfter(value: string | null): number | undefined {
  if (value === null) return undefined
  if (/^\d{1,9}$/.test(value.trim())) return Number(value.trim()) * 1000
  const at = Date.parse(value)
  return Number.isFinite(at) ? Math.max(0, at - Date.now()) : undefined
}

/** A transport failure in a few words: the system error code when there is one. */
function describeCause(cause: unknown): string {
  const code = (cause as { code?: unknown } | undefined)?.code
  if (typeof code === 'string') return `connection failed: ${code}`
  return `connection failed: ${cause instanceof Error ? cause.message : String(cause)}`
}

/** node's codes for a server certificate it could not verify (node's tls docs, "X509 certificate error codes"). */
const CERTIFICATE_REFUSED = new Set([
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY',
  'CERT_SIGNATURE_FAILURE',
  'CERT_NOT_YET_VALID',
  'CERT_HAS_EXPIRED',
  'ERROR_IN_CERT_NOT_BEFORE_FIELD',
  'ERROR_IN_CERT_NOT_AFTER_FIELD',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_CHAIN_TOO_LONG',
  'CERT_REVOKED',
  'INVALID_CA',
  'PATH_LENGTH_EXCEEDED',
  'INVALID_PURPOSE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'HOSTNAME_MISMATCH',
  'ERR_TLS_CERT_ALTNAME_INVALID',
])

/**
 * Why a TLS connection failed, when it is about certificates: the upstream's certificate was not
 * accepted, or the upstream refused the handshake (no client certificate, or one it does not trust).
 */
function tlsRefusal(cause: unknown): string | undefined {
  const code = (cause as { code?: unknown } | undefined)?.code
  if (typeof code !== 'string') return undefined
  if (CERTIFICATE_REFUSED.has(code)) return `its TLS certificate was not accepted (${code})`
  if (/^ERR_SSL_.*ALERT/.test(code)) return `it refused the TLS handshake (${code})`
  return undefined
}

/** `100;w=21600` -> 100. */
function parseQuota(value: string | null): number | undefined {
  if (value === null) return undefined
  const m = /^\s*(\d{1,12})/.exec(value)
  return m === null ? undefined : Number(m[1])
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason)
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    const onAbort = () => {
      clearTimeout(timer)
      reject(signal?.reason)
    }
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
