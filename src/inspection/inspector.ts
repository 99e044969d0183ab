// The inspection step: every manifest (GET and HEAD, by tag and by digest, index and child) passes
// through `inspect` before it is served or cached. Here it checks the digest, bounds the size and
// parses; signature verification and policies join as further checks in later stages.

import type { Digest } from '../oci/digest.js'
import { digestOf } from '../oci/digest.js'
import { CustomsError } from '../errors.js'
import { parseManifest, referencedBlobs, MAX_MANIFEST_BYTES, type Manifest } from '../oci/manifest.js'
import type { ManifestLinks, RepoKey, Verdict } from '../state/store.js'
import type { VerificationFacts } from '../verify/facts.js'
import type { SignatureService } from '../verify/service.js'
import { isSignatureArtifact } from './artifacts.js'

export interface InspectionInput {
  readonly repo: RepoKey
  readonly digest: Digest
  readonly bytes: Buffer
  /** The media type the upstream declared (Content-Type, parameters removed). */
  readonly mediaType: string
  /** Fetched as a signature or attestation of another manifest: not itself verified. */
  readonly artifact?: boolean
  /** The cleared index that lists this manifest, whose verified facts it inherits. */
  readonly parent?: { readonly digest: Digest; readonly facts: VerificationFacts }
}

export interface Inspection {
  readonly manifest: Manifest
  readonly verdict: Verdict
  readonly links: ManifestLinks
  readonly facts?: VerificationFacts
}

/**
 * The policy and trust revision verdicts are reached under. A verdict recorded under another
 * revision is stale and the manifest is inspected again.
 */
export const BUILTIN_REVISION = 'builtin-1'

export class Inspector {
  readonly revision: string
  readonly #signatures: SignatureService | undefined

  /** `trustRevision` names the trust in force; without a signature service nothing is verified. */
  constructor(signatures?: SignatureService, trustRevision = 'none') {
    this.#signatures = signatures
    this.revision = `${BUILTIN_REVISION}:${trustRevision}`
  }

  /**
   * Inspects one manifest. Integrity failures (wrong digest, oversize, unparseable) throw: such
   * bytes are not the manifest asked for, so there is nothing to detain. Everything else yields a
   * verdict with its reasons, and the verified signature and attestation facts.
   */
  async inspect(input: InspectionInput): Promise<Inspection> {
    const manifest = checkIntegrity(input)
    const facts = await this.#facts(input, manifest)
    const verdict: Verdict = {
      outcome: 'cleared',
      reasons: [],
      revision: this.revision,
      decidedAt: Date.now(),
    }
    return { manifest, verdict, links: linksOf(manifest), ...(facts !== undefined ? { facts } : {}) }
  }

  async #facts(input: InspectionInput, manifest: Manifest): Promise<VerificationFacts | undefined> {
    if (this.#signatures === undefined || input.artifact === true || isSignatureArtifact(manifest)) return undefined
    // Signatures are usually on the index: a platform manifest it lists inherits its facts.
    if (input.parent !== undefined) return { ...input.parent.facts, inheritedFrom: input.parent.digest }
    return this.#signatures.factsFor(input.repo, input.digest)
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
