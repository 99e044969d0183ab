// Resolving the quarantine record of content the policies clear again. A digest once detained,
// revoked, released or purged that its own verdict now clears (a re-evaluation, or an inspection
// under a newer revision) is served: its record must say so, and the security team hear of it,
// or the console, the CLI and the audit log go on calling detained what is being served.

import type { EventBus } from '../audit/events.js'
import type { Logger } from '../observability/logger.js'
import type { Digest } from '../oci/digest.js'
import type { ManifestRecord, QuarantineState, RepoKey, StateStore, Verdict } from '../state/store.js'

export interface ClearanceDeps {
  readonly state: StateStore
  readonly events: EventBus
  readonly logger: Logger
}

/**
 * Marks `cleared` the quarantine record, if any, of a digest whose own verdict (not a release,
 * not a tag's) clears it under `verdict.revision`, and announces the change (`clearance`).
 * `before` is the digest's manifest record before this verdict, null when there was none.
 * Callers run it before recording the verdict that admits the digest: should it fail, that
 * verdict is not recorded either and the next inspection or walk tries both again, whereas the
 * other order would leave the digest served under a record that says detained, with nothing left
 * to retry it.
 */
export async function clearQuarantine(
  deps: ClearanceDeps,
  repo: RepoKey,
  digest: Digest,
  verdict: Pick<Verdict, 'outcome' | 'reasons' | 'revision'>,
  before: ManifestRecord | null
): Promise<void> {
  if (verdict.outcome === 'detained') throw new Error('clearQuarantine takes a verdict that clears')
  const from = endable(before)
  const clearance = { revision: verdict.revision, at: Date.now(), ...(from !== undefined ? { from } : {}) }
  const { previous } = await deps.state.markCleared(repo, digest, clearance)
  if (previous === null) return
  const { upstream, repository } = repo
  deps.events.emit({
    type: 'clearance',
    upstream,
    repository,
    digest,
    revision: verdict.revision,
    verdict: verdict.outcome,
    ...(verdict.reasons.length > 0 ? { reasons: verdict.reasons } : {}),
    detail: { previous },
  })
  deps.logger.info({ upstream, repository, digest, previous, revision: verdict.revision }, 'quarantined content cleared by the policies in force')
}

/**
 * The record states a clearance may end, from what the digest's own verdict was before: any of
 * them (undefined) when it was refused on its own (admitted only by a release or a tag) or never
 * judged; only `revoked` when it was cleared already. Then a `detained` record comes from pulls a
 * tag rule refused (a banned `latest`): those refusals still hold, and resolving it would only
 * flip it back at the next one.
 * A `revoked` record is Customs' word that the digest itself was detained: always resolved, which
 * also mends records left revoked while their content was served.
 */
function endable(before: ManifestRecord | null): readonly QuarantineState[] | undefined {
  if (before === null) return undefined
  const { outcome, detainedFor, admittedByTags } = before.verdict
  const refusedOnItsOwn = outcome === 'detained' || detainedFor !== undefined || admittedByTags !== undefined
  return refusedOnItsOwn ? undefined : ['revoked']
}
