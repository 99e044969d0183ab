// Finding the signatures and attestations of a digest (PROTOCOL §4.8): OCI 1.1 referrers (with
// the sha256-<hex> tag fallback) and the legacy cosign `.sig` and `.att` tags, read at once and
// taken in that order. Artifacts are fetched through Customs' own manifest and blob paths, so
// they are verified by digest, cached, and served to downstream `cosign verify` and admission
// controllers too.

import { isCustomsError } from '../errors.js'
import { mapInLanes } from '../concurrency.js'
import type { Digest } from '../oci/digest.js'
import { parseManifest, type Descriptor, type ImageManifest } from '../oci/manifest.js'
import { referrersTag } from '../oci/reference.js'
import type { RepoKey } from '../state/store.js'
import type { ArtifactSource } from './facts.js'
import { DSSE_MEDIA_TYPE, SIMPLE_SIGNING_MEDIA_TYPE, legacyAttestationBundle, legacySignatureBundle } from './cosign-legacy.js'

export const ArtifactType = Object.freeze({
  BUNDLE_V03: 'application/vnd.dev.sigstore.bundle.v0.3+json',
  BUNDLE_PREFIX: 'application/vnd.dev.sigstore.bundle',
  COSIGN_OCI11_SIG: 'application/vnd.dev.cosign.artifact.sig.v1+json',
  NOTATION: 'application/vnd.cncf.notary.signature',
} as const)

/** Signature payloads, bundles and envelopes are tiny; the cap protects the parsers. */
export const MAX_SIGNATURE_BLOB = 1024 * 1024

/** One thing to verify: a bundle, and for message signatures the bytes it signs. */
export interface Candidate {
  readonly source: ArtifactSource
  readonly artifact: Digest
  readonly bundle?: unknown
  readonly payload?: Buffer
  /** Why this artifact could not even be turned into a bundle. */
  readonly error?: string
}

export interface Discovery {
  readonly candidates: readonly Candidate[]
  readonly notation: number
  readonly errors: readonly string[]
}

/** How discovery reads manifests and blobs: through Customs' own inspected, cached paths. */
export interface ArtifactReader {
  manifest(repo: RepoKey, reference: string): Promise<{ digest: Digest; bytes: Buffer; mediaType: string } | null>
  blob(repo: RepoKey, digest: Digest, size: number): Promise<Buffer>
  referrers(repo: RepoKey, digest: Digest): Promise<Descriptor[]>
}

export interface DiscoverOptions {
  readonly attestations: boolean
  readonly maxArtifacts: number
}

/**
 * How many of one source's artifacts are read at once. The sources themselves (referrers, `.sig`,
 * `.att`) are read at the same time, each a chain of round trips of its own.
 */
const LANES = 4

/** What one source found: its candidates in order (at most maxArtifacts), and why it failed. */
interface Found {
  readonly candidates: readonly Candidate[]
  readonly errors: readonly string[]
  readonly notation?: number
}

/**
 * Every signature and attestation candidate of `digest`. The three sources are independent, so
 * they are read at once: a first pull waits for the longest chain of upstream round trips
 * (referrers, then the tag fallback, then each referrer's manifest and bundle) rather than for
 * all of them one after another; against a remote upstream each round trip is tens of ms. Each
 * source reads at most `maxArtifacts` artifacts; the candidates are then taken in a fixed order
 * (referrers, `.sig`, `.att`) and cut to `maxArtifacts`, so which ones are examined depends on the
 * upstream's content, never on which source answered first.
 */
export async function discover(reader: ArtifactReader, repo: RepoKey, digest: Digest, options: DiscoverOptions): Promise<Discovery> {
  const sources = [
    fromReferrers(reader, repo, digest, options.maxArtifacts),
    fromTag(reader, repo, 'legacy-sig', `${referrersTag(digest)}.sig`, options.maxArtifacts),
    ...(options.attestations ? [fromTag(reader, repo, 'legacy-att', `${referrersTag(digest)}.att`, options.maxArtifacts)] : []),
  ]
  const found = await Promise.all(sources)
  return {
    candidates: found.flatMap((f) => f.candidates).slice(0, options.maxArtifacts),
    notation: found.reduce((n, f) => n + (f.notation ?? 0), 0),
    errors: found.flatMap((f) => f.errors),
  }
}

/** The OCI 1.1 referrers of `digest` that carry Sigstore bundles or cosign signatures. */
async function fromReferrers(reader: ArtifactReader, repo: RepoKey, digest: Digest, max: number): Promise<Found> {
  try {
    const referrers = await reader.referrers(repo, digest)
    const notation = referrers.filter((d) => d.artifactType === ArtifactType.NOTATION).length
    // Each referrer makes one candidate or more: `max` of them are enough to fill the bound.
    const wanted = referrers.filter((d) => isSigstoreReferrer(d.artifactType ?? '')).slice(0, max)
    // One referrer that cannot be read costs only its own candidates.
    const each = await mapInLanes(wanted, LANES, (d) =>
      fromReferrer(reader, repo, d, max).then(
        (candidates): Found => ({ candidates, errors: [] }),
        (err: unknown): Found => ({ candidates: [], errors: [`referrer ${d.digest}: ${describe(err)}`] })
      )
    )
    return { candidates: each.flatMap((f) => f.candidates).slice(0, max), errors: each.flatMap((f) => f.errors), notation }
  } catch (err) {
    return { candidates: [], errors: [`referrers: ${describe(err)}`] }
  }
}

function isSigstoreReferrer(type: string): boolean {
  return type.startsWith(ArtifactType.BUNDLE_PREFIX) || type === ArtifactType.COSIGN_OCI11_SIG
}

/** The layers of the legacy cosign signature or attestation manifest tagged `tag`, if there is one. */
async function fromTag(reader: ArtifactReader, repo: RepoKey, source: ArtifactSource, tag: string, max: number): Promise<Found> {
  try {
    const found = await reader.manifest(repo, tag)
    return { candidates: found === null ? [] : await fromLegacy(reader, repo, found, source, max), errors: [] }
  } catch (err) {
    return { candidates: [], errors: [`${tag}: ${describe(err)}`] }
  }
}

async function fromReferrer(reader: ArtifactReader, repo: RepoKey, d: Descriptor, max: number): Promise<Candidate[]> {
  const found = await reader.manifest(repo, d.digest)
  if (found === null) return [{ source: 'referrer', artifact: d.digest, error: 'the referrer manifest is gone' }]
  if (d.artifactType === ArtifactType.COSIGN_OCI11_SIG) return fromLegacy(reader, repo, found, 'referrer', max)
  const manifest = imageManifest(found)
  const layer = manifest?.layers[0]
  if (manifest === undefined || layer === undefined) return [{ source: 'referrer', artifact: d.digest, error: 'the referrer is not a one-layer bundle manifest' }]
  if (layer.size > MAX_SIGNATURE_BLOB) return [{ source: 'referrer', artifact: d.digest, error: `the bundle is ${layer.size} bytes, over the limit` }]
  const bytes = await reader.blob(repo, layer.digest, layer.size)
  try {
    return [{ source: 'referrer', artifact: d.digest, bundle: JSON.parse(bytes.toString('utf8')) as unknown }]
  } catch {
    return [{ source: 'referrer', artifact: d.digest, error: 'the bundle is not JSON' }]
  }
}

/**
 * The candidates of a cosign signature or attestation manifest: one per signature or envelope
 * layer, at most `max`. Only those layers' blobs are read: a manifest listing thousands of layers
 * costs no more than one listing `max`.
 */
async function fromLegacy(
  reader: ArtifactReader,
  repo: RepoKey,
  found: { digest: Digest; bytes: Buffer; mediaType: string },
  source: ArtifactSource,
  max: number
): Promise<Candidate[]> {
  const manifest = imageManifest(found)
  if (manifest === undefined) return [{ source, artifact: found.digest, error: 'the signature manifest is not an image manifest' }]
  const layers = manifest.layers.filter((l) => l.mediaType === SIMPLE_SIGNING_MEDIA_TYPE || l.mediaType === DSSE_MEDIA_TYPE).slice(0, max)
  return mapInLanes(layers, LANES, async (layer): Promise<Candidate> => {
    if (layer.size > MAX_SIGNATURE_BLOB) return { source, artifact: found.digest, error: `a signature layer is ${layer.size} bytes, over the limit` }
    const blob = await reader.blob(repo, layer.digest, layer.size)
    const annotations = layer.annotations ?? {}
    try {
      return layer.mediaType === SIMPLE_SIGNING_MEDIA_TYPE
        ? { source, artifact: found.digest, bundle: legacySignatureBundle(blob, annotations), payload: blob }
        : { source, artifact: found.digest, bundle: legacyAttestationBundle(blob, annotations) }
    } catch (err) {
      return { source, artifact: found.digest, error: describe(err) }
    }
  })
}

function imageManifest(found: { bytes: Buffer; mediaType: string }): ImageManifest | undefined {
  try {
    const m = parseManifest(found.bytes, found.mediaType)
    return m.kind === 'image' ? m : undefined
  } catch {
    return undefined
  }
}

function describe(err: unknown): string {
  if (isCustomsError(err)) return `${err.code}: ${err.message}`
  return err instanceof Error ? err.message : String(err)
}
