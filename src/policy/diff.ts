// The dry run of a policy set: what would change if it were in force, judged over what Customs
// already knows (every manifest record, with its recorded facts) without changing anything.
// Candidates come from the cache inventory; another source of (repository, digest, tag) — the
// decisions of the audit log — can be passed in beside it.

import type { Digest } from '../oci/digest.js'
import type { ManifestRecord, RepoKey, StateStore, VerdictOutcome } from '../state/store.js'
import { evaluate } from './evaluate.js'
import type { PolicySet } from './types.js'

export interface DiffCandidate {
  readonly repo: RepoKey
  readonly digest: Digest
  /** The tag it was pulled by, when known: tag-scoped policies then see it. */
  readonly tag?: string
}

export interface DiffChange {
  readonly upstream: string
  readonly repository: string
  readonly digest: Digest
  /** The tags it is known by (tag resolutions in state, and the candidate's own). */
  readonly tags: string[]
  readonly before: VerdictOutcome
  readonly after: VerdictOutcome
  /** Why it would be detained or warned about under the candidate set. */
  readonly reasons: readonly string[]
}

export interface PolicyDiff {
  readonly current: string
  readonly candidate: string
  /** Manifests judged (those with recorded facts). */
  readonly judged: number
  readonly changes: DiffChange[]
  /** More changes than `limit`: the list stops there. */
  readonly truncated: boolean
}

/** The most changes a diff lists. */
export const DIFF_CHANGES_MAX = 1000
/** The most tags listed per digest. */
const TAGS_PER_DIGEST = 20
const PAGE = 500

/**
 * Judges every manifest record (and every extra candidate) under both sets, from the recorded
 * facts, and lists those whose outcome differs. Records without facts (signatures and
 * attestations, never judged) are left out. Reads state only.
 */
export async function diffPolicies(
  state: StateStore,
  current: PolicySet,
  candidate: PolicySet,
  extra?: AsyncIterable<DiffCandidate>,
  limit = DIFF_CHANGES_MAX
): Promise<PolicyDiff> {
  const tags = await knownTags(state)
  const changes: DiffChange[] = []
  const seen = new Set<string>()
  let judged = 0
  let truncated = false
  const judge = (repo: RepoKey, record: ManifestRecord, tag?: string): void => {
    const id = `${repo.upstream}\u0000${repo.repository}\u0000${record.digest}\u0000${tag ?? ''}`
    // Children held for a detained index follow their index, which is judged itself.
    if (seen.has(id) || record.facts === undefined || record.image === undefined || record.verdict.detainedByIndex !== undefined) return
    seen.add(id)
    judged++
    const input = {
      upstream: repo.upstream,
      repository: repo.repository,
      digest: record.digest,
      image: record.image,
      verification: record.facts,
      ...(tag !== undefined ? { tag } : {}),
    }
    const before = evaluate(current, input)
    const after = evaluate(candidate, input)
    if (before.outcome === after.outcome) return
    if (changes.length >= limit) {
      truncated = true
      return
    }
    const known = tags.get(`${repo.upstream}\u0000${repo.repository}\u0000${record.digest}`) ?? []
    const all = tag === undefined || known.includes(tag) ? known : [tag, ...known]
    changes.push({
      upstream: repo.upstream,
      repository: repo.repository,
      digest: record.digest,
      tags: all.slice(0, TAGS_PER_DIGEST),
      before: before.outcome,
      after: after.outcome,
      reasons: after.outcome === 'cleared' ? before.reasons : after.reasons,
    })
  }
  let after: string | undefined
  do {
    const page = await state.listManifests({ limit: PAGE, ...(after !== undefined ? { after } : {}) })
    for (const { repo, record } of page.entries) judge(repo, record)
    after = page.next
  } while (after !== undefined)
  if (extra !== undefined) {
    for await (const c of extra) {
      const record = await state.getManifest(c.repo, c.digest)
      if (record !== null) judge(c.repo, record, c.tag)
    }
  }
  return { current: current.revision, candidate: candidate.revision, judged, changes, truncated }
}

/** (upstream, repository, digest) -> the tags resolving to it, from state. */
async function knownTags(state: StateStore): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>()
  let after: string | undefined
  do {
    const page = await state.listTags({ limit: PAGE, ...(after !== undefined ? { after } : {}) })
    for (const { repo, tag, record } of page.entries) {
      const id = `${repo.upstream}\u0000${repo.repository}\u0000${record.digest}`
      const list = out.get(id) ?? []
      if (!list.includes(tag) && list.length < TAGS_PER_DIGEST) list.push(tag)
      out.set(id, list)
    }
    after = page.next
  } while (after !== undefined)
  return out
}
