// Legacy cosign signatures and attestations (`sha256-<hex>.sig` / `.att` tags): one layer per
// signature, with the signature, certificate, Rekor SET and RFC 3161 timestamp in annotations.
// Each layer becomes a Sigstore bundle v0.1 (PROTOCOL §6.4) that the one verifier checks.

import { createHash } from 'node:crypto'
import { pem } from '@sigstore/core'

export const Annotation = Object.freeze({
  SIGNATURE: 'dev.cosignproject.cosign/signature',
  CERTIFICATE: 'dev.sigstore.cosign/certificate',
  CHAIN: 'dev.sigstore.cosign/chain',
  BUNDLE: 'dev.sigstore.cosign/bundle',
  RFC3161: 'dev.sigstore.cosign/rfc3161timestamp',
} as const)

export const SIMPLE_SIGNING_MEDIA_TYPE = 'application/vnd.dev.cosign.simplesigning.v1+json'
export const DSSE_MEDIA_TYPE = 'application/vnd.dsse.envelope.v1+json'
const BUNDLE_V01 = 'application/vnd.dev.sigstore.bundle+json;version=0.1'
const CERT_RE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g
/** A hint no configured key has: the keyed verifier tries each key in turn. */
const UNNAMED_KEY = 'cosign-legacy'

function b64(bytes: Buffer): string {
  return bytes.toString('base64')
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** The verification material a legacy layer's annotations carry. */
function material(annotations: Readonly<Record<string, string>>): Record<string, unknown> {
  const vm: Record<string, unknown> = { tlogEntries: [] }
  const pems = `${annotations[Annotation.CERTIFICATE] ?? ''}\n${annotations[Annotation.CHAIN] ?? ''}`.match(CERT_RE)
  if (pems !== null) {
    // The chain annotation is only a hint: trust comes from the trusted root, never from here.
    vm.x509CertificateChain = { certificates: pems.map((p) => ({ rawBytes: b64(pem.toDER(p)) })) }
  } else {
    vm.publicKey = { hint: UNNAMED_KEY }
  }
  const set = annotations[Annotation.BUNDLE]
  if (set !== undefined) {
    const rb = JSON.parse(set) as unknown
    if (!isObject(rb) || !isObject(rb.Payload) || typeof rb.SignedEntryTimestamp !== 'string') {
      throw new Error('the Rekor bundle annotation is malformed')
    }
    const p = rb.Payload
    const body = JSON.parse(Buffer.from(String(p.body), 'base64').toString('utf8')) as unknown
    if (!isObject(body)) throw new Error('the Rekor entry body is malformed')
    vm.tlogEntries = [
      {
        logIndex: String(p.logIndex),
        logId: { keyId: b64(Buffer.from(String(p.logID), 'hex')) },
        kindVersion: { kind: String(body.kind), version: String(body.apiVersion) },
        integratedTime: String(p.integratedTime),
        inclusionPromise: { signedEntryTimestamp: rb.SignedEntryTimestamp },
        canonicalizedBody: p.body,
      },
    ]
  }
  const tsa = annotations[Annotation.RFC3161]
  if (tsa !== undefined) {
    const parsed = JSON.parse(tsa) as unknown
    if (!isObject(parsed) || typeof parsed.SignedRFC3161Timestamp !== 'string') throw new Error('the timestamp annotation is malformed')
    vm.timestampVerificationData = { rfc3161Timestamps: [{ signedTimestamp: parsed.SignedRFC3161Timestamp }] }
  }
  return vm
}

/** A `.sig` layer: the payload blob is exactly the signed bytes. Throws on malformed annotations. */
export function legacySignatureBundle(payload: Buffer, annotations: Readonly<Record<string, string>>): unknown {
  const signature = annotations[Annotation.SIGNATURE]
  if (signature === undefined) throw new Error('the layer has no signature annotation')
  return {
    mediaType: BUNDLE_V01,
    verificationMaterial: material(annotations),
    messageSignature: {
      messageDigest: { algorithm: 'SHA2_256', digest: b64(createHash('sha256').update(payload).digest()) },
      signature,
    },
  }
}

/** An `.att` layer: the blob is a DSSE envelope; the signature sits inside it. */
export function legacyAttestationBundle(envelope: Buffer, annotations: Readonly<Record<string, string>>): unknown {
  const env = JSON.parse(envelope.toString('utf8')) as unknown
  if (!isObject(env) || typeof env.payload !== 'string' || !Array.isArray(env.signatures)) {
    throw new Error('the attestation layer is not a DSSE envelope')
  }
  return { mediaType: BUNDLE_V01, verificationMaterial: material(annotations), dsseEnvelope: env }
}

/** The in-toto payload of a DSSE envelope inside a bundle. */
export function dssePayload(bundleJson: unknown): Buffer | undefined {
  if (!isObject(bundleJson) || !isObject(bundleJson.dsseEnvelope)) return undefined
  const payload = bundleJson.dsseEnvelope.payload
  return typeof payload === 'string' ? Buffer.from(payload, 'base64') : undefined
}
