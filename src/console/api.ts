// The console's only way to read or change anything: the admin API, called in process with the
// signed-in person's token, so the API's role checks, validation, logging and events apply to
// every page and every button exactly as they do to a script.

import type { CustomsEvent } from '../audit/events.js'
import type { AdminRole } from '../config/schema.js'
import type { ReloadResult } from '../policy/reload.js'
import type { ImageFacts } from '../inspection/facts.js'
import type { ManifestRecord, QuarantinePage, QuarantineRecord, Verdict } from '../state/store.js'
import type { VerificationFacts } from '../verify/facts.js'

/** Sends a request to the app's own admin routes (app.request), never over the network. */
export type AdminFetch = (path: string, init?: RequestInit) => Promise<Response>

export type ApiResult<T> =
  | { readonly ok: true; readonly data: T }
  | { readonly ok: false; readonly status: number; readonly code: string; readonly message: string }

export interface WhoAmI {
  readonly name: string
  readonly role: AdminRole
}

export interface ManifestFacts {
  readonly digest: string
  readonly mediaType: string
  readonly size: number
  readonly verdict: Verdict
  readonly facts?: VerificationFacts
  readonly image?: ImageFacts
}

export interface PolicyStatus {
  readonly revision: string
  readonly policies: number
  readonly exceptions: number
  readonly unmatched: unknown
  readonly path?: string
  readonly reloads: ReadonlyArray<ReloadResult & { readonly at: string }>
}

/** One decision of GET /admin/v1/decisions: a `decision` event of the audit log. */
export type Decision = CustomsEvent & { readonly seq?: number }

export interface DecisionPage {
  readonly decisions: readonly Decision[]
  readonly next?: string
}

/** GET /admin/v1/cache: this replica's cache figures. */
export interface CacheStatus {
  readonly maxSize?: number
  readonly bytes?: number
  readonly blobs?: number
  readonly hits?: number
  readonly misses?: number
  readonly joins?: number
  readonly hitRatio?: number | null
  readonly bytesServed?: number
  readonly bytesFetched?: number
}

/** One upstream of GET /admin/v1/upstreams. */
export interface UpstreamStatus {
  readonly name: string
  readonly url?: string
  readonly default?: boolean
  readonly circuit?: { readonly state: string; readonly since?: string }
  readonly requests?: number
  readonly errors?: number
  readonly lastSuccess?: string
  readonly lastError?: { readonly at: string; readonly kind: string; readonly message: string }
  readonly rateLimit?: { readonly remaining: number; readonly limit?: number; readonly at?: string }
}

export type { ManifestRecord, QuarantinePage, QuarantineRecord }

/** The admin API as one signed-in person sees it. */
export class ConsoleApi {
  readonly #fetch: AdminFetch
  readonly #token: string

  constructor(fetch: AdminFetch, token: string) {
    this.#fetch = fetch
    this.#token = token
  }

  get<T>(path: string, query: Record<string, string | undefined> = {}): Promise<ApiResult<T>> {
    return this.#call<T>(withQuery(path, query), { method: 'GET' })
  }

  post<T>(path: string, body: unknown): Promise<ApiResult<T>> {
    return this.#call<T>(path, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    })
  }

  async #call<T>(path: string, init: RequestInit): Promise<ApiResult<T>> {
    const headers = new Headers(init.headers)
    headers.set('authorization', `Bearer ${this.#token}`)
    const res = await this.#fetch(path, { ...init, headers })
    const text = await res.text()
    let body: unknown
    try {
      body = text === '' ? undefined : JSON.parse(text)
    } catch {
      body = undefined
    }
    if (res.ok) return { ok: true, data: body as T }
    const error = (body as { errors?: Array<{ code?: unknown; message?: unknown }> } | undefined)?.errors?.[0]
    return {
      ok: false,
      status: res.status,
      code: typeof error?.code === 'string' ? error.code : 'UNKNOWN',
      message: typeof error?.message === 'string' ? error.message : `the admin API answered ${res.status}`,
    }
  }
}

/** `path` with the defined parameters appended, each encoded. */
export function withQuery(path: string, query: Record<string, string | undefined>): string {
  const params = new URLSearchParams()
  for (const [key, value] of Object.entries(query)) if (value !== undefined) params.set(key, value)
  const search = params.toString()
  return search === '' ? path : `${path}?${search}`
}

/** The admin API path of one quarantine record (or manifest), each segment encoded. */
export function recordPath(kind: 'quarantine' | 'manifests', upstream: string, digest: string): string {
  return `/admin/v1/${kind}/${encodeURIComponent(upstream)}/${encodeURIComponent(digest)}`
}
