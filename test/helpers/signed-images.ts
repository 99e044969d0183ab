// Pushes signatures next to images in a real registry: legacy cosign `.sig`/`.att` tags, and
// OCI 1.1 referrers (bundles, notation) plus the `sha256-<hex>` fallback index (PROTOCOL §1.7, §4).

import {
  fetchManifest,
  MediaTypes,
  pushImage,
  pushManifestBytes,
  referrersTagFor,
  type BuiltImage,
  type Descriptor,
  type PushedManifest,
  type RegistryTarget,
} from './images.js'
import {
  bundleReferrerManifest,
  notationReferrerManifest,
  referrerDescriptor,
  referrersFallbackIndex,
  type BundleJson,
  type ReferrerOptions,
} from './bundles.js'
import { legacyAttManifest, legacySigManifest, type LegacyLayer } from './sign.js'

/** The legacy cosign tag for a digest: `sha256-<hex>.sig` / `.att`. */
export function cosignTag(imageDigest: string, suffix: 'sig' | 'att' | 'sbom'): string {
  return `${referrersTagFor(imageDigest)}.${suffix}`
}

/** Where a legacy signature object goes: the image's repo unless `signatureRepo` is given. */
export interface LegacyPushOptions {
  /** COSIGN_REPOSITORY: another repository in the same registry. */
  signatureRepo?: string
}

/** What a legacy push stored. */
export interface PushedLegacy extends PushedManifest {
  manifest: BuiltImage
}

async function pushLegacy(
  registry: RegistryTarget,
  repo: string,
  imageDigest: string,
  manifest: BuiltImage,
  suffix: 'sig' | 'att',
  options: LegacyPushOptions
): Promise<PushedLegacy> {
  const target = options.signatureRepo ?? repo
  const pushed = await pushImage(registry, target, cosignTag(imageDigest, suffix), manifest)
  return { ...pushed, manifest }
}

/**
 * Pushes a `.sig` manifest with `layers` (one per signature) at `sha256-<hex>.sig` in `repo`
 * (or `signatureRepo`). Replaces whatever the tag held: pass every layer each time.
 */
export function pushLegacySignature(
  registry: RegistryTarget,
  repo: string,
  imageDigest: string,
  layers: readonly LegacyLayer[],
  options: LegacyPushOptions = {}
): Promise<PushedLegacy> {
  return pushLegacy(registry, repo, imageDigest, legacySigManifest(layers), 'sig', options)
}

/** Pushes an `.att` manifest at `sha256-<hex>.att`, like {@link pushLegacySignature}. */
export function pushLegacyAttestation(
  registry: RegistryTarget,
  repo: string,
  imageDigest: string,
  layers: readonly LegacyLayer[],
  options: LegacyPushOptions = {}
): Promise<PushedLegacy> {
  return pushLegacy(registry, repo, imageDigest, legacyAttManifest(layers), 'att', options)
}

/** The descriptors currently in the `sha256-<hex>` fallback index ([] when the tag is absent). */
export async function readReferrersFallback(
  registry: RegistryTarget,
  repo: string,
  subjectDigest: string
): Promise<Descriptor[]> {
  const tag = referrersTagFor(subjectDigest)
  const res = await fetchManifest(registry, repo, tag, { accept: [MediaTypes.OCI_INDEX] })
  if (res.status === 404) return []
  if (res.status !== 200) {
    throw new Error(`GET ${repo}:${tag} answered ${res.status}: ${res.bytes.toString('utf8')}`)
  }
  const parsed = JSON.parse(res.bytes.toString('utf8')) as { manifests?: Descriptor[] }
  return parsed.manifests ?? []
}

/**
 * Adds `descriptor` to the `sha256-<hex>` fallback index of `subjectDigest` (read, append unless
 * present, push), as cosign and go-containerregistry do on a registry without the referrers
 * API. Not safe against concurrent writers. Returns the new index digest.
 */
export async function addToReferrersFallback(
  registry: RegistryTarget,
  repo: string,
  subjectDigest: string,
  descriptor: Descriptor
): Promise<string> {
  const existing = await readReferrersFallback(registry, repo, subjectDigest)
  const manifests = existing.some((d) => d.digest === descriptor.digest)
    ? existing
    : [...existing, descriptor]
  const index = referrersFallbackIndex(manifests)
  const tag = referrersTagFor(subjectDigest)
  return pushManifestBytes(registry, repo, tag, index.manifest, index.mediaType)
}

/** What a referrer push stored. */
export interface PushedReferrer {
  manifest: BuiltImage
  /** The referrer manifest, pushed by digest. */
  digest: string
  /** The descriptor listed in the fallback index. */
  descriptor: Descriptor
  /** Digest of the fallback index after the update. */
  indexDigest: string
}

/**
 * Pushes any referrer manifest (its config and layers, then the manifest by digest) and lists it
 * in the subject's fallback index. distribution 2.8 has no referrers API, so the index is the only
 * way clients find it there.
 */
export async function pushReferrer(
  registry: RegistryTarget,
  repo: string,
  subjectDigest: string,
  manifest: BuiltImage
): Promise<PushedReferrer> {
  const pushed = await pushImage(registry, repo, undefined, manifest)
  const descriptor = referrerDescriptor(manifest)
  const indexDigest = await addToReferrersFallback(registry, repo, subjectDigest, descriptor)
  return { manifest, digest: pushed.digest, descriptor, indexDigest }
}

/** Pushes a Sigstore bundle as an OCI 1.1 referrer of `subject` (PROTOCOL §4.4). */
export function pushBundleReferrer(
  registry: RegistryTarget,
  repo: string,
  subject: Descriptor,
  bundle: BundleJson,
  predicateType: string,
  options: ReferrerOptions = {}
): Promise<PushedReferrer> {
  const manifest = bundleReferrerManifest(subject, bundle, predicateType, options)
  return pushReferrer(registry, repo, subject.digest, manifest)
}

/** Pushes a notation-style signature referrer of `subject` (detected, never verified). */
export function pushNotationReferrer(
  registry: RegistryTarget,
  repo: string,
  subject: Descriptor
): Promise<PushedReferrer> {
  return pushReferrer(registry, repo, subject.digest, notationReferrerManifest(subject))
}
