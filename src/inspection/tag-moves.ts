// Tag moves: when a tag that pointed at one digest now points at another, who signed each is
// compared. A move to a digest that the previous signers no longer vouch for (another identity, or
// no signature at all) is what a hijacked publishing pipeline looks like; it is always announced
// and counted, and a policy may make it a detention. Pure functions over recorded facts.

import type { Digest } from '../oci/digest.js'
import { matches } from '../policy/evaluate.js'
import type { PolicySet } from '../policy/types.js'
import type { RepoKey } from '../state/store.js'
import type { SignatureFact, VerificationFacts } from '../verify/facts.js'

/**
 * - `signer-changed`: the new digest is signed, but not by every identity that signed the previous.
 * - `signature-lost`: the previous digest had a verified signature, the new one has none.
 * - `none`: the same signers (or more), a first signature, or unsigned to unsigned.
 */
export type TagMoveChange = 'signer-changed' | 'signature-lost' | 'none'

export interface TagMoveFinding {
  readonly change: TagMoveChange
  /** The verified signer identities of each digest, sorted. */
  readonly previousSigners: readonly string[]
  readonly newSigners: readonly string[]
}

/**
 * The identity a verified signature names: `key:<name>` for a keyed one, `<subject> (<issuer>)`
 * for a keyless one. Attestations are left out: a tag's signers are who signed the image.
 */
export function signerOf(fact: SignatureFact): string | undefined {
  if (!fact.verified) return undefined
  if (fact.kind === 'keyed' && fact.key !== undefined) return `key:${fact.key}`
  if (fact.identity !== undefined) return `${fact.identity.subject} (${fact.identity.issuer ?? 'no issuer'})`
  return undefined
}

/** The distinct verified signers of a manifest's facts, sorted; none without facts. */
export function signersOf(facts: VerificationFacts | undefined): string[] {
  const out = new Set<string>()
  for (const fact of facts?.signatures ?? []) {
    const signer = signerOf(fact)
    if (signer !== undefined) out.add(signer)
  }
  return [...out].sort()
}

export function classifyTagMove(previous: VerificationFacts | undefined, next: VerificationFacts | undefined): TagMoveFinding {
  const previousSigners = signersOf(previous)
  const newSigners = signersOf(next)
  let change: TagMoveChange = 'none'
  if (previousSigners.length > 0 && newSigners.length === 0) change = 'signature-lost'
  else if (newSigners.length > 0 && previousSigners.some((s) => !newSigners.includes(s))) change = 'signer-changed'
  return { change, previousSigners, newSigners }
}

/** The enforcing policies matching this tag that make a signer change a detention, by name. */
export function detainingPolicies(set: PolicySet, repo: RepoKey, tag: string): string[] {
  const input = { upstream: repo.upstream, repository: repo.repository, tag }
  return set.policies
    .filter((p) => p.mode === 'enforce' && p.tagMoves?.signerChange === 'detain' && p.match.some((m) => matches(m, input)))
    .map((p) => p.name)
}

/** The denial reason of a detained move, naming the tag, both digests and both sets of signers. */
export function tagMoveReason(repo: RepoKey, tag: string, from: Digest, to: Digest, finding: TagMoveFinding, policies: readonly string[]): string {
  const signers = (list: readonly string[]): string => (list.length === 0 ? 'unsigned' : `signed by ${list.join(', ')}`)
  const what = finding.change === 'signature-lost' ? 'the signature was lost' : 'the signer changed'
  const by = policies.map((p) => `'${p}'`).join(', ')
  return (
    `tag ${repo.upstream}/${repo.repository}:${tag} moved from ${from} (${signers(finding.previousSigners)}) ` +
    `to ${to} (${signers(finding.newSigners)}): ${what}; policy ${by} detains such moves (tagMoves.signerChange: detain) ` +
    'until the new digest is released'
  )
}
