// Issuing the certificates Customs serves HTTPS with: a private CA, server certificates and mTLS
// client certificates (node:crypto makes the RSA keys, node-forge builds and signs), and writing
// them to disk so that a private key is never readable by others, not even for a moment.

import { X509Certificate, createPrivateKey, generateKeyPair, randomBytes } from 'node:crypto'
import { mkdir, open, rename, rm, stat } from 'node:fs/promises'
import { isIPv4, isIPv6 } from 'node:net'
import { join } from 'node:path'
import { promisify } from 'node:util'
import forge from 'node-forge'
import { TlsError } from './errors.js'
import { day, pemCertificates } from './pem.js'

export { day, pemCertificates }

/** RSA, because node-forge signs with RSA only; 3072 bits is NIST's 128-bit level, past 2030. */
export const KEY_BITS = 3072
/** Ten years: the CA is copied to every client, so replacing it is the expensive part. */
export const DEFAULT_CA_DAYS = 3650
/** 397 days: the longest validity Apple and the browsers accept for a server certificate. */
export const DEFAULT_SERVER_DAYS = 397
export const DEFAULT_CLIENT_DAYS = 397
/** Apple platforms refuse a server certificate valid for over 825 days, private CAs included. */
export const MAX_SERVER_DAYS = 825
export const MAX_CA_DAYS = 7300

/** Certificates start this far in the past, so that a node whose clock lags still accepts them. */
const BACKDATE_MS = 60 * 60 * 1000
const DAY_MS = 86_400_000

const generateKeyPairAsync = promisify(generateKeyPair)

/** A certificate and its private key, both PEM; the key is PKCS#8. */
export interface CertAndKey {
  readonly certPem: string
  readonly keyPem: string
}

/** A certificate issued by the CA. */
export interface IssuedCert extends CertAndKey {
  /** The certificate followed by the CA's: what a server presents. */
  readonly chainPem: string
  readonly notAfter: Date
  /** The validity asked for was cut short to end when the CA does. */
  readonly cappedByCa: boolean
}

/** The names a server certificate is valid for, in its subjectAltName. */
export interface Hosts {
  /** Lower-case DNS names. */
  readonly dns: readonly string[]
  /** IPv4 and IPv6 addresses, IPv6 in its compressed form. */
  readonly ips: readonly string[]
}

export interface IssueOptions {
  /** Validity in whole days from now. */
  days?: number
  /** The issuing time; tests pass a past one. Default: now. */
  now?: Date
}

/** A CA read back and checked, ready to sign. */
export interface LoadedCa {
  readonly cert: forge.pki.Certificate
  readonly key: forge.pki.rsa.PrivateKey
  readonly certPem: string
  readonly notAfter: Date
}

// ---------------------------------------------------------------------------------------------
// Host names

/**
 * Parses `customs.internal,10.0.0.5`: comma-separated DNS names and IP addresses, nothing added.
 * Throws TlsError HOSTS_INVALID naming the bad entry: empty, whitespace, a URL, a port, a wildcard.
 */
export function parseHosts(text: string): Hosts {
  const example = 'e.g. customs.internal,10.0.0.5'
  if (text.trim() === '') {
    throw hostsError(`no hosts given: list the names and addresses clients use, ${example}`)
  }
  if (/\s/.test(text)) {
    throw hostsError(
      `${JSON.stringify(text)} contains whitespace: separate hosts with commas only, ${example}`
    )
  }
  const dns: string[] = []
  const ips: string[] = []
  for (const entry of text.split(',')) {
    if (entry === '') throw hostsError(`${JSON.stringify(text)} has an empty entry between commas`)
    const ip = canonicalIp(entry)
    if (ip !== undefined) {
      if (!ips.includes(ip)) ips.push(ip)
      continue
    }
    const name = checkDnsName(entry)
    if (!dns.includes(name)) dns.push(name)
  }
  return { dns, ips }
}

/** The hosts as `parseHosts` takes them: DNS names first, then addresses. */
export function formatHosts(hosts: Hosts): string {
  return [...hosts.dns, ...hosts.ips].join(',')
}

function hostsError(message: string): TlsError {
  return new TlsError('HOSTS_INVALID', message)
}

/** The address in canonical form, or undefined for anything that is not an IP address. */
function canonicalIp(entry: string): string | undefined {
  const bare = entry.startsWith('[') && entry.endsWith(']') ? entry.slice(1, -1) : entry
  if (isIPv4(bare)) return bare
  // The URL parser compresses and lower-cases IPv6, so ::1 and 0:0:0:0:0:0:0:1 are one entry.
  if (isIPv6(bare)) return new URL(`http://[${bare}]/`).hostname.slice(1, -1)
  return undefined
}

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/

function checkDnsName(entry: string): string {
  const quoted = JSON.stringify(entry)
  if (entry.includes('://')) {
    const host = hostOfUrl(entry)
    const hint = host === undefined ? '' : `: write ${host}`
    throw hostsError(`${quoted} is a URL; give the host name alone${hint}`)
  }
  if (entry.includes('*')) {
    throw hostsError(`${quoted}: wildcards are not supported; list each name clients use`)
  }
  const port = /^(.+):(\d+)$/.exec(entry)
  if (port !== null) {
    throw hostsError(`${quoted} has a port; certificates name hosts only: write ${port[1]}`)
  }
  const name = entry.toLowerCase()
  const labels = name.split('.')
  const valid = name.length <= 253 && labels.every((l) => DNS_LABEL.test(l))
  // An all-digit last label is a mistyped address (10.0.0), never a real top-level domain.
  if (!valid || /^\d+$/.test(labels.at(-1) ?? '')) {
    throw hostsError(`${quoted} is neither a DNS name nor an IP address`)
  }
  return name
}

function hostOfUrl(entry: string): string | undefined {
  try {
    const { hostname } = new URL(entry)
    return hostname === '' ? undefined : hostname.replace(/^\[(.*)\]$/, '$1')
  } catch {
    return undefined
  }
}

// ---------------------------------------------------------------------------------------------
// Issuing

/**
 * A new self-signed CA: basicConstraints CA (critical, pathlen 0, so it can sign only end-entity
 * certificates), keyUsage keyCertSign and cRLSign, valid `days` (default 10 years).
 */
export async function createCa(options: IssueOptions = {}): Promise<CertAndKey> {
  const now = options.now ?? new Date()
  const days = checkDays(options.days ?? DEFAULT_CA_DAYS, MAX_CA_DAYS)
  const { keyPem, publicKey } = await newKey()
  const cert = forge.pki.createCertificate()
  cert.publicKey = publicKey
  cert.serialNumber = randomSerial()
  cert.validity.notBefore = wholeSeconds(now.getTime() - BACKDATE_MS)
  cert.validity.notAfter = wholeSeconds(now.getTime() + days * DAY_MS)
  // A name of its own, so that CAs from two `certs init` runs are never confused in a trust store.
  const subject = [
    { name: 'commonName', value: `Customs CA ${randomBytes(4).toString('hex')}` },
    { name: 'organizationName', value: 'Customs' },
  ]
  cert.setSubject(subject)
  cert.setIssuer(subject)
  cert.setExtensions([
    { name: 'basicConstraints', critical: true, cA: true, pathLenConstraint: 0 },
    { name: 'keyUsage', critical: true, keyCertSign: true, cRLSign: true },
    { name: 'subjectKeyIdentifier' },
    { name: 'authorityKeyIdentifier', keyIdentifier: true },
  ])
  cert.sign(forge.pki.privateKeyFromPem(keyPem), forge.md.sha256.create())
  return { certPem: forge.pki.certificateToPem(cert), keyPem }
}

/**
 * Reads a CA back and checks that it can sign: both PEMs parse, the key is the certificate's, it
 * is a CA, and it has not expired. Throws TlsError CA_INVALID or CA_EXPIRED; `labels` name the
 * files in the messages.
 */
export function loadCa(
  ca: CertAndKey,
  options: { now?: Date; certLabel?: string; keyLabel?: string } = {}
): LoadedCa {
  const certLabel = options.certLabel ?? 'the CA certificate'
  const keyLabel = options.keyLabel ?? 'the CA key'
  const [first] = pemCertificates(ca.certPem)
  let cert: forge.pki.Certificate
  let x509: X509Certificate
  try {
    if (first === undefined) throw new Error('no PEM certificate')
    cert = forge.pki.certificateFromPem(first)
    x509 = new X509Certificate(first)
  } catch (err) {
    throw new TlsError(
      'CA_INVALID',
      `${certLabel} is not a PEM certificate node-forge can sign with (RSA)`,
      { cause: err }
    )
  }
  let key: forge.pki.rsa.PrivateKey
  try {
    key = forge.pki.privateKeyFromPem(ca.keyPem)
  } catch (err) {
    throw new TlsError('CA_INVALID', `${keyLabel} is not an unencrypted PEM RSA private key`, {
      cause: err,
    })
  }
  if (!x509.ca) throw new TlsError('CA_INVALID', `${certLabel} is not a CA certificate`)
  if (!matchesKey(x509, ca.keyPem)) {
    throw new TlsError('CA_INVALID', `${keyLabel} does not belong to ${certLabel}`)
  }
  const notAfter = cert.validity.notAfter
  if (notAfter.getTime() <= (options.now ?? new Date()).getTime()) {
    throw new TlsError('CA_EXPIRED', `${certLabel} expired on ${day(notAfter)}`)
  }
  return { cert, key, certPem: forge.pki.certificateToPem(cert), notAfter }
}

/**
 * A server certificate with a new key: subjectAltName exactly `hosts`, extendedKeyUsage
 * serverAuth, keyUsage digitalSignature and keyEncipherment, valid `days` (default 397) or until
 * the CA expires, whichever is first.
 */
export async function issueServerCert(
  ca: LoadedCa,
  hosts: Hosts,
  options: IssueOptions = {}
): Promise<IssuedCert> {
  if (hosts.dns.length + hosts.ips.length === 0) {
    throw hostsError('a server certificate needs at least one host name or IP address')
  }
  const altNames = [
    ...hosts.dns.map((value) => ({ type: 2, value })),
    ...hosts.ips.map((ip) => ({ type: 7, ip })),
  ]
  const commonName = hosts.dns[0] ?? hosts.ips[0] ?? ''
  return issue(ca, commonName, options, DEFAULT_SERVER_DAYS, MAX_SERVER_DAYS, [
    { name: 'keyUsage', critical: true, digitalSignature: true, keyEncipherment: true },
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames },
  ])
}

const CLIENT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/

/**
 * An mTLS client certificate with a new key: subject CN `name` (the identity Customs logs),
 * extendedKeyUsage clientAuth, keyUsage digitalSignature. Throws TlsError NAME_INVALID.
 */
export async function issueClientCert(
  ca: LoadedCa,
  name: string,
  options: IssueOptions = {}
): Promise<IssuedCert> {
  checkClientName(name)
  return issue(ca, name, options, DEFAULT_CLIENT_DAYS, MAX_SERVER_DAYS, [
    { name: 'keyUsage', critical: true, digitalSignature: true },
    { name: 'extKeyUsage', clientAuth: true },
  ])
}

/** Throws TlsError NAME_INVALID unless `name` can be a client's CN and a file name. */
export function checkClientName(name: string): void {
  if (!CLIENT_NAME.test(name)) {
    throw new TlsError(
      'NAME_INVALID',
      `client name ${JSON.stringify(name)} must be 1-64 letters, digits, '.', '_' or '-', ` +
        'starting with a letter or digit (it also names the files)'
    )
  }
}

/** The hosts a certificate is valid for, from its subjectAltName. Throws TlsError CERT_INVALID. */
export function certificateHosts(certPem: string): Hosts {
  let cert: forge.pki.Certificate
  try {
    cert = forge.pki.certificateFromPem(certPem)
  } catch (err) {
    throw new TlsError('CERT_INVALID', 'not a certificate node-forge can read (RSA)', {
      cause: err,
    })
  }
  const extension: unknown = cert.getExtension('subjectAltName')
  const dns: string[] = []
  const ips: string[] = []
  for (const altName of altNamesOf(extension)) {
    if (altName.type === 2 && typeof altName.value === 'string') {
      dns.push(altName.value.toLowerCase())
    }
    if (altName.type === 7 && typeof altName.ip === 'string') {
      const ip = canonicalIp(altName.ip)
      if (ip !== undefined) ips.push(ip)
    }
  }
  return { dns, ips }
}

interface AltName {
  type?: unknown
  value?: unknown
  ip?: unknown
}

function altNamesOf(extension: unknown): AltName[] {
  if (typeof extension !== 'object' || extension === null || !('altNames' in extension)) return []
  const { altNames } = extension
  return Array.isArray(altNames)
    ? altNames.filter((a): a is AltName => typeof a === 'object' && a !== null)
    : []
}

/** Throws TlsError DAYS_INVALID unless days is a whole number from 1 to max. */
export function checkDays(days: number, max: number): number {
  if (!Number.isInteger(days) || days < 1 || days > max) {
    throw new TlsError(
      'DAYS_INVALID',
      `the validity must be a whole number of days from 1 to ${max}, got ${days}`
    )
  }
  return days
}

async function issue(
  ca: LoadedCa,
  commonName: string,
  options: IssueOptions,
  defaultDays: number,
  maxDays: number,
  extensions: object[]
): Promise<IssuedCert> {
  const now = options.now ?? new Date()
  const days = checkDays(options.days ?? defaultDays, maxDays)
  const { keyPem, publicKey } = await newKey()
  const cert = forge.pki.createCertificate()
  cert.publicKey = publicKey
  cert.serialNumber = randomSerial()
  cert.validity.notBefore = wholeSeconds(now.getTime() - BACKDATE_MS)
  const wanted = wholeSeconds(now.getTime() + days * DAY_MS)
  // Past the CA's end no client accepts the chain, so a longer validity would only mislead.
  const cappedByCa = wanted.getTime() > ca.notAfter.getTime()
  cert.validity.notAfter = cappedByCa ? ca.notAfter : wanted
  cert.setSubject([{ name: 'commonName', value: commonName }])
  cert.setIssuer(ca.cert.subject.attributes)
  cert.setExtensions([
    { name: 'basicConstraints', critical: true, cA: false },
    ...extensions,
    { name: 'subjectKeyIdentifier' },
    {
      name: 'authorityKeyIdentifier',
      keyIdentifier: ca.cert.generateSubjectKeyIdentifier().getBytes(),
    },
  ])
  cert.sign(ca.key, forge.md.sha256.create())
  const certPem = forge.pki.certificateToPem(cert)
  return {
    certPem,
    keyPem,
    chainPem: certPem + ca.certPem,
    notAfter: cert.validity.notAfter,
    cappedByCa,
  }
}

async function newKey(): Promise<{ keyPem: string; publicKey: forge.pki.PublicKey }> {
  // node:crypto generates in native code on the thread pool; forge's generator is pure JS.
  const pair = await generateKeyPairAsync('rsa', {
    modulusLength: KEY_BITS,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  })
  return { keyPem: pair.privateKey, publicKey: forge.pki.publicKeyFromPem(pair.publicKey) }
}

/**
 * 128 random bits as a positive DER INTEGER: a first byte with its high bit set gets a 0x00
 * before it (or the number would read as negative), and a 0x00 first byte is drawn again (it
 * would not be minimal DER).
 */
export function randomSerial(): string {
  for (;;) {
    const bytes = randomBytes(16)
    const first = bytes[0] ?? 0
    if (first === 0) continue
    return (first >= 0x80 ? '00' : '') + bytes.toString('hex')
  }
}

function wholeSeconds(ms: number): Date {
  return new Date(Math.floor(ms / 1000) * 1000)
}

function matchesKey(cert: X509Certificate, keyPem: string): boolean {
  try {
    return cert.checkPrivateKey(createPrivateKey(keyPem))
  } catch {
    return false
  }
}

// ---------------------------------------------------------------------------------------------
// Writing

/** One file to write; a secret is a private key and gets mode 0600, anything else 0644. */
export interface OutputFile {
  readonly name: string
  readonly contents: string
  readonly secret: boolean
}

/**
 * Writes the files into `dir` (created if missing) so that each appears whole or not at all:
 * each is written to a temp file created with mode 0600, given its final mode, synced, and
 * renamed over its name. Without `replace`, an existing file is refused with TlsError
 * FILE_EXISTS before anything is written. Returns the paths written.
 */
export async function writeFiles(
  dir: string,
  files: readonly OutputFile[],
  options: { replace: boolean }
): Promise<string[]> {
  await mkdir(dir, { recursive: true })
  if (!options.replace) {
    for (const file of files) {
      const path = join(dir, file.name)
      if (await exists(path)) throw new TlsError('FILE_EXISTS', `${path} already exists`)
    }
  }
  const staged: { temp: string; path: string }[] = []
  try {
    for (const file of files) {
      const temp = join(dir, `.${file.name}.${randomBytes(6).toString('hex')}.tmp`)
      // Created 0600 before the first byte is written: the key has no world-readable moment.
      const handle = await open(temp, 'wx', 0o600)
      staged.push({ temp, path: join(dir, file.name) })
      try {
        await handle.writeFile(file.contents)
        await handle.chmod(file.secret ? 0o600 : 0o644)
        await handle.sync()
      } finally {
        await handle.close()
      }
    }
    for (const { temp, path } of staged) await rename(temp, path)
  } finally {
    // After a failure, no half-written temp file is left behind.
    for (const { temp } of staged) await rm(temp, { force: true })
  }
  await syncDir(dir)
  return staged.map((s) => s.path)
}

/** Whether something is at path. */
export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path)
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw err
  }
}

async function syncDir(dir: string): Promise<void> {
  // The renames survive a crash only once the directory is synced; not every filesystem allows it.
  try {
    const handle = await open(dir, 'r')
    try {
      await handle.sync()
    } finally {
      await handle.close()
    }
  } catch {
    // Best effort.
  }
}
