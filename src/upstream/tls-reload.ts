// SIGHUP for upstreams' TLS (upstreams[].tls): each upstream's files are read and checked again
// exactly as at start (tls-settings.ts), and an upstream whose files all pass connects with them
// from then on (UpstreamClient.renewTls). One whose files fail keeps the settings it had, as the
// listener keeps its certificates (tls/server.ts): a rotation caught half-copied must not cut an
// upstream off, and the next SIGHUP, once the copy is done, puts it in force.

import type { UpstreamConfig } from '../config/schema.js'
import type { Logger } from '../observability/logger.js'
import { oneAtATime } from '../concurrency.js'
import { TlsError } from '../tls/errors.js'
import type { UpstreamPool } from './pool.js'
import { loadUpstreamTls, logUpstreamTls, upstreamTlsSetting } from './tls-settings.js'

/** What one reload did for one upstream: renewed, or kept its settings for `error`. */
export interface UpstreamTlsRenewal {
  readonly upstream: string
  readonly error?: string
}

/**
 * A function that renews the TLS of every upstream of `upstreams` that has a `tls` section, in
 * `pool`; relative paths are from `base`, the configuration file's folder, as at start. Each
 * upstream's outcome is logged, a failure as one error line naming the setting and the file.
 */
export function upstreamTlsReloader(
  upstreams: readonly UpstreamConfig[],
  pool: UpstreamPool,
  options: { base: string; logger: Logger }
): () => Promise<UpstreamTlsRenewal[]> {
  const { base, logger } = options
  async function renewAll(): Promise<UpstreamTlsRenewal[]> {
    const renewals: UpstreamTlsRenewal[] = []
    for (const [i, u] of upstreams.entries()) {
      if (u.tls === undefined) continue
      try {
        const tls = await loadUpstreamTls(u.tls, { setting: upstreamTlsSetting(i), base })
        pool.get(u.name).renewTls(tls)
        logUpstreamTls(logger, u.name, tls, 'upstream tls reloaded')
        renewals.push({ upstream: u.name })
      } catch (err) {
        // A TlsError's message names the setting and the file, never what the file holds.
        const reason = err instanceof TlsError ? err.message : String(err)
        logger.error({ upstream: u.name, reason }, 'upstream tls reload failed; its previous settings stay in force')
        renewals.push({ upstream: u.name, error: reason })
      }
    }
    return renewals
  }
  return oneAtATime(renewAll)
}
