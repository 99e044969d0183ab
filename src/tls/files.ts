// Reading and checking the PEM files a setting names, for the HTTPS listener (server.ts) and for
// the TLS an upstream is reached with (upstream/tls-settings.ts): every refusal is a TlsError whose
// message names the setting and the file, fit to print at start.

import { X509Certificate, createPrivateKey } from 'node:crypto'
import type { KeyObject } from 'node:crypto'
import { readFailure, readTextBounded } from '../files.js'
import { day, pemCertificates } from './pem.js'
import { TlsError, type TlsErrorCode } from './errors.js'

/**
 * The most a PEM or trust file may hold: the system's whole CA bundle is about 0.2 MiB, so a file
 * past this is a wrong name, not a large bundle.
 */
export const MAX_SETTING_FILE_BYTES = 4 * 1024 * 1024

/**
 * The file's text, at most MAX_SETTING_FILE_BYTES; otherwise the error `fail` makes of a message
 * naming `setting`, the file and the reason (TlsError FILE_UNREADABLE by default; trust files
 * have their own error).
 */
export async function readSetting(
  setting: string,
  file: string,
  fail: (message: string, cause: unknown) => Error = (message) => new TlsError('FILE_UNREADABLE', message)
): Promise<string> {
  try {
    return await readTextBounded(file, MAX_SETTING_FILE_BYTES)
  } catch (err) {
    throw fail(`${setting}: cannot read ${file} (${readFailure(err)})`, err)
  }
}

/** Every certificate in the file; one that does not parse is an error (`code`), not something to skip. */
export function parseCertificates(text: string, setting: string, file: string, code: TlsErrorCode): X509Certificate[] {
  return pemCertificates(text).map((pem, i) => {
    try {
      return new X509Certificate(pem)
    } catch {
      throw new TlsError(code, `${setting}: certificate ${i + 1} in ${file} is not a valid certificate`)
    }
  })
}

/** The first certificate of a certificate file (a chain may follow); CERT_INVALID when it holds none. */
export function leafCertificate(text: string, setting: string, file: string): X509Certificate {
  const leaf = parseCertificates(text, setting, file, 'CERT_INVALID')[0]
  if (leaf === undefined) throw new TlsError('CERT_INVALID', `${setting}: ${file} holds no PEM certificate`)
  return leaf
}

/** An unencrypted PEM private key; KEY_INVALID otherwise. */
export function parseKey(text: string, setting: string, file: string): KeyObject {
  try {
    return createPrivateKey(text)
  } catch {
    throw new TlsError('KEY_INVALID', `${setting}: ${file} is not an unencrypted PEM private key`)
  }
}

/** KEY_MISMATCH unless `key` is the private key of `leaf`. */
export function checkKeyPair(leaf: X509Certificate, key: KeyObject, names: { keySetting: string; keyFile: string; certFile: string }): void {
  if (!leaf.checkPrivateKey(key)) {
    throw new TlsError('KEY_MISMATCH', `${names.keySetting}: ${names.keyFile} is not the key of the certificate in ${names.certFile}`)
  }
}

/**
 * CERT_EXPIRED or CERT_NOT_YET_VALID unless `now` is within the certificate's validity; `renew`
 * says what to do about an expired one.
 */
export function checkValidity(leaf: X509Certificate, setting: string, file: string, options: { now: Date; renew: string }): void {
  const notBefore = new Date(leaf.validFrom)
  const notAfter = new Date(leaf.validTo)
  if (notAfter.getTime() <= options.now.getTime()) {
    throw new TlsError('CERT_EXPIRED', `${setting}: the certificate in ${file} expired on ${day(notAfter)}; ${options.renew}`)
  }
  if (notBefore.getTime() > options.now.getTime()) {
    throw new TlsError(
      'CERT_NOT_YET_VALID',
      `${setting}: the certificate in ${file} is valid only from ${notBefore.toISOString()}; check this host's clock`
    )
  }
}

/** Names a certificate and its key go by: the settings (`tls.cert`) and the resolved files. */
export interface KeyPairFiles {
  readonly certSetting: string
  readonly keySetting: string
  readonly certFile: string
  readonly keyFile: string
}

/** A certificate and its key as loadKeyPair checked them: the PEM texts, the parsed leaf, its file. */
export interface KeyPair {
  readonly cert: string
  readonly key: string
  readonly leaf: X509Certificate
  readonly certFile: string
}

/**
 * Reads and checks a certificate and its key: both readable, the certificate PEM and within its
 * validity (`renew` says what to do about an expired one), the key unencrypted PEM and the
 * certificate's own. Throws TlsError naming the setting and the file.
 */
export async function loadKeyPair(files: KeyPairFiles, options: { now: Date; renew: string }): Promise<KeyPair> {
  const { certSetting, keySetting, certFile, keyFile } = files
  const cert = await readSetting(certSetting, certFile)
  const key = await readSetting(keySetting, keyFile)
  const leaf = leafCertificate(cert, certSetting, certFile)
  checkKeyPair(leaf, parseKey(key, keySetting, keyFile), { keySetting, keyFile, certFile })
  checkValidity(leaf, certSetting, certFile, options)
  return { cert, key, leaf, certFile }
}

/** Reads a CA file and checks it holds CA certificates only (`code` otherwise); its text. */
export async function loadCaFile(setting: string, file: string, code: TlsErrorCode): Promise<string> {
  const text = await readSetting(setting, file)
  checkCaFile(text, setting, file, code)
  return text
}

/**
 * Loads the independent parts of one TLS setting (a certificate and a CA file) and, when any is
 * refused, throws one TlsError holding every refusal: a check that stopped at the first would
 * have an operator fix, run, and find the next.
 */
export async function loadParts<T extends readonly unknown[]>(parts: { readonly [K in keyof T]: () => Promise<T[K]> }): Promise<T> {
  const settled = await Promise.allSettled((parts as ReadonlyArray<() => Promise<unknown>>).map((load) => load()))
  const refusals: TlsError[] = []
  for (const outcome of settled) {
    if (outcome.status === 'fulfilled') continue
    if (!(outcome.reason instanceof TlsError)) throw outcome.reason
    refusals.push(outcome.reason)
  }
  const [first] = refusals
  if (first === undefined) return settled.map((o) => (o as PromiseFulfilledResult<unknown>).value) as unknown as T
  if (refusals.length === 1) throw first
  const problems = refusals.flatMap((r) => r.problems)
  throw new TlsError(first.code, problems.join('\n'), { cause: refusals, problems })
}

/** A file of one or more CA certificates, every one a CA; `code` otherwise. */
export function checkCaFile(text: string, setting: string, file: string, code: TlsErrorCode): X509Certificate[] {
  const cas = parseCertificates(text, setting, file, code)
  if (cas.length === 0 || !cas.every((c) => c.ca)) {
    throw new TlsError(code, `${setting}: ${file} must hold one or more PEM CA certificates`)
  }
  return cas
}
