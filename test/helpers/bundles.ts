// Sigstore bundle JSON (PROTOCOL §4.5) and the OCI 1.1 referrer manifests that carry it (§4.4),
// plus the referrers fallback index and a notation-style referrer, "present but unverified" (§4.6).

import { createHash } from 'node:crypto'
import { pem } from '@sigstore/core'
import {
  buildImage,
  buildIndex,
  MediaTypes,
  type BuiltImage,
  type BuiltIndex,
  type Descriptor,
} from './images.js'
import type { TlogEntryJson } from './pki.js'
import { SigMediaTypes, type DsseEnvelope } from './sign.js'

/** A Sigstore bundle in its JSON form (bytes as base64). */
export interface BundleJson {
  mediaType: string
  verificationMaterial: {
    certificate?: { rawBytes: string }
    x509CertificateChain?: { certificates: Array<{ rawBytes: string }> }
    publicKey?: { hint: string }
    tlogEntries: TlogEntryJson[]
    timestampVerificationData?: { rfc3161Timestamps: Array<{ signedTimestamp: string }> }
  }
  messageSignature?: {
    messageDigest: { algorithm: 'SHA2_256'; digest: string }
    signature: string
  }
  dsseEnvelope?: {
    payload: string
    payloadType: string
    signatures: Array<{ sig: string; keyid: string }>
  }
}

/** Key material and timestamps of a bundle. Give exactly one of `certPem` or `publicKeyHint`. */
export interface BundleMaterial {
  /** Keyless (or user certificate) leaf, PEM. */
  certPem?: string
  /** v0.1/v0.2 only: more certificates (PEM) after the leaf in `x509CertificateChain`. */
  chainPem?: string
  /** Keyed: the hint a KeyFinderFunc resolves. */
  publicKeyHint?: string
  /** Tlog entries with inclusion promises ({@link SignedEntry.tlogEntry}). */
  tlogEntries?: TlogEntryJson[]
  /** DER TimeStampResps, imprint over the signature bytes. */
  rfc3161?: Buffer[]
  /**
   * Default `0.1` when there are tlog entries (v0.2+ require an inclusion proof with a
   * checkpoint, which these test logs cannot make), else `0.3`. `0.3` puts the leaf in
   * `certificate`, the older versions in `x509CertificateChain`.
   */
  version?: '0.1' | '0.2' | '0.3'
}

const MEDIA_TYPE = {
  '0.1': SigMediaTypes.BUNDLE_V01,
  '0.2': SigMediaTypes.BUNDLE_V02,
  '0.3': SigMediaTypes.BUNDLE_V03,
} as const

function pemCertificates(text: string | undefined): string[] {
  return text?.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []
}

function rawBytes(certPem: string): { rawBytes: string } {
  return { rawBytes: pem.toDER(certPem).toString('base64') }
}

function bundleBase(
  material: BundleMaterial
): Pick<BundleJson, 'mediaType' | 'verificationMaterial'> {
  const tlogEntries = material.tlogEntries ?? []
  const version = material.version ?? (tlogEntries.length > 0 ? '0.1' : '0.3')
  const keyed = material.publicKeyHint !== undefined
  if (keyed === (material.certPem !== undefined)) {
    throw new Error('a bundle needs exactly one of certPem and publicKeyHint')
  }
  const verificationMaterial: BundleJson['verificationMaterial'] = { tlogEntries }
  if (material.publicKeyHint !== undefined) {
    verificationMaterial.publicKey = { hint: material.publicKeyHint }
  } else if (material.certPem !== undefined && version === '0.3') {
    verificationMaterial.certificate = rawBytes(material.certPem)
  } else if (material.certPem !== undefined) {
    const pems = [material.certPem, ...pemCertificates(material.chainPem)]
    verificationMaterial.x509CertificateChain = { certificates: pems.map(rawBytes) }
  }
  if (material.rfc3161 !== undefined && material.rfc3161.length > 0) {
    verificationMaterial.timestampVerificationData = {
      rfc3161Timestamps: material.rfc3161.map((t) => ({ signedTimestamp: t.toString('base64') })),
    }
  }
  return { mediaType: MEDIA_TYPE[version], verificationMaterial }
}

/** A bundle holding a message signature over `payload` (signature base64). */
export function messageSignatureBundle(
  options: BundleMaterial & { payload: Buffer; signature: string }
): BundleJson {
  const digest = createHash('sha256').update(options.payload).digest('base64')
  return {
    ...bundleBase(options),
    messageSignature: {
      messageDigest: { algorithm: 'SHA2_256', digest },
      signature: options.signature,
    },
  }
}

/** A bundle holding a DSSE envelope (exactly one signature). */
export function dsseBundle(options: BundleMaterial & { envelope: DsseEnvelope }): BundleJson {
  const { envelope } = options
  return {
    ...bundleBase(options),
    dsseEnvelope: {
      payload: envelope.payload,
      payloadType: envelope.payloadType,
      signatures: envelope.signatures.map((s) => ({ sig: s.sig, keyid: s.keyid })),
    },
  }
}

const EMPTY_CONFIG = Buffer.from('{}')

/** Options for {@link bundleReferrerManifest}. */
export interface ReferrerOptions {
  /** `org.opencontainers.image.created`; default now. */
  created?: string
  /** Exact layer bytes; default JSON.stringify(bundle). */
  bundleBytes?: Buffer
}

/**
 * The referrer manifest cosign v3 pushes for a bundle (PROTOCOL §4.4): artifactType bundle v0.3,
 * the empty config, one layer holding the bundle, `subject`, and the bundle annotations.
 */
export function bundleReferrerManifest(
  subject: Descriptor,
  bundle: BundleJson,
  predicateType: string,
  options: ReferrerOptions = {}
): BuiltImage {
  const bytes = options.bundleBytes ?? Buffer.from(JSON.stringify(bundle))
  return buildImage({
    mediaType: 'oci',
    artifactType: SigMediaTypes.BUNDLE_V03,
    configBytes: EMPTY_CONFIG,
    configMediaType: MediaTypes.OCI_EMPTY,
    layers: [{ bytes, mediaType: SigMediaTypes.BUNDLE_V03 }],
    subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size },
    annotations: {
      'dev.sigstore.bundle.content':
        bundle.dsseEnvelope !== undefined ? 'dsse-envelope' : 'message-signature',
      'dev.sigstore.bundle.predicateType': predicateType,
      'org.opencontainers.image.created': options.created ?? new Date().toISOString(),
    },
  })
}

/**
 * A notation-style signature referrer (PROTOCOL §4.6): artifactType notary signature, empty
 * config, one `application/jose+json` layer (a dummy JWS: Customs only detects these).
 */
export function notationReferrerManifest(subject: Descriptor): BuiltImage {
  const target = { mediaType: subject.mediaType, digest: subject.digest, size: subject.size }
  const jws = {
    payload: Buffer.from(JSON.stringify({ targetArtifact: target })).toString('base64url'),
    protected: Buffer.from(
      JSON.stringify({ alg: 'PS256', cty: 'application/vnd.cncf.notary.payload.v1+json' })
    ).toString('base64url'),
    header: { x5c: [] },
    signature: Buffer.from('not a real signature').toString('base64url'),
  }
  const thumbprint = createHash('sha256').update('customs-test-notation-leaf').digest('hex')
  return buildImage({
    mediaType: 'oci',
    artifactType: SigMediaTypes.NOTATION,
    configBytes: EMPTY_CONFIG,
    configMediaType: MediaTypes.OCI_EMPTY,
    layers: [{ bytes: Buffer.from(JSON.stringify(jws)), mediaType: 'application/jose+json' }],
    subject: target,
    annotations: {
      'io.cncf.notary.x509chain.thumbprint#S256': JSON.stringify([thumbprint]),
      'org.opencontainers.image.created': new Date().toISOString(),
    },
  })
}

/**
 * The descriptor the referrers API (and the fallback index) lists for a referrer manifest:
 * `artifactType` from the manifest (or its config media type) and the manifest's annotations.
 */
export function referrerDescriptor(manifest: BuiltImage): Descriptor {
  const parsed = JSON.parse(manifest.manifest.toString('utf8')) as {
    artifactType?: string
    config?: { mediaType?: string }
    annotations?: Record<string, string>
  }
  const artifactType = parsed.artifactType ?? parsed.config?.mediaType
  return {
    mediaType: manifest.mediaType,
    digest: manifest.manifestDigest,
    size: manifest.manifest.length,
    ...(artifactType === undefined ? {} : { artifactType }),
    ...(parsed.annotations === undefined ? {} : { annotations: parsed.annotations }),
  }
}

/** The OCI index stored at the `sha256-<hex>` referrers fallback tag (PROTOCOL §1.7). */
export function referrersFallbackIndex(descriptors: readonly Descriptor[]): BuiltIndex {
  return buildIndex([], 'oci', { extraManifests: descriptors })
}
