// A fake RFC 3161 timestamp authority for offline tests: an ECDSA root and a timeStamping leaf,
// and DER TimeStampResp tokens (CMS SignedData over a TSTInfo) that @sigstore/verify accepts.

import { createHash, generateKeyPairSync, randomBytes, sign } from 'node:crypto'
import forge from 'node-forge'
import {
  asn1FromDer,
  asn1ToDer,
  der,
  issued,
  keyIdExtensions,
  makeCaCertificate,
  makeCertificate,
  OID_ECDSA_WITH_SHA256,
  parseAsn1,
  type CaCertificate,
  type IssuedCertificate,
} from './x509.js'

const OID = {
  sha256: '2.16.840.1.101.3.4.2.1',
  signedData: '1.2.840.113549.1.7.2',
  tstInfo: '1.2.840.113549.1.9.16.1.4',
  contentType: '1.2.840.113549.1.9.3',
  messageDigest: '1.2.840.113549.1.9.4',
  signingCertificateV2: '1.2.840.113549.1.9.16.2.47',
  /** The Sigstore TSA policy OID (PROTOCOL §5.1). */
  tsaPolicy: '1.3.6.1.4.1.57264.2',
} as const

const DAY = 24 * 60 * 60 * 1000

/** A fake TSA: root + leaf (EKU timeStamping, critical), both ECDSA P-256. */
export interface FakeTsa {
  name: string
  root: CaCertificate
  leaf: IssuedCertificate
  /** `[leaf, root]` DER: the trusted root's `certChain` (the leaf MUST come first). */
  chainDer: Buffer[]
  validFor: { start: Date; end: Date }
  /**
   * A DER RFC 3161 TimeStampResp whose message imprint is sha256(`dataToStamp`) (for cosign: the
   * raw signature bytes) and whose genTime is `genTime` (default now; seconds precision).
   */
  timestamp(dataToStamp: Buffer, genTime?: Date): Buffer
}

function sha256(bytes: Buffer): Buffer {
  return createHash('sha256').update(bytes).digest()
}

function attribute(oid: string, value: forge.asn1.Asn1): forge.asn1.Asn1 {
  return der.seq([der.oid(oid), der.set([value])])
}

/** Sorts SET OF members by their DER encoding, as DER requires. */
function derSorted(items: forge.asn1.Asn1[]): forge.asn1.Asn1[] {
  return items
    .map((item) => ({ item, bytes: asn1ToDer(item) }))
    .sort((a, b) => Buffer.compare(a.bytes, b.bytes))
    .map((entry) => entry.item)
}

/** Creates a fake TSA named `name`, valid from a day ago for a year. */
export function createTsa(name: string): FakeTsa {
  const now = Date.now()
  const validFor = { start: new Date(now - DAY), end: new Date(now + 365 * DAY) }
  const root = makeCaCertificate({ commonName: `${name}-root`, validFor })
  const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const leafDer = makeCertificate({
    subject: [
      { name: 'organizationName', value: 'customs-test' },
      { name: 'commonName', value: `${name}-leaf` },
    ],
    issuer: root.subject,
    subjectKey: pair.publicKey,
    issuerKey: root.privateKey,
    notBefore: validFor.start,
    notAfter: validFor.end,
    extensions: [
      { name: 'keyUsage', digitalSignature: true, critical: true },
      { name: 'extKeyUsage', timeStamping: true, critical: true },
      ...keyIdExtensions(pair.publicKey, root.publicKey),
    ],
  })
  const leaf = issued(leafDer, pair)
  const tbs = parseAsn1(leafDer).subs[0]
  const serial = tbs?.subs[1]?.value
  const issuerName = tbs?.subs[3]?.toDER()
  if (serial === undefined || issuerName === undefined) throw new Error('malformed TSA leaf')

  const timestamp = (dataToStamp: Buffer, genTime: Date = new Date()): Buffer => {
    const tstInfo = asn1ToDer(
      der.seq([
        der.int(1),
        der.oid(OID.tsaPolicy),
        der.seq([der.algorithm(OID.sha256), der.octets(sha256(dataToStamp))]),
        der.intBytes(Buffer.concat([Buffer.from([0x01]), randomBytes(8)])),
        der.generalizedTime(genTime),
      ])
    )
    const essCertIdV2 = der.seq([der.octets(sha256(leafDer))])
    const attributes = derSorted([
      attribute(OID.contentType, der.oid(OID.tstInfo)),
      attribute(OID.messageDigest, der.octets(sha256(tstInfo))),
      attribute(OID.signingCertificateV2, der.seq([der.seq([essCertIdV2])])),
    ])
    // The signature covers the attributes encoded as a SET; the token holds them as [0] IMPLICIT.
    const signature = sign('sha256', asn1ToDer(der.set(attributes)), leaf.privateKey)
    const signerInfo = der.seq([
      der.int(1),
      der.seq([asn1FromDer(issuerName), der.intBytes(serial)]),
      der.algorithm(OID.sha256),
      der.tagged(0, attributes),
      der.algorithm(OID_ECDSA_WITH_SHA256),
      der.octets(signature),
    ])
    const signedData = der.seq([
      der.int(3),
      der.set([der.algorithm(OID.sha256)]),
      der.seq([der.oid(OID.tstInfo), der.tagged(0, [der.octets(tstInfo)])]),
      der.tagged(0, [asn1FromDer(leafDer)]),
      der.set([signerInfo]),
    ])
    const token = der.seq([der.oid(OID.signedData), der.tagged(0, [signedData])])
    return asn1ToDer(der.seq([der.seq([der.int(0)]), token]))
  }

  return { name, root, leaf, chainDer: [leafDer, root.certDer], validFor, timestamp }
}
