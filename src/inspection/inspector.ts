// The inspection step: every manifest (GET and HEAD, by tag and by digest, index and child) passes
// through `inspect` before it is served or cached. Here it checks the digest, bounds the size and
// parses; signature verification and policies join as further checks in later stages.

import type { Digest } from '../oci/digest.js'
import { digestOf } from '../oci/digest.js'
import { CustomsError } from '../errors.js'
import { parseManifest, referencedBlobs, MAX_MANIFEST_BYTES, type Manifest } from '../oci/manifest.js'
import type { ManifestLinks, RepoKey, Verdict } from '../state/store.js'

export interface InspectionInput {
  readonly repo: RepoKey
  readonly digest: Digest
  readonly bytes: Buffer
  /** The media type the upstream declared (Content-Type, parameters removed). */
  readonly mediaType: string
}

export interface Inspection {
  readonly manifest: Manifest
  readonly verdict: Verdict
  readonly links: ManifestLinks
}

/**
 * The policy and trust revision verdicts are reached under. A verdict recorded under another
 * revision is stale and the manifest is inspected again.
 */
export const BUILTIN_REVISION = 'builtin-1'

export class Inspector {
  readonly revision: string = BUILTIN_REVISION

  /**
   * Inspects one manifest. Integrity failures (wrong digest, oversize, unparseable) throw: such
   * bytes are not the manifest asked for, so there is nothing to detain. Everything else yields a
   * verdict with its reasons.
   */
  async inspect(input: InspectionInput): Promise<Inspection> {
    const manifest = checkIntegrity(input)
    const verdict: Verdict = {
      outcome: 'cleared',
      reasons: [],
      revision: this.revision,
      decidedAt: Date.now(),
    }
    return { manifest, verdict, links: linksOf(manifest) }
  }
}

/** The digest must be that of the exact bytes, within the size bound, and they must parse. */
export function checkIntegrity(input: InspectionInput): Manifest {
  if (input.bytes.byteLength > MAX_MANIFEST_BYTES) {
    throw new CustomsError('MANIFEST_INVALID', `manifest ${input.digest} is over the ${MAX_MANIFEST_BYTES}-byte limit`)
  }
  const actual = digestOf(input.bytes, input.digest)
  if (actual !== input.digest) {
    throw new CustomsError('UPSTREAM_INVALID', `upstream manifest bytes hash to ${actual}, not ${input.digest}`)
  }
  return parseManifest(input.bytes, input.mediaType)
}

function linksOf(manifest: Manifest): ManifestLinks {
  if (manifest.kind === 'index') {
    return { blobs: [], children: manifest.manifests.map((d) => d.digest) }
  }
  return { blobs: referencedBlobs(manifest).map((d) => ({ digest: d.digest, size: d.size })), children: [] }
}
