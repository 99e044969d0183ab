// An upstream's own TLS (upstreams[].tls): a CA trusted besides the system's, and a client
// certificate for registries that ask for one (mTLS). The files are read and checked at start and
// again on SIGHUP (tls-reload.ts), made into secure contexts once per reading, and each connection
// is given the one for where it goes.
//
// Which connection gets what:
// - The CA goes to every connection made for the upstream: its own origin, its token realm, and
//   the targets of its redirects. An internal registry's token service and blob store are
//   usually behind the same private CA; trusting it there too widens nothing, since every other
//   check (the realm allowlist, the redirect rule, host names) still applies.
// - The client certificate goes to the upstream's own origin (the scheme, host and port of its
//   `url`) only. Presenting it to a token realm on another host or to a redirect's target would
//   disclose the operator's identity to whoever runs that host, and a redirect is the upstream's
//   (or an attacker's) choice, not the operator's.

import { resolve } from 'node:path'
import { createSecureContext, rootCertificates, type ConnectionOptions, type SecureContext } from 'node:tls'
import type { UpstreamConfig } from '../config/schema.js'
import type { Logger } from '../observability/logger.js'
import { DAY_MS, EXPIRY_WARNING_DAYS } from '../tls/server.js'
import { TlsError } from '../tls/errors.js'
import { loadCaFile, loadKeyPair, loadParts, type KeyPair } from '../tls/files.js'

/** The `tls` section of an upstream. */
export type UpstreamTlsSettings = NonNullable<UpstreamConfig['tls']>

/** An upstream's TLS, ready for connections; see {@link tlsFor}. */
export interface UpstreamTls {
  /** For every connection made for the upstream: the system's CAs, plus its own when set. */
  readonly anyHost: ConnectionOptions
  /** For connections to the upstream's own origin: the above, plus its client certificate when set. */
  readonly origin: ConnectionOptions
  /** What was loaded, for the start-up log line. */
  readonly described: { readonly ca?: string; readonly cert?: string; readonly subject?: string; readonly notAfter?: string }
}

/**
 * Reads and checks the files of `settings` (relative paths from `base`, the configuration file's
 * folder): each readable; the CA file one or more CA certificates; the client certificate PEM,
 * within its validity, and the key its own. Throws TlsError with a message naming `setting`
 * (`upstreams[1].tls`) and the file.
 */
export async function loadUpstreamTls(settings: UpstreamTlsSettings, options: { setting: string; base: string; now?: Date }): Promise<UpstreamTls> {
  const { setting, base } = options
  const caFile = settings.ca === undefined ? undefined : resolve(base, settings.ca)
  const certFile = settings.cert === undefined ? undefined : resolve(base, settings.cert)
  const keyFile = settings.key === undefined ? undefined : resolve(base, settings.key)
  const [caText, identity] = await loadParts<[string | undefined, KeyPair | undefined]>([
    async () => (caFile === undefined ? undefined : loadCaFile(`${setting}.ca`, caFile, 'CA_INVALID')),
    async () => {
      if (certFile === undefined || keyFile === undefined) return undefined
      const files = { certSetting: `${setting}.cert`, keySetting: `${setting}.key`, certFile, keyFile }
      return loadKeyPair(files, { now: options.now ?? new Date(), renew: 'renew it with the CA that issued it' })
    },
  ])
  // In addition to the system's, not instead: node's `ca` replaces its default set.
  const ca = caText === undefined ? undefined : [...rootCertificates, caText]
  const context = (extra: { cert: string; key: string } | undefined): SecureContext => {
    try {
      return createSecureContext({ ...(ca !== undefined ? { ca } : {}), ...extra })
    } catch (err) {
      throw new TlsError('CERT_INVALID', `${setting}: node cannot use these files (${(err as Error).message})`)
    }
  }
  // One context each, made once: a `ca` option instead would have node parse every root
  // certificate again for each connection.
  const anyHost: ConnectionOptions = ca === undefined ? {} : { secureContext: context(undefined) }
  const origin: ConnectionOptions = identity === undefined ? anyHost : { secureContext: context({ cert: identity.cert, key: identity.key }) }
  return {
    anyHost,
    origin,
    described: {
      ...(caFile !== undefined ? { ca: caFile } : {}),
      ...(identity !== undefined
        ? { cert: identity.certFile, subject: identity.leaf.subject.replaceAll('\n', ', '), notAfter: new Date(identity.leaf.validTo).toISOString() }
        : {}),
    },
  }
}

/** How errors name the `tls` section of the upstream at `index` of the configuration. */
export function upstreamTlsSetting(index: number): string {
  return `upstreams[${index}].tls`
}

/** The TLS of every upstream that has a `tls` section, by name; throws TlsError as loadUpstreamTls. */
export async function loadUpstreamsTls(upstreams: readonly UpstreamConfig[], options: { base: string; now?: Date }): Promise<Map<string, UpstreamTls>> {
  const loaded = new Map<string, UpstreamTls>()
  for (const [i, u] of upstreams.entries()) {
    if (u.tls === undefined) continue
    loaded.set(u.name, await loadUpstreamTls(u.tls, { ...options, setting: upstreamTlsSetting(i) }))
  }
  return loaded
}

/** No options of its own: the system's CAs, no client certificate. Shared, not made per request. */
const SYSTEM_TRUST: ConnectionOptions = Object.freeze({})

/**
 * The TLS options of a connection to `url` made for the upstream at `origin`: its client
 * certificate only when `url` is that very origin (scheme, host and port), its CA for any.
 */
export function tlsFor(tls: UpstreamTls | undefined, origin: string, url: URL): ConnectionOptions {
  if (tls === undefined) return SYSTEM_TRUST
  return url.origin === origin ? tls.origin : tls.anyHost
}

/**
 * Logs an upstream's loaded TLS (`message`: loaded at start, or reloaded), and a warning when its
 * client certificate expires within EXPIRY_WARNING_DAYS, as the listener's does: an expired one
 * is refused at the next start or SIGHUP, and the upstream refuses it as soon as it lapses.
 */
export function logUpstreamTls(logger: Logger, upstream: string, tls: UpstreamTls, message: string, now: number = Date.now()): void {
  logger.info({ upstream, ...tls.described }, message)
  const { notAfter, cert } = tls.described
  if (notAfter === undefined) return
  const left = new Date(notAfter).getTime() - now
  if (left >= EXPIRY_WARNING_DAYS * DAY_MS) return
  logger.warn({ upstream, cert, notAfter, days: Math.max(0, Math.floor(left / DAY_MS)) }, 'upstream tls client certificate expires soon')
}

