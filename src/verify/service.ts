// From a digest to its verified facts: discover artifacts, verify each bundle, bind each payload
// to the digest, and sort the results into signatures and attestations. One call per inspection;
// the inspection records the facts with the verdict, so a cleared digest is not verified again
// until the trust revision changes.

import type { Digest } from '../oci/digest.js'
import type { RepoKey } from '../state/store.js'
import { dssePayload } from './cosign-legacy.js'
import { discover, type ArtifactReader, type Candidate, type DiscoverOptions } from './discover.js'
import type { AttestationFact, SignatureFact, VerificationFacts } from './facts.js'
import { COSIGN_SIGN_PREDICATE, declaredPredicateType, parseStatement, predicateFacts, simpleSigningMismatch } from './payloads.js'
import type { SignatureVerifier } from './verifier.js'
import type { VerificationFailure } from '../observability/metrics.js'

export interface SignatureServiceOptions extends DiscoverOptions {
  /** How long an empty result is believed (ms). */
  readonly negativeTtl: number
  /** Where the signatures of a repository live, when not beside it (COSIGN_REPOSITORY). */
  readonly signatureRepository: (repo: RepoKey) => RepoKey
  /** Told of each signature or attestation that fails, by bounded reason (metrics). */
  readonly onFailure?: (reason: VerificationFailure) => void
}

export class SignatureService {
  readonly #verifier: SignatureVerifier
  readonly #reader: () => ArtifactReader
  readonly #options: SignatureServiceOptions

  /** `reader` is a function: the manifest path that reads artifacts is built after this service. */
  constructor(verifier: SignatureVerifier, reader: () => ArtifactReader, options: SignatureServiceOptions) {
    this.#verifier = verifier
    this.#reader = reader
    this.#options = options
  }

  async factsFor(repo: RepoKey, digest: Digest): Promise<VerificationFacts> {
    const found = await discover(this.#reader(), this.#options.signatureRepository(repo), digest, this.#options)
    const signatures: SignatureFact[] = []
    const attestations: AttestationFact[] = []
    for (const c of found.candidates) {
      const { failure, ...fact } = this.#check(c, digest)
      if (failure !== undefined) this.#options.onFailure?.(failure)
      const attestation = c.source === 'legacy-att' || (fact.predicateType !== undefined && fact.predicateType !== COSIGN_SIGN_PREDICATE)
      if (attestation) attestations.push(fact)
      else signatures.push(fact)
    }
    const empty = signatures.length === 0 && attestations.length === 0
    return {
      signatures,
      attestations,
      notation: found.notation,
      discoveryErrors: found.errors,
      // Nothing found (or the lookup failed): ask again soon; found artifacts stand until the
      // trust revision changes or the tag moves to another digest.
      ...(empty || found.errors.length > 0 ? { recheckAfter: Date.now() + this.#options.negativeTtl } : {}),
    }
  }

  /** Verifies one candidate and binds its payload to `digest`; `failure` says why it failed. */
  #check(c: Candidate, digest: Digest): AttestationFact & { failure?: VerificationFailure } {
    const base = { source: c.source, artifact: c.artifact }
    if (c.error !== undefined || c.bundle === undefined) return { ...base, verified: false, reason: c.error ?? 'no bundle', failure: 'malformed' }
    const statementBytes = dssePayload(c.bundle)
    const result = this.#verifier.verify(c.bundle, c.payload)
    if (statementBytes === undefined) {
      // A message signature: the signed bytes must be a simple-signing payload for this digest.
      if (c.payload === undefined) return { ...base, verified: false, reason: 'a message-signature bundle carries no payload to bind to the image', failure: 'malformed' }
      if (!result.ok) return { ...base, verified: false, reason: result.reason, failure: result.failure }
      const mismatch = simpleSigningMismatch(c.payload, digest)
      return mismatch === undefined ? { ...base, verified: true, ...result.signer } : { ...base, verified: false, reason: mismatch, failure: 'binding' }
    }
    const statement = parseStatement(statementBytes, digest)
    const predicateType = declaredPredicateType(statementBytes)
    const typed = { ...base, ...(predicateType !== undefined ? { predicateType } : {}) }
    if (!result.ok) return { ...typed, verified: false, reason: result.reason, failure: result.failure }
    if (typeof statement === 'string') return { ...typed, verified: false, reason: statement, failure: 'binding' }
    return { ...typed, verified: true, ...result.signer, predicate: predicateFacts(statement) }
  }
}
