// The decisions of the audit log as candidates for a policy dry run: every (repository, digest,
// tag) pulled since a time, each once. The cache inventory alone misses what was pulled by a tag
// a tag-scoped policy looks at; the decisions remember the tag each pull asked for.

import { isDigest } from '../oci/digest.js'
import type { DiffCandidate } from '../policy/diff.js'
import type { AuditStore } from './store.js'

/** How many decision entries one dry run reads at most, newest first. */
export const DECISIONS_SCAN_MAX = 100_000
const PAGE = 500

export async function* decisionCandidates(store: AuditStore, since: number, max = DECISIONS_SCAN_MAX): AsyncIterable<DiffCandidate> {
  const seen = new Set<string>()
  let before: number | undefined
  let read = 0
  do {
    const page = await store.list({
      limit: PAGE,
      since,
      match: (entry) => entry.event.type === 'decision',
      ...(before !== undefined ? { before } : {}),
    })
    for (const { event } of page.entries) {
      read++
      const { upstream, repository, digest, reference } = event
      if (upstream === undefined || repository === undefined || digest === undefined || !isDigest(digest)) continue
      const tag = reference !== undefined && reference !== digest && !isDigest(reference) ? reference : undefined
      const id = `${upstream}\u0000${repository}\u0000${digest}\u0000${tag ?? ''}`
      if (seen.has(id)) continue
      seen.add(id)
      yield { repo: { upstream, repository }, digest, ...(tag !== undefined ? { tag } : {}) }
    }
    before = page.next
  } while (before !== undefined && read < max)
}
