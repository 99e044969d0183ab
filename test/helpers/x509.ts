// X.509 and DER building blocks for the test PKI: ECDSA-signed certificates the hybrid way
// (forge encodes the TBS, node:crypto signs it; PROTOCOL §7), key identifiers, DER helpers.

import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto'
import { ASN1Obj } from '@sigstore/core'
import forge from 'node-forge'

const { asn1 } = forge

/** ecdsa-with-SHA256. */
export const OID_ECDSA_WITH_SHA256 = '1.2.840.10045.4.3.2'

/** A certificate with its key. */
export interface IssuedCertificate {
  certPem: string
  certDer: Buffer
  privateKey: KeyObject
  publicKey: KeyObject
}

/** A CA certificate built here: also keeps its subject, to name it as an issuer. */
export interface CaCertificate extends IssuedCertificate {
  subject: forge.pki.CertificateField[]
}

/** forge's fromDer takes an options object its typings do not declare. */
const fromDer = forge.asn1.fromDer as unknown as (
  bytes: string,
  options: { strict?: boolean; decodeBitStrings?: boolean }
) => forge.asn1.Asn1

/** A forge.asn1 node parsed from DER, BIT STRING contents left undecoded (kept byte-exact). */
export function asn1FromDer(der: Buffer): forge.asn1.Asn1 {
  return fromDer(der.toString('binary'), { decodeBitStrings: false })
}

/** The DER bytes of a forge.asn1 node. */
export function asn1ToDer(node: forge.asn1.Asn1): Buffer {
  return Buffer.from(asn1.toDer(node).getBytes(), 'binary')
}

/** Shorthands for building forge.asn1 nodes from Buffers. */
export const der = {
  seq: (items: forge.asn1.Asn1[]): forge.asn1.Asn1 =>
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, items),
  set: (items: forge.asn1.Asn1[]): forge.asn1.Asn1 =>
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SET, true, items),
  oid: (oid: string): forge.asn1.Asn1 =>
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OID, false, asn1.oidToDer(oid).getBytes()),
  int: (value: number): forge.asn1.Asn1 =>
    asn1.create(
      asn1.Class.UNIVERSAL,
      asn1.Type.INTEGER,
      false,
      asn1.integerToDer(value).getBytes()
    ),
  /** An INTEGER from its content bytes (a serial number). */
  intBytes: (bytes: Buffer): forge.asn1.Asn1 =>
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.INTEGER, false, bytes.toString('binary')),
  octets: (bytes: Buffer): forge.asn1.Asn1 =>
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OCTETSTRING, false, bytes.toString('binary')),
  bool: (value: boolean): forge.asn1.Asn1 =>
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.BOOLEAN, false, value ? '\xff' : '\x00'),
  generalizedTime: (date: Date): forge.asn1.Asn1 =>
    asn1.create(
      asn1.Class.UNIVERSAL,
      asn1.Type.GENERALIZEDTIME,
      false,
      asn1.dateToGeneralizedTime(date)
    ),
  /** `[n]` context-specific, constructed (EXPLICIT, or IMPLICIT of a constructed type). */
  tagged: (n: number, items: forge.asn1.Asn1[]): forge.asn1.Asn1 =>
    asn1.create(asn1.Class.CONTEXT_SPECIFIC, n, true, items),
  /** AlgorithmIdentifier with no parameters (ECDSA, and SHA-2 as cosign and Go encode it). */
  algorithm: (oid: string): forge.asn1.Asn1 =>
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [der.oid(oid)]),
}

/** DER UTF8String of `value`: what Fulcio OIDs .1.8+ hold, and what `oids` policies compare. */
export function derUtf8String(value: string): Buffer {
  const utf8 = forge.util.encodeUtf8(value)
  return asn1ToDer(asn1.create(asn1.Class.UNIVERSAL, asn1.Type.UTF8, false, utf8))
}

/** PEM of a DER certificate. */
export function certificatePem(certDer: Buffer): string {
  const lines = certDer.toString('base64').match(/.{1,64}/g) ?? []
  return `-----BEGIN CERTIFICATE-----\n${lines.join('\n')}\n-----END CERTIFICATE-----\n`
}

/** SPKI DER of a public key. */
export function spkiDer(key: KeyObject): Buffer {
  return key.export({ type: 'spki', format: 'der' })
}

/** Parses DER with @sigstore/core's ASN.1 reader. */
export function parseAsn1(bytes: Buffer): ASN1Obj {
  return ASN1Obj.parseBuffer(Buffer.from(bytes))
}

/** RFC 5280 method-1 key identifier: SHA-1 of the subjectPublicKey BIT STRING contents. */
export function keyIdentifier(key: KeyObject): Buffer {
  const bits = parseAsn1(spkiDer(key)).subs[1]
  if (bits === undefined) throw new Error('malformed SPKI')
  return createHash('sha1').update(bits.value.subarray(1)).digest()
}

let placeholderKey: forge.pki.PublicKey | undefined

/** forge needs an RSA key to build a TBS; the SPKI is replaced afterwards. */
function placeholderRsaKey(): forge.pki.PublicKey {
  if (placeholderKey === undefined) {
    const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 1024 })
    placeholderKey = forge.pki.publicKeyFromPem(
      publicKey.export({ type: 'spki', format: 'pem' }).toString()
    )
  }
  return placeholderKey
}

const getTbsCertificate = (
  forge.pki as unknown as { getTBSCertificate(cert: forge.pki.Certificate): forge.asn1.Asn1 }
).getTBSCertificate

/** The fields of one certificate, for {@link makeCertificate}. */
export interface CertificateSpec {
  /** `[]` for the empty subject of a Fulcio leaf. */
  subject: forge.pki.CertificateField[]
  issuer: forge.pki.CertificateField[]
  subjectKey: KeyObject
  /** Signs the TBS: an ECDSA P-256 key. */
  issuerKey: KeyObject
  notBefore: Date
  notAfter: Date
  /** forge extension objects: `{ name, ... }`, or `{ id, value, critical? }`. */
  extensions: object[]
}

/**
 * Builds an ECDSA-signed X.509 v3 certificate (PROTOCOL §7): forge encodes the TBS around a
 * placeholder RSA key, then the SPKI and the signature AlgorithmIdentifier are swapped in and
 * node:crypto signs. Returns the DER.
 */
export function makeCertificate(spec: CertificateSpec): Buffer {
  const cert = forge.pki.createCertificate()
  cert.publicKey = placeholderRsaKey()
  // A leading 01 keeps the DER serial positive (16 bytes, like Fulcio's).
  cert.serialNumber = `01${randomBytes(15).toString('hex')}`
  cert.validity.notBefore = spec.notBefore
  cert.validity.notAfter = spec.notAfter
  cert.setSubject(spec.subject)
  cert.setIssuer(spec.issuer)
  cert.setExtensions(spec.extensions)
  cert.siginfo.algorithmOid = forge.pki.oids.sha256WithRSAEncryption ?? '1.2.840.113549.1.1.11'
  const tbs = getTbsCertificate(cert)
  if (!Array.isArray(tbs.value)) throw new Error('forge produced a primitive TBSCertificate')
  tbs.value[2] = der.algorithm(OID_ECDSA_WITH_SHA256)
  tbs.value[6] = asn1FromDer(spkiDer(spec.subjectKey))
  const signature = sign('sha256', asn1ToDer(tbs), spec.issuerKey)
  const bits = asn1.create(
    asn1.Class.UNIVERSAL,
    asn1.Type.BITSTRING,
    false,
    `\0${signature.toString('binary')}`
  )
  return asn1ToDer(der.seq([tbs, der.algorithm(OID_ECDSA_WITH_SHA256), bits]))
}

/** Explicit SKI and AKI extensions (forge would otherwise hash its placeholder key). */
export function keyIdExtensions(subject: KeyObject, issuer: KeyObject): object[] {
  const aki = der.seq([
    asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, false, keyIdentifier(issuer).toString('binary')),
  ])
  return [
    { name: 'subjectKeyIdentifier', value: der.octets(keyIdentifier(subject)) },
    { name: 'authorityKeyIdentifier', value: aki },
  ]
}

/** Wraps a DER certificate and its key pair. */
export function issued(
  certDer: Buffer,
  pair: { privateKey: KeyObject; publicKey: KeyObject }
): IssuedCertificate {
  return {
    certDer,
    certPem: certificatePem(certDer),
    privateKey: pair.privateKey,
    publicKey: pair.publicKey,
  }
}

/** Options for {@link makeCaCertificate}. */
export interface CaCertificateOptions {
  commonName: string
  validFor: { start: Date; end: Date }
  /** The issuing CA; self-signed when absent. */
  parent?: CaCertificate
  /** Default 1 for a root, 0 for an intermediate. */
  pathLen?: number
  /** More extensions (e.g. an EKU). */
  extensions?: object[]
}

/** An ECDSA P-256 CA certificate (basicConstraints CA critical, keyCertSign + cRLSign). */
export function makeCaCertificate(options: CaCertificateOptions): CaCertificate {
  const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const subject = [
    { name: 'organizationName', value: 'customs-test' },
    { name: 'commonName', value: options.commonName },
  ]
  const parent = options.parent
  const certDer = makeCertificate({
    subject,
    issuer: parent?.subject ?? subject,
    subjectKey: pair.publicKey,
    issuerKey: parent?.privateKey ?? pair.privateKey,
    notBefore: options.validFor.start,
    notAfter: options.validFor.end,
    extensions: [
      {
        name: 'basicConstraints',
        cA: true,
        pathLenConstraint: options.pathLen ?? (parent === undefined ? 1 : 0),
        critical: true,
      },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
      ...(options.extensions ?? []),
      ...keyIdExtensions(pair.publicKey, parent?.publicKey ?? pair.publicKey),
    ],
  })
  return { ...issued(certDer, pair), subject }
}
