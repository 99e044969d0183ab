// The HTTPS listener's certificates: read and checked at start (readable, key matching, within
// their validity), turned into node:https options, and read again on SIGHUP to renew in place.

import { X509Certificate, createPrivateKey } from 'node:crypto'
import type { KeyObject } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import type { Server as HttpsServer } from 'node:https'
import { resolve } from 'node:path'
import type { Logger } from '../observability/logger.js'
import { day, pemCertificates } from './pem.js'
import { TlsError } from './errors.js'

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
const DAY_MS = 86_400_000

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
  const certPem = await readSetting('tls.cert', certFile)
  const keyPem = await readSetting('tls.key', keyFile)
  const caPem =
    clientCaFile === undefined ? undefined : await readSetting('tls.clientCa', clientCaFile)

  const chain = parseCertificates(certPem, 'tls.cert', certFile)
  const leaf = chain[0]
  if (leaf === undefined) {
    throw new TlsError('CERT_INVALID', `tls.cert: ${certFile} holds no PEM certificate`)
  }
  const key = parseKey(keyPem, keyFile)
  if (!leaf.checkPrivateKey(key)) {
    throw new TlsError(
      'KEY_MISMATCH',
      `tls.key: ${keyFile} is not the key of the certificate in ${certFile}`
    )
  }
  const notBefore = new Date(leaf.validFrom)
  const notAfter = new Date(leaf.validTo)
  if (notAfter.getTime() <= now.getTime()) {
    throw new TlsError(
      'CERT_EXPIRED',
      `tls.cert: the certificate in ${certFile} expired on ${day(notAfter)}; ` +
        'renew it (customs certs renew)'
    )
  }
  if (notBefore.getTime() > now.getTime()) {
    throw new TlsError(
      'CERT_NOT_YET_VALID',
      `tls.cert: the certificate in ${certFile} is valid only from ${notBefore.toISOString()}; ` +
        "check this host's clock"
    )
  }

  if (settings.requireClientCert && caPem === undefined) {
    throw new TlsError(
      'CLIENT_CA_INVALID',
      'tls.requireClientCert needs tls.clientCa, the CA that signs client certificates'
    )
  }
  if (caPem !== undefined && clientCaFile !== undefined) {
    const cas = parseCertificates(caPem, 'tls.clientCa', clientCaFile)
    if (cas.length === 0 || !cas.every((c) => c.ca)) {
      throw new TlsError(
        'CLIENT_CA_INVALID',
        `tls.clientCa: ${clientCaFile} must hold one or more PEM CA certificates`
      )
    }
  }

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
  return async function reloadTls() {
    try {
      const material = await loadTlsMaterial(settings, { base: options.base })
      const { cert, key, ca } = material.serverOptions
      server.setSecureContext({ cert, key, ...(ca !== undefined ? { ca } : {}) })
      logTlsMaterial(options.logger, material, 'tls certificates reloaded')
    } catch (err) {
      const reason = err instanceof TlsError ? err.message : String(err)
      options.logger.error({ reason }, 'tls reload failed; still serving the previous certificates')
    }
  }
}

async function readSetting(setting: string, file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unreadable'
    throw new TlsError('FILE_UNREADABLE', `${setting}: cannot read ${file} (${code})`)
  }
}

/** Every certificate in the file; one that does not parse is an error, not something to skip. */
function parseCertificates(text: string, setting: string, file: string): X509Certificate[] {
  const code = setting === 'tls.cert' ? 'CERT_INVALID' : 'CLIENT_CA_INVALID'
  return pemCertificates(text).map((pem, i) => {
    try {
      return new X509Certificate(pem)
    } catch {
      throw new TlsError(
        code,
        `${setting}: certificate ${i + 1} in ${file} is not a valid certificate`
      )
    }
  })
}

function parseKey(text: string, file: string): KeyObject {
  try {
    return createPrivateKey(text)
  } catch {
    throw new TlsError('KEY_INVALID', `tls.key: ${file} is not an unencrypted PEM private key`)
  }
}
