// The configured upstreams, one client each, built once at start.

import type { UpstreamConfig } from '../config/schema.js'
import { CustomsError } from '../errors.js'
import type { Logger } from '../observability/logger.js'
import type { Metrics } from '../observability/metrics.js'
import type { Credentials } from './auth.js'
import { UpstreamClient } from './client.js'
import type { UpstreamTls } from './tls-settings.js'

export class UpstreamPool {
  readonly #clients = new Map<string, UpstreamClient>()

  constructor(
    upstreams: readonly UpstreamConfig[],
    deps: {
      metrics: Metrics
      logger: Logger
      credentials: (u: UpstreamConfig) => Credentials | undefined
      /** Each upstream's TLS, by name, as loaded at start (upstream/tls-settings.ts). */
      tls?: ReadonlyMap<string, UpstreamTls>
    }
  ) {
    for (const u of upstreams) {
      const credentials = deps.credentials(u)
      const tls = deps.tls?.get(u.name)
      this.#clients.set(
        u.name,
        new UpstreamClient(u, { metrics: deps.metrics, logger: deps.logger, ...(credentials ? { credentials } : {}), ...(tls ? { tls } : {}) })
      )
    }
  }

  get(name: string): UpstreamClient {
    const client = this.#clients.get(name)
    if (client === undefined) throw new CustomsError('NAME_UNKNOWN', `upstream ${name} is not configured`)
    return client
  }

  /**
   * Why answers served from cache for this upstream are stale ("stale but verified"), or undefined
   * while its circuit is closed: an open or probing circuit means the upstream is failing now, so
   * what is served could not be checked against it.
   */
  staleness(name: string): string | undefined {
    const state = this.#clients.get(name)?.breaker.state
    return state === undefined || state === 'closed' ? undefined : `upstream unavailable (circuit ${state})`
  }

  all(): UpstreamClient[] {
    return [...this.#clients.values()]
  }
}
