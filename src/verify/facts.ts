// The verified facts an inspection records for one manifest: every signature and attestation
// found, each verified or failed with its reason. Policies (and people) read these; a failed
// signature is a fact too, never silently dropped.

import type { Digest } from '../oci/digest.js'
import type { CertificateIdentity } from './identity.js'
import type { PredicateFacts } from './payloads.js'

export type ArtifactSource = 'referrer' | 'legacy-sig' | 'legacy-att'

export interface SignatureFact {
  readonly source: ArtifactSource
  /** The signature or attestation manifest it came from. */
  readonly artifact: Digest
  readonly verified: boolean
  /** Why it failed; absent when verified. */
  readonly reason?: string
  readonly kind?: 'keyless' | 'keyed'
  readonly root?: string
  readonly key?: string
  readonly identity?: CertificateIdentity
  readonly tlog?: boolean
  readonly signedAt?: string
}

export interface AttestationFact extends SignatureFact {
  readonly predicateType?: string
  readonly predicate?: PredicateFacts
}

export interface VerificationFacts {
  readonly signatures: readonly SignatureFact[]
  readonly attestations: readonly AttestationFact[]
  /** Notary Project signatures seen: recognised, not verified. */
  readonly notation: number
  /** Set when these facts are an index's, inherited by a child manifest. */
  readonly inheritedFrom?: Digest
  /** Problems met while looking (an upstream error, an oversized artifact). */
  readonly discoveryErrors: readonly string[]
  /** When nothing was found, discovery is repeated after this time (ms since the epoch). */
  readonly recheckAfter?: number
}

export const NO_FACTS: VerificationFacts = Object.freeze({
  signatures: [],
  attestations: [],
  notation: 0,
  discoveryErrors: [],
})
