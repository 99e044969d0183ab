// Signed-content builders for tests: cosign simple-signing payloads, in-toto statements, DSSE
// envelopes, Rekor entry bodies, and legacy cosign `.sig`/`.att` layers and manifests (§4).

import { createHash, sign, type KeyObject } from 'node:crypto'
import { dsse, json } from '@sigstore/core'
import { buildImage, MediaTypes, type BuiltImage, type Descriptor } from './images.js'
import type { SignedEntry } from './pki.js'

/** Media types and well-known values of the signature formats. */
export const SigMediaTypes = Object.freeze({
  SIMPLE_SIGNING: 'application/vnd.dev.cosign.simplesigning.v1+json',
  DSSE_ENVELOPE: 'application/vnd.dsse.envelope.v1+json',
  IN_TOTO: 'application/vnd.in-toto+json',
  BUNDLE_V01: 'application/vnd.dev.sigstore.bundle+json;version=0.1',
  BUNDLE_V02: 'application/vnd.dev.sigstore.bundle+json;version=0.2',
  BUNDLE_V03: 'application/vnd.dev.sigstore.bundle.v0.3+json',
  NOTATION: 'application/vnd.cncf.notary.signature',
  /** cosign v3's `cosign sign` predicate type. */
  COSIGN_SIGN_PREDICATE: 'https://sigstore.dev/cosign/sign/v1',
  /** cosign's default `--type custom` predicate type. */
  COSIGN_CUSTOM_PREDICATE: 'https://cosign.sigstore.dev/attestation/v1',
} as const)

/** The legacy cosign layer annotation keys (PROTOCOL §4.1). */
export const CosignAnnotations = Object.freeze({
  SIGNATURE: 'dev.cosignproject.cosign/signature',
  CERTIFICATE: 'dev.sigstore.cosign/certificate',
  CHAIN: 'dev.sigstore.cosign/chain',
  BUNDLE: 'dev.sigstore.cosign/bundle',
  RFC3161: 'dev.sigstore.cosign/rfc3161timestamp',
  PREDICATE_TYPE: 'predicateType',
} as const)

function sha256Hex(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex')
}

/** Go's json.Marshal escapes <, > and & (cosign writes payloads with it). */
function goJson(value: unknown): string {
  return JSON.stringify(value)
    .replace(/</g, '\\u003c')
    .replace(/>/g, '\\u003e')
    .replace(/&/g, '\\u0026')
}

/**
 * The cosign simple-signing payload, byte-for-byte as cosign writes it: `critical` then
 * `optional` (null, or the annotations with keys sorted as Go sorts map keys).
 */
export function simpleSigningPayload(
  dockerReference: string,
  manifestDigest: string,
  optional?: Record<string, string> | null
): Buffer {
  const sorted =
    optional === undefined || optional === null
      ? null
      : Object.fromEntries(
          Object.entries(optional).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        )
  const payload = {
    critical: {
      identity: { 'docker-reference': dockerReference },
      image: { 'docker-manifest-digest': manifestDigest },
      type: 'cosign container image signature',
    },
    optional: sorted,
  }
  return Buffer.from(goJson(payload))
}

/**
 * Signs `bytes` and returns the base64 signature: ECDSA (DER) and RSA PKCS#1 v1.5 over SHA-256,
 * Ed25519 with a null algorithm (pure EdDSA, as cosign does).
 */
export function signBytes(privateKey: KeyObject, bytes: Buffer): string {
  const algorithm = privateKey.asymmetricKeyType === 'ed25519' ? null : 'sha256'
  return sign(algorithm, bytes, privateKey).toString('base64')
}

/** The canonical Rekor `hashedrekord` 0.0.1 body for a signed payload (PROTOCOL §4.2). */
export function hashedRekordBody(
  payload: Buffer,
  signatureB64: string,
  certPemOrPublicKeyPem: string
): string {
  return json.canonicalize({
    apiVersion: '0.0.1',
    kind: 'hashedrekord',
    spec: {
      data: { hash: { algorithm: 'sha256', value: sha256Hex(payload) } },
      signature: {
        content: signatureB64,
        publicKey: { content: Buffer.from(certPemOrPublicKeyPem).toString('base64') },
      },
    },
  })
}

/** An in-toto Statement. */
export interface InTotoStatement {
  _type: string
  subject: Array<{ name?: string; digest: Record<string, string> }>
  predicateType: string
  predicate: unknown
}

/**
 * An in-toto Statement over an image digest. `v1` (cosign v3 bundles) leaves the subject name out
 * unless given; `v0.1` (legacy `.att`) names it `subjectName` (default empty).
 */
export function inTotoStatement(
  imageDigest: string,
  predicateType: string,
  predicate: unknown = {},
  statementType: 'v0.1' | 'v1' = 'v1',
  subjectName?: string
): InTotoStatement {
  const [algorithm, hex] = imageDigest.split(':')
  if (algorithm === undefined || hex === undefined) throw new Error(`bad digest ${imageDigest}`)
  const name = subjectName ?? (statementType === 'v0.1' ? '' : undefined)
  return {
    _type: `https://in-toto.io/Statement/${statementType}`,
    subject: [{ ...(name === undefined ? {} : { name }), digest: { [algorithm]: hex } }],
    predicateType,
    predicate,
  }
}

/** A DSSE envelope (JSON form; payload and sig base64). */
export interface DsseEnvelope {
  payloadType: string
  payload: string
  signatures: Array<{ keyid: string; sig: string }>
}

/**
 * Signs `statement` (an object is JSON-encoded; a Buffer is used as-is) as a DSSE envelope: the
 * signature covers PAE(payloadType, payload).
 */
export function dsseEnvelope(
  statement: InTotoStatement | Buffer,
  privateKey: KeyObject,
  payloadType: string = SigMediaTypes.IN_TOTO
): DsseEnvelope {
  const payload = Buffer.isBuffer(statement) ? statement : Buffer.from(JSON.stringify(statement))
  const sig = signBytes(privateKey, dsse.preAuthEncoding(payloadType, payload))
  return { payloadType, payload: payload.toString('base64'), signatures: [{ keyid: '', sig }] }
}

/** The envelope's bytes as cosign stores them in an `.att` layer (Go struct field order). */
export function envelopeBytes(envelope: DsseEnvelope): Buffer {
  return Buffer.from(
    JSON.stringify({
      payloadType: envelope.payloadType,
      payload: envelope.payload,
      signatures: envelope.signatures.map((s) => ({ keyid: s.keyid, sig: s.sig })),
    })
  )
}

function firstSig(envelope: DsseEnvelope): string {
  const sig = envelope.signatures[0]?.sig
  if (sig === undefined) throw new Error('DSSE envelope without a signature')
  return sig
}

/** The canonical Rekor `dsse` 0.0.1 body for an envelope. */
export function dsseRekorBody(envelope: DsseEnvelope, certPemOrPublicKeyPem: string): string {
  return json.canonicalize({
    apiVersion: '0.0.1',
    kind: 'dsse',
    spec: {
      envelopeHash: { algorithm: 'sha256', value: sha256Hex(envelopeBytes(envelope)) },
      payloadHash: {
        algorithm: 'sha256',
        value: sha256Hex(Buffer.from(envelope.payload, 'base64')),
      },
      signatures: [
        {
          signature: firstSig(envelope),
          verifier: Buffer.from(certPemOrPublicKeyPem).toString('base64'),
        },
      ],
    },
  })
}

/** The canonical Rekor `intoto` 0.0.2 body for an envelope (older cosign attest). */
export function intotoRekorBody(envelope: DsseEnvelope, certPemOrPublicKeyPem: string): string {
  return json.canonicalize({
    apiVersion: '0.0.2',
    kind: 'intoto',
    spec: {
      content: {
        envelope: {
          payloadType: envelope.payloadType,
          signatures: [
            {
              // Rekor stores the signature base64-encoded once more.
              sig: Buffer.from(firstSig(envelope)).toString('base64'),
              publicKey: Buffer.from(certPemOrPublicKeyPem).toString('base64'),
            },
          ],
        },
        hash: { algorithm: 'sha256', value: sha256Hex(envelopeBytes(envelope)) },
        payloadHash: {
          algorithm: 'sha256',
          value: sha256Hex(Buffer.from(envelope.payload, 'base64')),
        },
      },
    },
  })
}

/** A legacy cosign layer: its blob, and its descriptor with the annotations. */
export interface LegacyLayer {
  blob: Buffer
  descriptor: Descriptor & { annotations: Record<string, string> }
}

/** Verification material shared by `.sig` and `.att` layers. */
export interface LegacyMaterial {
  /** Leaf PEM (keyless or user certificate); absent for keyed signatures. */
  certPem?: string
  /** Intermediates and root, PEM, concatenated. */
  chainPem?: string
  /** The Rekor SET: a {@link SignedEntry} or the annotation JSON string itself. */
  set?: SignedEntry | string
  /** A DER TimeStampResp (imprint over the raw signature for `.sig`, the envelope for `.att`). */
  rfc3161?: Buffer
}

function materialAnnotations(material: LegacyMaterial): Record<string, string> {
  const annotations: Record<string, string> = {}
  if (material.certPem !== undefined) annotations[CosignAnnotations.CERTIFICATE] = material.certPem
  if (material.chainPem !== undefined) annotations[CosignAnnotations.CHAIN] = material.chainPem
  if (material.set !== undefined) {
    annotations[CosignAnnotations.BUNDLE] =
      typeof material.set === 'string' ? material.set : material.set.annotation
  }
  if (material.rfc3161 !== undefined) {
    annotations[CosignAnnotations.RFC3161] = JSON.stringify({
      SignedRFC3161Timestamp: material.rfc3161.toString('base64'),
    })
  }
  return annotations
}

function layer(blob: Buffer, mediaType: string, annotations: Record<string, string>): LegacyLayer {
  const digest = `sha256:${sha256Hex(blob)}`
  return { blob, descriptor: { mediaType, digest, size: blob.length, annotations } }
}

/** A `.sig` layer: the payload as the blob, the base64 signature and material as annotations. */
export function legacySigLayer(
  options: LegacyMaterial & { payload: Buffer; signature: string }
): LegacyLayer {
  return layer(options.payload, SigMediaTypes.SIMPLE_SIGNING, {
    [CosignAnnotations.SIGNATURE]: options.signature,
    ...materialAnnotations(options),
  })
}

/** An `.att` layer: the envelope as the blob, `predicateType` and material as annotations. */
export function legacyAttLayer(
  options: LegacyMaterial & { envelope: DsseEnvelope; predicateType: string }
): LegacyLayer {
  return layer(envelopeBytes(options.envelope), SigMediaTypes.DSSE_ENVELOPE, {
    [CosignAnnotations.PREDICATE_TYPE]: options.predicateType,
    ...materialAnnotations(options),
  })
}

/**
 * The OCI manifest cosign writes at `sha256-<hex>.sig`: a small image config naming the layers'
 * digests as diff_ids, then one layer per signature. Push it with pushImage.
 */
export function legacySigManifest(layers: readonly LegacyLayer[]): BuiltImage {
  const config = {
    architecture: '',
    created: '0001-01-01T00:00:00Z',
    history: [{ created: '0001-01-01T00:00:00Z' }],
    os: '',
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.descriptor.digest) },
    config: {},
  }
  return buildImage({
    mediaType: 'oci',
    configBytes: Buffer.from(JSON.stringify(config)),
    configMediaType: MediaTypes.OCI_CONFIG,
    layers: layers.map((l) => ({
      bytes: l.blob,
      mediaType: l.descriptor.mediaType,
      diffId: l.descriptor.digest,
      annotations: l.descriptor.annotations,
    })),
  })
}

/** The `sha256-<hex>.att` manifest: the same shape as {@link legacySigManifest}. */
export function legacyAttManifest(layers: readonly LegacyLayer[]): BuiltImage {
  return legacySigManifest(layers)
}
