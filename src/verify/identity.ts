// The identity in a Fulcio certificate: SAN (URI or email), OIDC issuer (.1.8, else .1.1), and
// the Sigstore extensions (workflow, repository, ref, trigger), read by us rather than through
// sigstore-js's policy, whose SAN match is an unanchored regex and whose OID match wants DER.

import { X509Certificate as NodeX509 } from 'node:crypto'
import { X509Certificate } from '@sigstore/core'

/** Sigstore's certificate extensions (PEN 57264) by the names policies use. */
export const FULCIO_EXTENSIONS = Object.freeze({
  issuer: '1.3.6.1.4.1.57264.1.8',
  buildSignerUri: '1.3.6.1.4.1.57264.1.9',
  buildSignerDigest: '1.3.6.1.4.1.57264.1.10',
  runnerEnvironment: '1.3.6.1.4.1.57264.1.11',
  sourceRepositoryUri: '1.3.6.1.4.1.57264.1.12',
  sourceRepositoryDigest: '1.3.6.1.4.1.57264.1.13',
  sourceRepositoryRef: '1.3.6.1.4.1.57264.1.14',
  sourceRepositoryOwnerUri: '1.3.6.1.4.1.57264.1.16',
  buildConfigUri: '1.3.6.1.4.1.57264.1.18',
  buildTrigger: '1.3.6.1.4.1.57264.1.20',
  runInvocationUri: '1.3.6.1.4.1.57264.1.21',
} as const)

export type ExtensionName = keyof typeof FULCIO_EXTENSIONS

/** The deprecated raw-string issuer, read when .1.8 is absent. */
const LEGACY_ISSUER_OID = '1.3.6.1.4.1.57264.1.1'
const CODE_SIGNING_EKU = '1.3.6.1.5.5.7.3.3'

export interface CertificateIdentity {
  /** The SAN: a URI or an email. */
  readonly subject: string
  readonly issuer?: string
  readonly extensions: Partial<Record<ExtensionName, string>>
}

/** Reads the identity of a leaf certificate (DER). */
export function identityOf(der: Buffer): CertificateIdentity {
  const cert = X509Certificate.parse(Buffer.from(der))
  const san = cert.extSubjectAltName
  const subject = san?.uri ?? san?.rfc822Name ?? ''
  const extensions: Partial<Record<ExtensionName, string>> = {}
  for (const [name, oid] of Object.entries(FULCIO_EXTENSIONS) as Array<[ExtensionName, string]>) {
    const value = utf8Extension(cert, oid)
    if (value !== undefined) extensions[name] = value
  }
  const issuer = extensions.issuer ?? rawExtension(cert, LEGACY_ISSUER_OID)
  return { subject, ...(issuer !== undefined ? { issuer } : {}), extensions }
}

/** Whether the leaf may sign code: EKU codeSigning present (sigstore-js does not check it). */
export function hasCodeSigningEku(der: Buffer): boolean {
  const usages = new NodeX509(der).keyUsage
  return Array.isArray(usages) && usages.includes(CODE_SIGNING_EKU)
}

/** What a policy asks of a keyless signer. */
export interface IdentityRequirement {
  readonly issuer: string
  /** Exact SAN. */
  readonly subject?: string
  /** A regex the whole SAN must match: it is anchored here, whatever the author wrote. */
  readonly subjectRegExp?: string
  /** Exact values of Sigstore extensions. */
  readonly extensions?: Partial<Record<ExtensionName, string>>
}

/** Why the identity does not meet the requirement, or undefined when it does. */
export function identityMismatch(identity: CertificateIdentity, want: IdentityRequirement): string | undefined {
  if (identity.issuer !== want.issuer) {
    return `issuer ${JSON.stringify(identity.issuer ?? null)} is not ${JSON.stringify(want.issuer)}`
  }
  if (want.subject !== undefined && identity.subject !== want.subject) {
    return `subject ${JSON.stringify(identity.subject)} is not ${JSON.stringify(want.subject)}`
  }
  if (want.subjectRegExp !== undefined && !anchored(want.subjectRegExp).test(identity.subject)) {
    return `subject ${JSON.stringify(identity.subject)} does not match ${want.subjectRegExp}`
  }
  for (const [name, value] of Object.entries(want.extensions ?? {}) as Array<[ExtensionName, string]>) {
    if (identity.extensions[name] !== value) {
      return `${name} ${JSON.stringify(identity.extensions[name] ?? null)} is not ${JSON.stringify(value)}`
    }
  }
  return undefined
}

const compiled = new Map<string, RegExp>()

/**
 * `^(?:...)$`: the pattern must match the whole value, never a part of it. Compiled once per
 * pattern (policies are few; the map is bounded anyway).
 */
export function anchored(pattern: string): RegExp {
  let re = compiled.get(pattern)
  if (re === undefined) {
    re = new RegExp(`^(?:${pattern})$`, 'u')
    if (compiled.size >= 10_000) compiled.clear()
    compiled.set(pattern, re)
  }
  return re
}

function rawExtension(cert: X509Certificate, oid: string): string | undefined {
  const ext = cert.extension(oid)
  return ext === undefined ? undefined : ext.value.toString('utf8')
}

/** .1.8 and later hold a DER UTF8String: tag 0x0c, a length, the bytes. */
function utf8Extension(cert: X509Certificate, oid: string): string | undefined {
  const ext = cert.extension(oid)
  if (ext === undefined) return undefined
  const v = ext.value
  if (v[0] !== 0x0c || v.length < 2) return v.toString('utf8')
  const first = v[1] as number
  // Short form below 0x80; long form 0x81/0x82 gives the length in the next one or two bytes.
  const [length, start] = first < 0x80 ? [first, 2] : first === 0x81 ? [v[2] ?? 0, 3] : first === 0x82 ? [((v[2] ?? 0) << 8) | (v[3] ?? 0), 4] : [-1, 0]
  if (length < 0 || start + length > v.length) return undefined
  return v.subarray(start, start + length).toString('utf8')
}
