// The inspection step: every manifest (GET and HEAD, by tag and by digest, index and child) passes
// through `inspect` before it is served or cached: digest, size and parse checks, then the facts
// (verified signatures and attestations, image config), then the policies' verdict.

import type { Digest } from '../oci/digest.js'
import { digestOf } from '../oci/digest.js'
import { CustomsError } from '../errors.js'
import { parseManifest, referencedBlobs, MAX_MANIFEST_BYTES, type Manifest } from '../oci/manifest.js'
import type { ManifestLinks, RepoKey, Verdict } from '../state/store.js'
import type { VerificationFacts } from '../verify/facts.js'
import type { SignatureService } from '../verify/service.js'
import type { TrustHolder } from '../verify/trust-reload.js'
import type { TrustStore } from '../verify/trust.js'
import { isSignatureArtifact } from './artifacts.js'
import { imageFacts, type ImageFacts } from './facts.js'
import { evaluate, type Decision } from '../policy/evaluate.js'
import type { Metrics } from '../observability/metrics.js'
import type { PolicyEngine } from '../policy/engine.js'
import type { PolicySet } from '../policy/types.js'
import type { Descriptor } from '../oci/manifest.js'

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
  readonly image: ImageFacts
}

/** Reads an image config blob (verified by digest) for its facts; undefined when it cannot. */
export type ConfigReader = (repo: RepoKey, config: Descriptor) => Promise<Buffer | undefined>

export interface InspectorDeps {
  readonly signatures?: SignatureService
  /** The trust in force, whose revision is part of every verdict's (a SIGHUP may replace it). */
  readonly trust?: TrustHolder
  readonly policies: PolicyEngine
  readonly readConfig: ConfigReader
  /** Counts inspections, their duration and each matching policy's outcome, when given. */
  readonly metrics?: Metrics
}

/**
 * The policy and trust revision verdicts are reached under. A verdict recorded under another
 * revision is stale and the manifest is inspected again.
 */
export const BUILTIN_REVISION = 'builtin-1'

/** A revision and what it names: the trust store (if any) and the policy set in force together. */
interface InForce {
  readonly trust: TrustStore | undefined
  readonly policies: PolicySet
  readonly revision: string
}

export class Inspector {
  readonly #deps: InspectorDeps
  /** The last revision made: every manifest GET asks for it, and it changes only on a reload. */
  #last: InForce | undefined

  constructor(deps: InspectorDeps) {
    this.#deps = deps
  }

  /** The trust and policy revision in force: a verdict reached under another one is stale. */
  get revision(): string {
    return this.#inForce().revision
  }

  /** The revision in force and the policy set it names, read at one moment. */
  #inForce(): InForce {
    const trust = this.#deps.trust?.current
    const policies = this.#deps.policies.current()
    const last = this.#last
    if (last !== undefined && last.trust === trust && last.policies === policies) return last
    const revision = `${BUILTIN_REVISION}:${trust?.revision ?? 'none'}:${policies.revision}`
    this.#last = { trust, policies, revision }
    return this.#last
  }

  /**
   * Inspects one manifest. Integrity failures (wrong digest, oversize, unparseable) throw: such
   * bytes are not the manifest asked for, so there is nothing to detain. Everything else yields a
   * verdict with its reasons, the verified signature and attestation facts, and the image facts.
   */
  async inspect(input: InspectionInput): Promise<Inspection> {
    const metrics = this.#deps.metrics
    if (metrics === undefined) return this.#inspect(input)
    const end = metrics.inspectionDuration.startTimer()
    try {
      const inspection = await this.#inspect(input)
      // Signatures and attestations are not judged: no policy decision was made.
      metrics.inspections.inc({ result: inspection.decision === undefined ? 'artifact' : inspection.verdict.outcome })
      if (inspection.decision !== undefined) {
        for (const [policy, outcome] of policyOutcomes(inspection.decision)) metrics.policyVerdicts.inc({ policy, outcome })
      }
      return inspection
    } catch (err) {
      metrics.inspections.inc({ result: 'error' })
      throw err
    } finally {
      end()
    }
  }

  async #inspect(input: InspectionInput): Promise<Inspection & { decision?: Decision }> {
    const manifest = checkIntegrity(input)
    // The set is read with the revision, not after the awaits below: a reload meanwhile must not
    // have a verdict reached under the new set recorded under the old revision's name. Under the
    // old one it is stale at once, and judged again (the walk, or the next pull).
    const { revision, policies } = this.#inForce()
    // Judged by what it is, never by who asked: a runnable image fetched as "a signature" (a
    // .sig tag pointing at an image) is judged like any image.
    const artifact = isSignatureArtifact(manifest)
    // The config and the signatures are read at once: each is upstream round trips of its own.
    // Discovery's own reads, and artifacts, are not searched for signatures (no recursion).
    const [config, facts] = await Promise.all([
      manifest.kind === 'image' && !artifact ? this.#deps.readConfig(input.repo, manifest.config) : undefined,
      artifact || input.artifact === true ? undefined : this.#facts(input),
    ])
    const image = imageFacts(manifest, config)
    const links = linksOf(manifest)
    if (artifact) {
      // Signatures and attestations are not themselves judged: downstream verifiers need them.
      return { manifest, image, links, verdict: { outcome: 'cleared', reasons: [], revision, decidedAt: Date.now() } }
    }
    const decision = evaluate(policies, {
      upstream: input.repo.upstream,
      repository: input.repo.repository,
      digest: input.digest,
      image,
      ...(facts !== undefined ? { verification: facts } : {}),
    })
    const verdict: Verdict = { outcome: decision.outcome, reasons: decision.reasons, revision, decidedAt: Date.now() }
    return { manifest, image, links, verdict, decision, ...(facts !== undefined ? { facts } : {}) }
  }

  async #facts(input: InspectionInput): Promise<VerificationFacts | undefined> {
    if (this.#deps.signatures === undefined) return undefined
    // Signatures are usually on the index: a platform manifest it lists inherits its facts.
    if (input.parent !== undefined) return { ...input.parent.facts, inheritedFrom: input.parent.digest }
    return this.#deps.signatures.factsFor(input.repo, input.digest)
  }
}

type PolicyOutcome = 'passed' | 'waived' | 'warned' | 'denied'
const OUTCOME_RANK: Record<PolicyOutcome, number> = { passed: 0, waived: 1, warned: 2, denied: 3 }

/** Each matching policy's outcome: its worst rule (a waived failure counts as waived). */
function policyOutcomes(decision: Decision): Map<string, PolicyOutcome> {
  const outcomes = new Map<string, PolicyOutcome>(decision.policies.map((p) => [p, 'passed']))
  for (const rule of decision.rules) {
    const outcome: PolicyOutcome = rule.passed ? 'passed' : rule.waivedBy !== undefined ? 'waived' : rule.mode === 'enforce' ? 'denied' : 'warned'
    const before = outcomes.get(rule.policy)
    if (before === undefined || OUTCOME_RANK[outcome] > OUTCOME_RANK[before]) outcomes.set(rule.policy, outcome)
  }
  return outcomes
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
