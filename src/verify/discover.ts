// Finding the signatures and attestations of a digest (PROTOCOL §4.8): OCI 1.1 referrers (with
// the sha256-<hex> tag fallback), then the legacy cosign `.sig` and `.att` tags. Artifacts are
// fetched through Customs' own manifest and blob paths, so they are verified by digest, cached,
// and served to downstream `cosign verify` and admission controllers too.

import { isCustomsError } from '../errors.js'
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

export async function discover(reader: ArtifactReader, repo: RepoKey, digest: Digest, options: DiscoverOptions): Promise<Discovery> {
  const candidates: Candidate[] = []
  const errors: string[] = []
  let notation = 0
  const room = () => candidates.length < options.maxArtifacts

  try {
    for (const d of await reader.referrers(repo, digest)) {
      const type = d.artifactType ?? ''
      if (type === ArtifactType.NOTATION) notation++
      else if (room() && (type.startsWith(ArtifactType.BUNDLE_PREFIX) || type === ArtifactType.COSIGN_OCI11_SIG)) {
        candidates.push(...(await fromReferrer(reader, repo, d)))
      }
    }
  } catch (err) {
    errors.push(`referrers: ${describe(err)}`)
  }

  const tags: Array<[ArtifactSource, string]> = [['legacy-sig', `${referrersTag(digest)}.sig`]]
  if (options.attestations) tags.push(['legacy-att', `${referrersTag(digest)}.att`])
  for (const [source, tag] of tags) {
    if (!room()) break
    try {
      const found = await reader.manifest(repo, tag)
      if (found !== null) candidates.push(...(await fromLegacy(reader, repo, found, source)).slice(0, options.maxArtifacts - candidates.length))
    } catch (err) {
      errors.push(`${tag}: ${describe(err)}`)
    }
  }
  return { candidates, notation, errors }
}

async function fromReferrer(reader: ArtifactReader, repo: RepoKey, d: Descriptor): Promise<Candidate[]> {
  const found = await reader.manifest(repo, d.digest)
  if (found === null) return [{ source: 'referrer', artifact: d.digest, error: 'the referrer manifest is gone' }]
  if (d.artifactType === ArtifactType.COSIGN_OCI11_SIG) return fromLegacy(reader, repo, found, 'referrer')
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

async function fromLegacy(
  reader: ArtifactReader,
  repo: RepoKey,
  found: { digest: Digest; bytes: Buffer; mediaType: string },
  source: ArtifactSource
): Promise<Candidate[]> {
  const manifest = imageManifest(found)
  if (manifest === undefined) return [{ source, artifact: found.digest, error: 'the signature manifest is not an image manifest' }]
  const out: Candidate[] = []
  for (const layer of manifest.layers) {
    const annotations = layer.annotations ?? {}
    if (layer.size > MAX_SIGNATURE_BLOB) {
      out.push({ source, artifact: found.digest, error: `a signature layer is ${layer.size} bytes, over the limit` })
      continue
    }
    const isSig = layer.mediaType === SIMPLE_SIGNING_MEDIA_TYPE
    const isAtt = layer.mediaType === DSSE_MEDIA_TYPE
    if (!isSig && !isAtt) continue
    const blob = await reader.blob(repo, layer.digest, layer.size)
    try {
      out.push(
        isSig
          ? { source, artifact: found.digest, bundle: legacySignatureBundle(blob, annotations), payload: blob }
          : { source, artifact: found.digest, bundle: legacyAttestationBundle(blob, annotations) }
      )
    } catch (err) {
      out.push({ source, artifact: found.digest, error: describe(err) })
    }
  }
  return out
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
