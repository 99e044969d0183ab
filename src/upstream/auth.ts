// Upstream authentication: the distribution token flow (anonymous and credentialed; GET and the
// POST grant_type=password form) and Basic. Tokens are cached per (origin, realm, service, scope,
// credential) until shortly before expiry. Credentials are bound to the upstream's own origin, and a
// token realm is accepted only on the challenging host or an allowlisted one (LANDSCAPE §5).

import { readBody, send, type Agents, type UpstreamResponse } from './transport.js'
import { CustomsError } from '../errors.js'
import type { Challenge } from './challenge.js'

export interface Credentials {
  readonly username: string
  readonly password: string
}

export interface AuthOptions {
  /** The upstream's origin: the only origin its credentials are ever sent to, or its token realm. */
  readonly origin: string
  readonly credentials?: Credentials
  /** Realm hosts accepted besides the challenging host; `*.example.com` matches subdomains. */
  readonly tokenRealmHosts: readonly string[]
  readonly timeout: number
  readonly userAgent: string
  readonly now?: () => number
  /** Counts token requests, for metrics. */
  readonly onTokenRequest?: (status: number | 'error') => void
  /** The pool a token request to `url` goes through (the upstream's TLS); the shared one by default. */
  readonly agents?: (url: URL) => Agents | undefined
}

interface CachedToken {
  readonly header: string
  readonly expiresAt: number
}

const MAX_TOKEN_RESPONSE = 64 * 1024
/** Refresh tokens this long before they expire, so a request never goes out with a dying token. */
const EXPIRY_MARGIN_MS = 10_000
const DEFAULT_EXPIRES_IN_S = 60

export class UpstreamAuth {
  readonly #options: AuthOptions
  readonly #now: () => number
  readonly #tokens = new Map<string, CachedToken>()
  /** The last challenge seen per (origin, scope), so later requests can send a token up front. */
  readonly #challenges = new Map<string, Challenge>()
  readonly #inflight = new Map<string, Promise<string>>()

  constructor(options: AuthOptions) {
    this.#options = options
    this.#now = options.now ?? Date.now
  }

  /** An Authorization value for a request to `origin` in `scope`, when one is known and fresh. */
  cached(origin: string, scope: string): string | undefined {
    const challenge = this.#challenges.get(`${origin} ${scope}`)
    if (challenge === undefined) return undefined
    if (challenge.scheme === 'basic') return this.#basicFor(origin)
    const token = this.#tokens.get(this.#tokenKey(origin, challenge, scope))
    return token !== undefined && token.expiresAt > this.#now() ? token.header : undefined
  }

  /** Answers a 401 challenge from `origin`: returns the Authorization value to retry with. */
  async authorize(challenge: Challenge, origin: string, scope: string, signal?: AbortSignal): Promise<string> {
    this.#challenges.set(`${origin} ${scope}`, challenge)
    if (challenge.scheme === 'basic') {
      const basic = this.#basicFor(origin)
      if (basic === undefined) {
        throw new CustomsError('UPSTREAM_DENIED', `upstream ${origin} requires credentials that are not configured`)
      }
      return basic
    }
    const key = this.#tokenKey(origin, challenge, scope)
    const cached = this.#tokens.get(key)
    if (cached !== undefined && cached.expiresAt > this.#now()) return cached.header
    // Concurrent requests for one scope share one token request.
    let pending = this.#inflight.get(key)
    if (pending === undefined) {
      pending = this.#fetchToken(challenge, origin, scope, key, signal).finally(() => this.#inflight.delete(key))
      this.#inflight.set(key, pending)
    }
    return pending
  }

  /** Forgets a token the upstream refused, so the next attempt fetches a fresh one. */
  invalidate(origin: string, scope: string): void {
    const challenge = this.#challenges.get(`${origin} ${scope}`)
    if (challenge !== undefined) this.#tokens.delete(this.#tokenKey(origin, challenge, scope))
  }

  #basicFor(origin: string): string | undefined {
    const creds = this.#credentialsFor(origin)
    if (creds === undefined) return undefined
    return `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`
  }

  #credentialsFor(origin: string): Credentials | undefined {
    return origin === this.#options.origin ? this.#options.credentials : undefined
  }

  #tokenKey(origin: string, challenge: Challenge, scope: string): string {
    const who = this.#credentialsFor(origin)?.username ?? ''
    return JSON.stringify([origin, challenge.params.realm ?? '', challenge.params.service ?? '', scope, who])
  }

  #checkRealm(realm: string | undefined, origin: string): URL {
    let url: URL
    try {
      url = new URL(realm ?? '')
    } catch {
      throw new CustomsError('UPSTREAM_INVALID', `upstream ${origin} sent a token challenge without a valid realm`)
    }
    const challenger = new URL(origin)
    const allowedScheme = url.protocol === 'https:' || (url.protocol === 'http:' && challenger.protocol === 'http:')
    const allowedHost =
      url.host === challenger.host || this.#options.tokenRealmHosts.some((p) => hostMatches(p, url.host))
    if (!allowedScheme || !allowedHost) {
      throw new CustomsError(
        'UPSTREAM_INVALID',
        `upstream ${origin} named token realm ${url.origin}, which is not its own host nor in tokenRealmHosts`
      )
    }
    return url
  }

  async #fetchToken(challenge: Challenge, origin: string, scope: string, key: string, signal?: AbortSignal): Promise<string> {
    const realm = this.#checkRealm(challenge.params.realm, origin)
    const service = challenge.params.service
    const creds = this.#credentialsFor(origin)
    const timeout = AbortSignal.timeout(this.#options.timeout)
    const sig = signal === undefined ? timeout : AbortSignal.any([signal, timeout])
    let res: UpstreamResponse
    if (creds !== undefined) {
      // The OAuth2 password grant first (what containerd does), then the GET form with Basic.
      res = await this.#request(realm, 'POST', sig, creds, service, scope)
      if (res.status === 404 || res.status === 405 || res.status === 400) {
        await res.discard()
        res = await this.#request(realm, 'GET', sig, creds, service, scope)
      }
    } else {
      res = await this.#request(realm, 'GET', sig, undefined, service, scope)
    }
    if (res.status === 401 || res.status === 403) {
      await res.discard()
      throw new CustomsError('UPSTREAM_DENIED', `token server ${realm.origin} refused ${creds ? 'the configured credentials' : 'an anonymous token'} for ${scope}`)
    }
    if (!res.ok) {
      await res.discard()
      const code = res.status === 429 ? 'TOOMANYREQUESTS' : 'UPSTREAM_UNAVAILABLE'
      throw new CustomsError(code, `token server ${realm.origin} answered ${res.status}`)
    }
    const body = await readBoundedJson(res, MAX_TOKEN_RESPONSE, realm.origin)
    const token = typeof body.token === 'string' ? body.token : body.access_token
    if (typeof token !== 'string' || token === '' || token.length > 16384 || /[\r\n]/.test(token)) {
      throw new CustomsError('UPSTREAM_INVALID', `token server ${realm.origin} answered without a usable token`)
    }
    const expiresIn =
      typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : DEFAULT_EXPIRES_IN_S
    const issuedAt = typeof body.issued_at === 'string' ? Date.parse(body.issued_at) : NaN
    const start = Number.isFinite(issuedAt) && issuedAt <= this.#now() ? issuedAt : this.#now()
    const header = `Bearer ${token}`
    this.#tokens.set(key, { header, expiresAt: start + expiresIn * 1000 - EXPIRY_MARGIN_MS })
    return header
  }

  async #request(
    realm: URL,
    method: 'GET' | 'POST',
    signal: AbortSignal,
    creds: Credentials | undefined,
    service: string | undefined,
    scope: string
  ): Promise<UpstreamResponse> {
    const url = new URL(realm)
    const headers: Record<string, string> = { 'User-Agent': this.#options.userAgent }
    let body: string | undefined
    if (method === 'GET') {
      if (service !== undefined) url.searchParams.set('service', service)
      for (const s of scope.split(' ').filter(Boolean)) url.searchParams.append('scope', s)
      if (creds !== undefined) {
        headers.Authorization = `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`
      }
    } else {
      const form = new URLSearchParams({ grant_type: 'password', client_id: 'customs', access_type: 'online' })
      if (service !== undefined) form.set('service', service)
      form.set('scope', scope)
      form.set('username', creds?.username ?? '')
      form.set('password', creds?.password ?? '')
      body = form.toString()
      headers['Content-Type'] = 'application/x-www-form-urlencoded'
    }
    try {
      // A token endpoint that redirects is not followed: the realm was checked, its target was not.
      const agents = this.#options.agents?.(url)
      const res = await send(url, { method, headers, signal, ...(body !== undefined ? { body } : {}), ...(agents !== undefined ? { agents } : {}) })
      this.#options.onTokenRequest?.(res.status)
      return res
    } catch (cause) {
      this.#options.onTokenRequest?.('error')
      throw new CustomsError('UPSTREAM_UNAVAILABLE', `token server ${realm.origin} is unreachable`, { cause })
    }
  }
}

/** `*.example.com` matches any subdomain of example.com; anything else matches exactly. */
export function hostMatches(pattern: string, host: string): boolean {
  if (pattern.startsWith('*.')) return host.endsWith(pattern.slice(1)) && host.length > pattern.length - 1
  return pattern === host
}

/** Reads a JSON object body of at most `limit` bytes; anything else is UPSTREAM_INVALID. */
export async function readBoundedJson(res: UpstreamResponse, limit: number, who: string): Promise<Record<string, unknown>> {
  const bytes = await readBounded(res, limit, who)
  let value: unknown
  try {
    value = JSON.parse(bytes.toString('utf8'))
  } catch {
    throw new CustomsError('UPSTREAM_INVALID', `${who} answered with a body that is not JSON`)
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new CustomsError('UPSTREAM_INVALID', `${who} answered with JSON that is not an object`)
  }
  return value as Record<string, unknown>
}

/** Reads a whole body, refusing more than `limit` bytes (declared or actual). */
export function readBounded(res: UpstreamResponse, limit: number, who: string): Promise<Buffer> {
  const declared = res.headers.get('content-length')
  return readBody(res, limit, {
    tooLarge: () =>
      new CustomsError(
        'UPSTREAM_INVALID',
        declared !== null && Number(declared) > limit
          ? `${who} answered ${declared.slice(0, 20)} bytes, over the ${limit}-byte limit`
          : `${who} answered more than the ${limit}-byte limit`
      ),
    broken: (cause) => new CustomsError('UPSTREAM_UNAVAILABLE', `${who} broke off its answer`, { cause }),
  })
}
