// The HTTPS listener's certificates: read and checked at start (readable, key matching, within
// their validity), turned into node:https options, and read again on SIGHUP to renew in place.

import type { Server as HttpsServer } from 'node:https'
import { resolve } from 'node:path'
import type { Logger } from '../observability/logger.js'
import { oneAtATime } from '../concurrency.js'
import { TlsError } from './errors.js'
import { loadCaFile, loadKeyPair, loadParts, type KeyPair } from './files.js'

/** The `tls` section of the configuration. */
export interface TlsSettings {
  readonly cert: string
  readonly key: string
  readonly clientCa?: string | undefined
  readonly requireClientCert: boolean
}

/** What @hono/node-server passes to https.createServer. */
export interface TlsServerOptions {
  cert: string
  key: string
  ca?: string
  /** Ask for a client certificate: with a client CA, whether or not one is required. */
  requestCert: boolean
  /** Refuse the handshake of a client without a certificate from the client CA. */
  rejectUnauthorized: boolean
}

/** The certificates read and checked, ready to serve. */
export interface TlsMaterial {
  readonly serverOptions: TlsServerOptions
  readonly certFile: string
  readonly keyFile: string
  readonly clientCaFile?: string
  /** The server certificate's subject and names, for the start-up log line. */
  readonly subject: string
  readonly subjectAltName: string
  readonly notAfter: Date
  /** It expires within {@link EXPIRY_WARNING_DAYS}: worth a warning in the log. */
  readonly expiresSoon: boolean
}

export const EXPIRY_WARNING_DAYS = 30
export const DAY_MS = 86_400_000

/**
 * Reads the certificate, key and client CA of `settings` (relative paths from `base`, the
 * configuration file's folder) and checks them: each file readable, the certificate and key PEM,
 * the key the certificate's, the certificate within its validity. Throws TlsError with a message
 * naming the key and the file.
 */
export async function loadTlsMaterial(
  settings: TlsSettings,
  options: { base: string; now?: Date }
): Promise<TlsMaterial> {
  const now = options.now ?? new Date()
  const certFile = resolve(options.base, settings.cert)
  const keyFile = resolve(options.base, settings.key)
  const clientCaFile =
    settings.clientCa === undefined ? undefined : resolve(options.base, settings.clientCa)
  const [{ cert: certPem, key: keyPem, leaf }, caPem] = await loadParts<[KeyPair, string | undefined]>([
    () => loadKeyPair({ certSetting: 'tls.cert', keySetting: 'tls.key', certFile, keyFile }, { now, renew: 'renew it (customs certs renew)' }),
    async () => {
      if (clientCaFile !== undefined) return loadCaFile('tls.clientCa', clientCaFile, 'CLIENT_CA_INVALID')
      if (!settings.requireClientCert) return undefined
      throw new TlsError('CLIENT_CA_INVALID', 'tls.requireClientCert needs tls.clientCa, the CA that signs client certificates')
    },
  ])
  const notAfter = new Date(leaf.validTo)

  return {
    serverOptions: {
      cert: certPem,
      key: keyPem,
      ...(caPem !== undefined ? { ca: caPem } : {}),
      requestCert: caPem !== undefined,
      rejectUnauthorized: settings.requireClientCert,
    },
    certFile,
    keyFile,
    ...(clientCaFile !== undefined ? { clientCaFile } : {}),
    subject: leaf.subject.replaceAll('\n', ', '),
    subjectAltName: leaf.subjectAltName ?? '',
    notAfter,
    expiresSoon: notAfter.getTime() - now.getTime() < EXPIRY_WARNING_DAYS * DAY_MS,
  }
}

/** Logs what is served, and a warning when the certificate expires soon. */
export function logTlsMaterial(logger: Logger, material: TlsMaterial, message: string): void {
  const clientCert =
    material.clientCaFile === undefined
      ? 'off'
      : material.serverOptions.rejectUnauthorized
        ? 'required'
        : 'optional'
  const fields = {
    cert: material.certFile,
    subject: material.subject,
    subjectAltName: material.subjectAltName,
    notAfter: material.notAfter.toISOString(),
    clientCert,
  }
  logger.info(fields, message)
  if (material.expiresSoon) {
    const days = Math.max(0, Math.floor((material.notAfter.getTime() - Date.now()) / DAY_MS))
    logger.warn(
      { cert: material.certFile, notAfter: fields.notAfter, days },
      'tls certificate expires soon'
    )
  }
}

/**
 * A function that reads the certificates again and swaps them into the running server, for
 * SIGHUP. Connections already open keep their session; a failure is logged and the server keeps
 * what it had, so a half-copied renewal never takes the listener down.
 */
export function tlsReloader(
  server: HttpsServer,
  settings: TlsSettings,
  options: { base: string; logger: Logger }
): () => Promise<void> {
  // In the order asked: two SIGHUPs in a row must not let the first, finishing last, serve older files.
  return oneAtATime(async function reloadTls() {
    try {
      const material = await loadTlsMaterial(settings, { base: options.base })
      const { cert, key, ca } = material.serverOptions
      server.setSecureContext({ cert, key, ...(ca !== undefined ? { ca } : {}) })
      logTlsMaterial(options.logger, material, 'tls certificates reloaded')
    } catch (err) {
      const reason = err instanceof TlsError ? err.message : String(err)
      options.logger.error({ reason }, 'tls reload failed; still serving the previous certificates')
    }
  })
}
