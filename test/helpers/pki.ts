// Offline Sigstore test PKI (PROTOCOL §7): fake Fulcio CAs issuing ECDSA leaves in the Fulcio
// profile, fake Rekor log keys that sign SETs, fake TSAs, and the matching trusted_root.json.

import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { json } from '@sigstore/core'
import forge from 'node-forge'
import { createTsa, type FakeTsa } from './tsa.js'
import {
  asn1FromDer,
  derUtf8String,
  issued,
  keyIdExtensions,
  makeCaCertificate,
  makeCertificate,
  spkiDer,
  type CaCertificate,
  type IssuedCertificate,
} from './x509.js'

export type { FakeTsa } from './tsa.js'
export { derUtf8String, type CaCertificate, type IssuedCertificate } from './x509.js'

/** Key algorithms the helpers generate. */
export type KeyType = 'p256' | 'p384' | 'rsa2048' | 'ed25519'

/** A generated key pair; `publicKeyPem` is SPKI PEM, the format of `cosign.pub`. */
export interface TestKeyPair {
  privateKey: KeyObject
  publicKey: KeyObject
  publicKeyPem: string
}

/** Generates a fresh key pair of the given type with node:crypto. */
export function keyPair(type: KeyType = 'p256'): TestKeyPair {
  const pair =
    type === 'p256'
      ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
      : type === 'p384'
        ? generateKeyPairSync('ec', { namedCurve: 'P-384' })
        : type === 'rsa2048'
          ? generateKeyPairSync('rsa', { modulusLength: 2048 })
          : generateKeyPairSync('ed25519')
  const publicKeyPem = pair.publicKey.export({ type: 'spki', format: 'pem' }).toString()
  return { ...pair, publicKeyPem }
}

/** Options for {@link CertificateAuthority.issueLeaf}. */
export interface LeafOptions {
  /** The one (critical) SAN: a URI (workflow identity) or an email. */
  san: { uri: string } | { email: string }
  /** OIDC issuer: written to .1.1 raw and to .1.8 as a DER UTF8String. Omit for neither. */
  issuer?: string
  /**
   * More extensions by dotted OID. Strings under `1.3.6.1.4.1.57264.1.<n>` with n ≥ 8 are written
   * as DER UTF8String (the Fulcio profile), other strings raw; a Buffer is written as-is.
   */
  extensions?: Record<string, string | Buffer>
  /** Default now − 1 minute. */
  notBefore?: Date
  /** Default now + 9 minutes. */
  notAfter?: Date
  /** Default `p256`. The CA always signs with ECDSA P-256. */
  keyType?: KeyType
  /** Default `codeSigning`; `none` omits the EKU extension. */
  eku?: 'codeSigning' | 'serverAuth' | 'none'
}

/** A fake Fulcio: a root, an optional intermediate, and leaf issuance. */
export interface CertificateAuthority {
  name: string
  root: CaCertificate
  intermediate: CaCertificate | undefined
  /** The intermediate (if any) then the root, PEM: the `dev.sigstore.cosign/chain` annotation. */
  chainPem: string
  /** DER of intermediate (if any) then root: `certChain` of the trusted root entry. */
  chainDer: Buffer[]
  validFor: { start: Date; end: Date }
  issueLeaf(options: LeafOptions): IssuedCertificate
}

const OID_FULCIO_ISSUER_V1 = '1.3.6.1.4.1.57264.1.1'
const OID_FULCIO_ISSUER_V2 = '1.3.6.1.4.1.57264.1.8'
const MINUTE = 60_000
const DAY = 24 * 60 * MINUTE

function sanExtension(san: LeafOptions['san']): object {
  const altName = 'uri' in san ? { type: 6, value: san.uri } : { type: 1, value: san.email }
  return { name: 'subjectAltName', altNames: [altName], critical: true }
}

function oidValue(oid: string, value: string | Buffer): string | forge.asn1.Asn1 {
  if (Buffer.isBuffer(value)) return value.toString('binary')
  const fulcio = /^1\.3\.6\.1\.4\.1\.57264\.1\.(\d+)$/.exec(oid)
  if (fulcio !== null && Number(fulcio[1]) >= 8) return asn1FromDer(derUtf8String(value))
  return forge.util.encodeUtf8(value)
}

/**
 * A fake Fulcio CA: an ECDSA P-256 root and (unless `intermediate: false`) an intermediate with
 * EKU codeSigning, valid from a day ago for a year. Leaves follow PROTOCOL §5.1.
 */
export function createCertificateAuthority(
  name: string,
  options: { intermediate?: boolean } = {}
): CertificateAuthority {
  const now = Date.now()
  const validFor = { start: new Date(now - DAY), end: new Date(now + 365 * DAY) }
  const root = makeCaCertificate({ commonName: `${name}-root`, validFor })
  const intermediate =
    options.intermediate === false
      ? undefined
      : makeCaCertificate({
          commonName: `${name}-intermediate`,
          validFor,
          parent: root,
          extensions: [{ name: 'extKeyUsage', codeSigning: true }],
        })
  const signer = intermediate ?? root
  const chain = intermediate === undefined ? [root] : [intermediate, root]
  return {
    name,
    root,
    intermediate,
    chainPem: chain.map((c) => c.certPem).join(''),
    chainDer: chain.map((c) => c.certDer),
    validFor,
    issueLeaf(leaf: LeafOptions): IssuedCertificate {
      const pair = keyPair(leaf.keyType ?? 'p256')
      const extensions: object[] = [
        { name: 'keyUsage', digitalSignature: true, critical: true },
        sanExtension(leaf.san),
        ...keyIdExtensions(pair.publicKey, signer.publicKey),
      ]
      const eku = leaf.eku ?? 'codeSigning'
      if (eku !== 'none') extensions.push({ name: 'extKeyUsage', [eku]: true })
      if (leaf.issuer !== undefined) {
        extensions.push({ id: OID_FULCIO_ISSUER_V1, value: forge.util.encodeUtf8(leaf.issuer) })
        extensions.push({
          id: OID_FULCIO_ISSUER_V2,
          value: oidValue(OID_FULCIO_ISSUER_V2, leaf.issuer),
        })
      }
      for (const [oid, value] of Object.entries(leaf.extensions ?? {})) {
        extensions.push({ id: oid, value: oidValue(oid, value) })
      }
      const certDer = makeCertificate({
        subject: [],
        issuer: signer.subject,
        subjectKey: pair.publicKey,
        issuerKey: signer.privateKey,
        notBefore: leaf.notBefore ?? new Date(Date.now() - MINUTE),
        notAfter: leaf.notAfter ?? new Date(Date.now() + 9 * MINUTE),
        extensions,
      })
      return issued(certDer, pair)
    },
  }
}

/** The cosign `dev.sigstore.cosign/bundle` annotation value, parsed. */
export interface CosignRekorBundle {
  SignedEntryTimestamp: string
  Payload: { body: string; integratedTime: number; logIndex: number; logID: string }
}

/** A bundle tlog entry (JSON form) with an inclusion promise. */
export interface TlogEntryJson {
  logIndex: string
  logId: { keyId: string }
  kindVersion: { kind: string; version: string }
  integratedTime: string
  inclusionPromise: { signedEntryTimestamp: string }
  canonicalizedBody: string
}

/** What {@link FakeRekor.signSet} returns: the same entry in both storage formats. */
export interface SignedEntry {
  /** JSON string for the `dev.sigstore.cosign/bundle` layer annotation. */
  annotation: string
  cosignBundle: CosignRekorBundle
  tlogEntry: TlogEntryJson
}

/** A fake Rekor: a P-256 log key that signs SETs, no log. */
export interface FakeRekor {
  baseUrl: string
  privateKey: KeyObject
  publicKey: KeyObject
  spkiDer: Buffer
  /** sha256(SPKI DER), raw; `logIdHex` is the cosign form, `logIdBase64` the bundle form. */
  logId: Buffer
  logIdHex: string
  logIdBase64: string
  validFor: { start: Date; end?: Date }
  /**
   * Signs the SET over canonical `{body, integratedTime, logID, logIndex}` for `body`, the
   * canonical entry JSON (e.g. {@link hashedRekordBody}). integratedTime in Unix seconds.
   */
  signSet(body: string, integratedTime?: number, logIndex?: number): SignedEntry
}

/** A fake Rekor log key named `baseUrl`, valid from a day ago. */
export function createRekor(baseUrl: string): FakeRekor {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const spki = spkiDer(publicKey)
  const logId = createHash('sha256').update(spki).digest()
  const logIdHex = logId.toString('hex')
  return {
    baseUrl,
    privateKey,
    publicKey,
    spkiDer: spki,
    logId,
    logIdHex,
    logIdBase64: logId.toString('base64'),
    validFor: { start: new Date(Date.now() - DAY) },
    signSet(body, integratedTime = Math.floor(Date.now() / 1000), logIndex = 1000 + randomInt()) {
      const b64 = Buffer.from(body).toString('base64')
      const payload = { body: b64, integratedTime, logID: logIdHex, logIndex }
      const set = sign('sha256', Buffer.from(json.canonicalize(payload)), privateKey)
      const cosignBundle: CosignRekorBundle = {
        SignedEntryTimestamp: set.toString('base64'),
        Payload: { body: b64, integratedTime, logIndex, logID: logIdHex },
      }
      const parsed = JSON.parse(body) as { kind?: unknown; apiVersion?: unknown }
      return {
        annotation: JSON.stringify(cosignBundle),
        cosignBundle,
        tlogEntry: {
          logIndex: String(logIndex),
          logId: { keyId: logId.toString('base64') },
          kindVersion: { kind: String(parsed.kind), version: String(parsed.apiVersion) },
          integratedTime: String(integratedTime),
          inclusionPromise: { signedEntryTimestamp: set.toString('base64') },
          canonicalizedBody: b64,
        },
      }
    },
  }
}

function randomInt(): number {
  return randomBytes(3).readUIntBE(0, 3)
}

/** trusted_root.json (`dev.sigstore.trustroot.v1.TrustedRoot`, JSON form). */
export interface TrustedRootJson {
  mediaType: string
  tlogs: TransparencyLogJson[]
  certificateAuthorities: CertificateAuthorityJson[]
  ctlogs: TransparencyLogJson[]
  timestampAuthorities: CertificateAuthorityJson[]
}

/** A `tlogs`/`ctlogs` entry. */
export interface TransparencyLogJson {
  baseUrl: string
  hashAlgorithm: 'SHA2_256'
  publicKey: { rawBytes: string; keyDetails: string; validFor: { start: string; end?: string } }
  logId: { keyId: string }
}

/** A `certificateAuthorities`/`timestampAuthorities` entry. */
export interface CertificateAuthorityJson {
  subject: { organization: string; commonName: string }
  uri: string
  certChain: { certificates: Array<{ rawBytes: string }> }
  validFor: { start: string; end?: string }
}

/** Which parts {@link TestPki.trustedRoot} lists (defaults: tlogs and tsa on, extras off). */
export interface TrustedRootOptions {
  tlogs?: boolean
  tsa?: boolean
  /** Also trust the second ("untrusted") CA. */
  extraCa?: boolean
  /** Also trust the second ("untrusted") Rekor key. */
  extraTlog?: boolean
}

/** The whole offline Sigstore stand-in. */
export interface TestPki {
  fulcio: CertificateAuthority
  /** Same shape as `fulcio`, never in the trusted root unless `extraCa`. */
  untrustedCa: CertificateAuthority
  rekor: FakeRekor
  /** Same shape as `rekor`, never in the trusted root unless `extraTlog`. */
  untrustedRekor: FakeRekor
  tsa: FakeTsa
  /** A second TSA, never in the trusted root. */
  untrustedTsa: FakeTsa
  trustedRoot(options?: TrustedRootOptions): TrustedRootJson
  /** Writes {@link TestPki.trustedRoot} as JSON to `path`; returns `path`. */
  writeTrustedRoot(path: string, options?: TrustedRootOptions): Promise<string>
}

function tlogJson(rekor: FakeRekor): TransparencyLogJson {
  return {
    baseUrl: rekor.baseUrl,
    hashAlgorithm: 'SHA2_256',
    publicKey: {
      rawBytes: rekor.spkiDer.toString('base64'),
      keyDetails: 'PKIX_ECDSA_P256_SHA_256',
      validFor: { start: rekor.validFor.start.toISOString() },
    },
    logId: { keyId: rekor.logIdBase64 },
  }
}

function caJson(
  commonName: string,
  uri: string,
  chain: Buffer[],
  start: Date
): CertificateAuthorityJson {
  return {
    subject: { organization: 'customs-test', commonName },
    uri,
    certChain: { certificates: chain.map((der) => ({ rawBytes: der.toString('base64') })) },
    validFor: { start: start.toISOString() },
  }
}

/**
 * Creates the test PKI: a trusted and an untrusted fake Fulcio (with intermediates unless
 * `intermediate: false`), a trusted and an untrusted Rekor key, a trusted and an untrusted TSA.
 */
export function createTestPki(options: { intermediate?: boolean } = {}): TestPki {
  const fulcio = createCertificateAuthority('fulcio-test', options)
  const untrustedCa = createCertificateAuthority('fulcio-untrusted', options)
  const rekor = createRekor('https://rekor.test.invalid')
  const untrustedRekor = createRekor('https://rekor-untrusted.test.invalid')
  const tsa = createTsa('tsa-test')
  const untrustedTsa = createTsa('tsa-untrusted')
  const trustedRoot = (opts: TrustedRootOptions = {}): TrustedRootJson => {
    const cas = [fulcio, ...(opts.extraCa === true ? [untrustedCa] : [])]
    const logs = [rekor, ...(opts.extraTlog === true ? [untrustedRekor] : [])]
    return {
      mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
      tlogs: opts.tlogs === false ? [] : logs.map(tlogJson),
      certificateAuthorities: cas.map((ca) =>
        caJson(ca.name, `https://${ca.name}.test.invalid`, ca.chainDer, ca.validFor.start)
      ),
      ctlogs: [],
      timestampAuthorities:
        opts.tsa === false
          ? []
          : [
              caJson(
                tsa.name,
                `https://${tsa.name}.test.invalid`,
                tsa.chainDer,
                tsa.validFor.start
              ),
            ],
    }
  }
  return {
    fulcio,
    untrustedCa,
    rekor,
    untrustedRekor,
    tsa,
    untrustedTsa,
    trustedRoot,
    async writeTrustedRoot(path, opts) {
      await writeFile(path, `${JSON.stringify(trustedRoot(opts), null, 2)}\n`)
      return path
    },
  }
}

/**
 * The public-good trusted_root.json shipped in @sigstore/tuf's seeds.json (base64 under
 * `<tuf mirror URL>.targets['trusted_root.json']`): offline, and as old as the installed package.
 */
export function publicGoodTrustedRoot(): TrustedRootJson {
  const require = createRequire(import.meta.url)
  const seeds: unknown = require('@sigstore/tuf/seeds.json')
  const field = (value: unknown, key: string): unknown =>
    typeof value === 'object' && value !== null && key in value
      ? (value as Record<string, unknown>)[key]
      : undefined
  if (typeof seeds !== 'object' || seeds === null) throw new Error('seeds.json is not an object')
  for (const mirror of Object.keys(seeds)) {
    const encoded = field(field(field(seeds, mirror), 'targets'), 'trusted_root.json')
    if (typeof encoded !== 'string') continue
    return JSON.parse(Buffer.from(encoded, 'base64').toString('utf8')) as TrustedRootJson
  }
  throw new Error('no trusted_root.json in @sigstore/tuf/seeds.json')
}
