// Cryptographic verification of one Sigstore bundle against the trust in force (which a SIGHUP may
// replace: trust-reload.ts), offline, with @sigstore/verify's Verifier. `verify` is synchronous and
// never throws: every library exception (the TypeError on a keyless bundle without timestamps
// included) becomes a failure with a reason. Identity and payload binding are checked by callers.

import { verify as cryptoVerify } from 'node:crypto'
import { bundleFromJSON, type Bundle } from '@sigstore/bundle'
import { dsse } from '@sigstore/core'
import { TrustedRoot } from '@sigstore/protobuf-specs'
import { Verifier, toSignedEntity, toTrustMaterial, type SignedEntity, type TrustMaterial } from '@sigstore/verify'
import { hasCodeSigningEku, identityOf, type CertificateIdentity } from './identity.js'
import type { TrustRoot, TrustStore, TrustedKey } from './trust.js'
import type { TrustHolder } from './trust-reload.js'
import type { VerificationFailure } from '../observability/metrics.js'

export interface VerifiedSigner {
  readonly kind: 'keyless' | 'keyed'
  /** The trusted root that vouched for the certificate or the log entry. */
  readonly root?: string
  /** The configured key that verified a keyed signature. */
  readonly key?: string
  readonly identity?: CertificateIdentity
  /** Whether a transparency-log entry was present and verified. */
  readonly tlog: boolean
  /** The earliest verified signing time (tlog or RFC 3161), ISO 8601. */
  readonly signedAt?: string
}

export type CheckResult =
  | { readonly ok: true; readonly signer: VerifiedSigner }
  | { readonly ok: false; readonly reason: string; readonly failure: VerificationFailure }

export class SignatureVerifier {
  readonly #trust: TrustHolder
  readonly #extraKeys: () => readonly TrustedKey[]
  /** For keyed signatures without any root: no tlog keys, no CAs. */
  readonly #keysOnly: TrustMaterial

  /**
   * `extraKeys` are keys trusted besides the configured ones, read at each verification: the
   * inline keys of the policies in force.
   */
  constructor(trust: TrustHolder, extraKeys: () => readonly TrustedKey[] = () => []) {
    this.#trust = trust
    this.#extraKeys = extraKeys
    const none = (hint: string): never => {
      throw new Error(`no trusted key named ${hint}`)
    }
    this.#keysOnly = toTrustMaterial(TrustedRoot.fromJSON({ mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1' }), none)
  }

  /**
   * Verifies a bundle (JSON as parsed) over `artifact` (the signed bytes of a message signature;
   * unused for DSSE). Keyless bundles are tried against every root; keyed ones against every key.
   */
  verify(bundleJson: unknown, artifact?: Buffer): CheckResult {
    let bundle: Bundle
    try {
      bundle = bundleFromJSON(bundleJson)
    } catch (err) {
      return fail(`malformed bundle: ${message(err)}`, 'malformed')
    }
    // Read once: a reload during this verification must not mix the old roots with the new keys.
    const trust = this.#trust.current
    try {
      return bundle.verificationMaterial.content.$case === 'publicKey'
        ? this.#keyed(trust, bundle, artifact)
        : this.#keyless(trust, bundle, artifact)
    } catch (err) {
      return fail(`verification failed: ${message(err)}`, 'untrusted')
    }
  }

  #keyless(trust: TrustStore, bundle: Bundle, artifact: Buffer | undefined): CheckResult {
    const content = bundle.verificationMaterial.content
    const leaf =
      content.$case === 'certificate'
        ? content.certificate.rawBytes
        : content.$case === 'x509CertificateChain'
          ? content.x509CertificateChain.certificates[0]?.rawBytes
          : undefined
    if (leaf === undefined) return fail('the bundle carries no certificate', 'malformed')
    const entity = toSignedEntity(bundle, artifact)
    // sigstore-js crashes on a certificate with no trusted time; without one there is nothing
    // to check the short-lived certificate's validity against.
    if (entity.timestamps.length === 0) return fail('no trusted signing time: neither a log entry time nor an RFC 3161 timestamp', 'no-trusted-time')
    if (!hasCodeSigningEku(Buffer.from(leaf))) return fail('the certificate is not for code signing (no codeSigning EKU)', 'certificate')
    const reasons: string[] = []
    for (const root of trust.roots) {
      const result = attempt(() => verifier(root.material, root).verify(entity))
      if (result === undefined) {
        return { ok: true, signer: { kind: 'keyless', root: root.name, identity: identityOf(Buffer.from(leaf)), tlog: entity.tlogEntries.length > 0, ...signedAt(entity) } }
      }
      reasons.push(`${root.name}: ${result}`)
    }
    return fail(reasons.length === 0 ? 'no trusted root is configured' : reasons.join('; '), 'untrusted')
  }

  #keyed(trust: TrustStore, bundle: Bundle, artifact: Buffer | undefined): CheckResult {
    const keys = [...trust.keys, ...this.#extraKeys()]
    if (keys.length === 0) return fail('a keyed signature, and no trusted key is configured', 'untrusted')
    const reasons: string[] = []
    for (const key of keys) {
      // The hint names no key we know (cosign writes none, or a key id): try each trusted key.
      const named = withHint(bundle, key.name)
      const entity = withSignatureCheck(toSignedEntity(named, artifact), named, artifact, key)
      const finder = () => ({ publicKey: key.key, validFor: () => true })
      const materials: Array<[string | undefined, TrustMaterial, TrustRoot | undefined]> =
        entity.tlogEntries.length > 0
          ? trust.roots.map((r) => [r.name, { ...r.material, publicKey: finder }, r])
          : [[undefined, { ...this.#keysOnly, publicKey: finder }, undefined]]
      for (const [rootName, material] of materials) {
        const result = attempt(() => new Verifier(material, { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 }).verify(entity))
        if (result === undefined) {
          return { ok: true, signer: { kind: 'keyed', key: key.name, ...(rootName ? { root: rootName } : {}), tlog: entity.tlogEntries.length > 0, ...signedAt(entity) } }
        }
        reasons.push(`${key.name}${rootName ? `@${rootName}` : ''}: ${result}`)
      }
    }
    return fail(reasons.join('; '), 'untrusted')
  }
}

function verifier(material: TrustMaterial, root: TrustRoot): Verifier {
  return new Verifier(material, {
    tlogThreshold: root.tlogThreshold,
    ctlogThreshold: root.ctlogThreshold,
    timestampThreshold: root.timestampThreshold,
  })
}

/** Runs a verification; undefined on success, else the reason. */
function attempt(run: () => unknown): string | undefined {
  try {
    run()
    return undefined
  } catch (err) {
    return message(err)
  }
}

function message(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code
    return typeof code === 'string' ? `${code}: ${err.message}` : err.message
  }
  return String(err)
}

function fail(reason: string, failure: VerificationFailure): CheckResult {
  return { ok: false, reason, failure }
}

function withHint(bundle: Bundle, hint: string): Bundle {
  return {
    ...bundle,
    verificationMaterial: { ...bundle.verificationMaterial, content: { $case: 'publicKey', publicKey: { hint } } },
  }
}

/**
 * Ed25519 signs the message itself, not a sha256 digest; sigstore-js always passes sha256, so for
 * Ed25519 keys the signature primitive is replaced and everything else (log entries, times) is
 * still the library's.
 */
function withSignatureCheck(entity: SignedEntity, bundle: Bundle, artifact: Buffer | undefined, key: TrustedKey): SignedEntity {
  if (key.type !== 'ed25519') return entity
  const signature = Object.create(entity.signature) as SignedEntity['signature']
  signature.verifySignature = (publicKey) => {
    const c = bundle.content
    if (c.$case === 'dsseEnvelope') {
      const env = c.dsseEnvelope
      const sig = env.signatures[0]?.sig
      return sig !== undefined && cryptoVerify(null, dsse.preAuthEncoding(env.payloadType, Buffer.from(env.payload)), publicKey, Buffer.from(sig))
    }
    return artifact !== undefined && cryptoVerify(null, artifact, publicKey, Buffer.from(c.messageSignature.signature))
  }
  return { ...entity, signature }
}

function signedAt(entity: SignedEntity): { signedAt?: string } {
  const times: number[] = []
  for (const t of entity.timestamps) {
    if (t.$case === 'transparency-log') times.push(Number(t.tlogEntry.integratedTime) * 1000)
    else times.push(t.timestamp.signingTime.getTime())
  }
  const earliest = times.filter(Number.isFinite).sort((a, b) => a - b)[0]
  return earliest === undefined ? {} : { signedAt: new Date(earliest).toISOString() }
}
