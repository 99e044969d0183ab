// Re-evaluation of the cache: when the policy set or the trust configuration changes, every
// manifest recorded under another revision is judged again in the background, so that content
// the new rules refuse stops being served now rather than at its next pull. What now fails is
// detained (its blobs refused) and its quarantine record says `revoked`; what now passes is
// cleared and linked, and a quarantine record it has says `cleared`. One walk at a time per
// process, and across replicas through a lock.

import type { EventBus } from '../audit/events.js'
import type { Logger } from '../observability/logger.js'
import type { Digest } from '../oci/digest.js'
import { judgeRecord } from './judge.js'
import type { PolicyEngine } from '../policy/engine.js'
import type { PolicySet } from '../policy/types.js'
import { effectiveState, type ManifestRecord, type RepoKey, type StateStore, type Verdict } from '../state/store.js'
import { clearQuarantine } from './clearance.js'
import { mapInLanes } from '../concurrency.js'
import type { ManifestService } from './manifests.js'

export interface ReevaluationDeps {
  readonly state: StateStore
  readonly policies: PolicyEngine
  /** The policy and trust revision in force (Inspector.revision). */
  readonly revision: () => string
  readonly manifests: ManifestService
  readonly events: EventBus
  readonly logger: Logger
  /** How long the cross-replica lock lasts without renewal (config state.lockTtl). */
  readonly lockTtl: number
  /** How many manifests are judged at once (default REEVALUATION_CONCURRENCY). */
  readonly concurrency?: number
}

export type ReevaluationState = 'idle' | 'running' | 'finished' | 'failed' | 'skipped'

export interface ReevaluationProgress {
  readonly state: ReevaluationState
  /** Manifest records met so far; final once the walk is over (a scan has no count upfront). */
  readonly total: number
  readonly done: number
  /** Detained before, cleared now. */
  readonly cleared: number
  /** Cleared before, detained now (`revoked`). */
  readonly detained: number
  readonly unchanged: number
  readonly errors: number
  /** The revision judged under. */
  readonly revision: string
  readonly startedAt?: string
  readonly finishedAt?: string
  /** Who or what asked: `reload`, `start`, or an admin token's name. */
  readonly trigger?: string
  /** Why the job failed or was skipped. */
  readonly error?: string
}

/** Manifests judged at once: re-inspection fetches from upstreams, which must not be flooded. */
export const REEVALUATION_CONCURRENCY = 4
/** Records asked of the state store per page. */
const PAGE = 200
const LOCK = 'reevaluation'

type Change = 'cleared' | 'detained' | 'unchanged'

export class Reevaluator {
  readonly #deps: ReevaluationDeps
  #progress: ReevaluationProgress
  #running: Promise<void> | undefined
  /** A trigger during a walk: the revision may have moved again, so walk once more after it. */
  #again: string | undefined
  #closed = false

  constructor(deps: ReevaluationDeps) {
    this.#deps = deps
    this.#progress = { state: 'idle', total: 0, done: 0, cleared: 0, detained: 0, unchanged: 0, errors: 0, revision: deps.revision() }
  }

  current(): ReevaluationProgress {
    return this.#progress
  }

  /**
   * Starts a walk in the background unless one runs here (then one more is queued after it).
   * Returns whether this call started one.
   */
  start(trigger: string): boolean {
    if (this.#closed) return false
    if (this.#running !== undefined) {
      this.#again = trigger
      return false
    }
    this.#running = this.#loop(trigger).finally(() => (this.#running = undefined))
    return true
  }

  /** Resolves when no walk runs (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.#running !== undefined) await this.#running
  }

  async close(): Promise<void> {
    this.#closed = true
    await this.idle()
  }

  async #loop(trigger: string): Promise<void> {
    let next: string | undefined = trigger
    while (next !== undefined && !this.#closed) {
      this.#again = undefined
      await this.#walkLocked(next)
      next = this.#again
    }
  }

  async #walkLocked(trigger: string): Promise<void> {
    const { state, logger, lockTtl } = this.#deps
    // Read together: the walk judges by the very set its revision names, even if a reload lands
    // while the lock is taken (that reload queues the next walk).
    const revision = this.#deps.revision()
    const set = this.#deps.policies.current()
    const startedAt = new Date().toISOString()
    this.#progress = { state: 'running', total: 0, done: 0, cleared: 0, detained: 0, unchanged: 0, errors: 0, revision, startedAt, trigger }
    let token: string | null
    try {
      token = await state.acquireLock(LOCK, lockTtl)
    } catch (err) {
      this.#finish('failed', (err as Error).message)
      return
    }
    if (token === null) {
      // Another replica walks the same state; its verdicts are every replica's.
      this.#finish('skipped', 'another replica is re-evaluating')
      return
    }
    const renew = setInterval(() => {
      void state.renewLock(LOCK, token, lockTtl).catch(() => undefined)
    }, Math.max(100, Math.floor(lockTtl / 3)))
    renew.unref()
    this.#deps.events.emit({ type: 'reevaluation', action: 'reevaluate', revision, detail: { phase: 'started', trigger } })
    logger.info({ revision, trigger }, 're-evaluation started')
    try {
      await this.#walk(revision, set)
      this.#finish('finished')
    } catch (err) {
      this.#finish('failed', (err as Error).message)
    } finally {
      clearInterval(renew)
      await state.releaseLock(LOCK, token).catch(() => undefined)
    }
    const p = this.#progress
    const counts = { total: p.total, cleared: p.cleared, detained: p.detained, unchanged: p.unchanged, errors: p.errors }
    this.#deps.events.emit({ type: 'reevaluation', action: 'reevaluate', revision, detail: { phase: p.state, trigger, ...counts, ...(p.error !== undefined ? { error: p.error } : {}) } })
    logger.info({ revision, trigger, state: p.state, ...counts, ...(p.error !== undefined ? { err: p.error } : {}) }, 're-evaluation ended')
  }

  #finish(state: ReevaluationState, error?: string): void {
    this.#progress = { ...this.#progress, state, finishedAt: new Date().toISOString(), ...(error !== undefined ? { error } : {}) }
  }

  #count(change: Change | 'error'): void {
    const p = this.#progress
    this.#progress = {
      ...p,
      done: p.done + 1,
      ...(change === 'error' ? { errors: p.errors + 1 } : { [change]: p[change] + 1 }),
    }
  }

  async #walk(revision: string, set: PolicySet): Promise<void> {
    const seen = new Set<string>()
    let after: string | undefined
    do {
      if (this.#closed) throw new Error('shutting down')
      const page = await this.#deps.state.listManifests({ limit: PAGE, ...(after !== undefined ? { after } : {}) })
      const fresh = page.entries.filter(({ repo, record }) => {
        const id = `${repo.upstream}\u0000${repo.repository}\u0000${record.digest}`
        if (seen.has(id)) return false
        seen.add(id)
        return true
      })
      this.#progress = { ...this.#progress, total: this.#progress.total + fresh.length }
      await mapInLanes(fresh, this.#deps.concurrency ?? REEVALUATION_CONCURRENCY, async ({ repo, record }) => {
        // Shutting down: the rest is left to the next walk (their revision is still the old one).
        if (this.#closed) return
        try {
          this.#count(await this.#judge(repo, record, revision, set))
        } catch (err) {
          this.#count('error')
          this.#deps.logger.warn({ upstream: repo.upstream, repository: repo.repository, digest: record.digest, err: (err as Error).message }, 'failed to re-evaluate a manifest')
        }
      })
      after = page.next
    } while (after !== undefined)
  }

  /** Judges one record again under `revision` and records the outcome. */
  async #judge(repo: RepoKey, record: ManifestRecord, revision: string, set: PolicySet): Promise<Change> {
    if (record.verdict.revision === revision) return 'unchanged'
    // No facts: a signature or attestation read (never judged) or an image read as one; the
    // pull path judges those again when they are next read.
    if (record.facts === undefined) return 'unchanged'
    // Held for a detained index: the pull path judges the index first, then the child.
    if (record.verdict.detainedByIndex !== undefined) return 'unchanged'
    const wasAdmitted = record.verdict.outcome !== 'detained'
    if (!sameTrust(record.verdict.revision, revision)) return this.#reinspect(repo, record, wasAdmitted, set)
    if (record.image === undefined) return 'unchanged'
    const { state, manifests } = this.#deps
    const decision = judgeRecord(set, repo, record, record.image)
    const own: Verdict = { outcome: decision.outcome, reasons: decision.reasons, revision, decidedAt: Date.now() }
    const empty = { blobs: [], children: [] }
    // Cleared on its own: the record follows (clearance.ts says which states it may end), before
    // the verdict is recorded.
    if (own.outcome !== 'detained') await clearQuarantine(this.#deps, repo, record.digest, own, record)
    // Admitted by tags, not by its digest: judged by those tags, as their pulls would be.
    const verdict = own.outcome === 'detained' && wasAdmitted ? (byTags(set, repo, record, revision) ?? own) : own
    if (record.verdict.detainedFor !== undefined) {
      // Admitted by a person's release: the release decides while it holds, not the policies.
      if (verdict.outcome !== 'detained') await state.recordManifest(repo, { ...record, verdict }, empty)
      else await state.recordManifest(repo, { ...record, verdict: { ...record.verdict, revision, detainedFor: verdict.reasons } }, empty)
      return 'unchanged'
    }
    if (wasAdmitted && verdict.outcome === 'detained') {
      await state.detainManifest(repo, { ...record, verdict })
      // An index's verdict covers its children: none may then be served by digest on its own.
      await manifests.holdChildren(repo, { ...record, verdict })
      await this.#revoked(repo, record.digest, verdict)
      return 'detained'
    }
    if (!wasAdmitted && verdict.outcome !== 'detained') {
      await manifests.admitRecord(repo, record, { outcome: verdict.outcome, reasons: verdict.reasons, revision })
      return 'cleared'
    }
    // Same side of the gate: only the revision (and reasons) move; the links stay as they are.
    await state.recordManifest(repo, { ...record, verdict }, empty)
    return 'unchanged'
  }

  /** The trust changed: facts are stale, so the manifest is inspected again (I/O). */
  async #reinspect(repo: RepoKey, before: ManifestRecord, wasAdmitted: boolean, set: PolicySet): Promise<Change> {
    const after = await this.#deps.manifests.reinspect(repo, before.digest)
    let isAdmitted = after.verdict.outcome !== 'detained'
    if (wasAdmitted && !isAdmitted && before.verdict.admittedByTags !== undefined) {
      // Re-inspection records the digest's own verdict; a tag that still admits it, judged on the
      // new facts, admits it again.
      const tagged = byTags(set, repo, { ...after, verdict: { ...after.verdict, admittedByTags: before.verdict.admittedByTags } }, after.verdict.revision)
      if (tagged !== undefined) {
        await this.#deps.manifests.admitRecord(repo, after, tagged)
        isAdmitted = true
      }
    }
    if (before.verdict.detainedFor !== undefined && !isAdmitted) {
      // Re-inspection records the digest's own verdict; a release that still holds admits it again.
      const quarantine = await this.#deps.state.getQuarantine(repo, before.digest)
      if (quarantine !== null && effectiveState(quarantine, Date.now()) === 'released') {
        await this.#deps.manifests.admitRecord(repo, after, { outcome: before.verdict.outcome, reasons: before.verdict.reasons, detainedFor: after.verdict.reasons })
        return 'unchanged'
      }
    }
    if (wasAdmitted && !isAdmitted) {
      await this.#revoked(repo, before.digest, after.verdict)
      return 'detained'
    }
    if (!wasAdmitted && isAdmitted) return 'cleared'
    return 'unchanged'
  }

  async #revoked(repo: RepoKey, digest: Digest, verdict: Verdict): Promise<void> {
    const { upstream, repository } = repo
    await this.#deps.state.markRevoked(repo, digest, { reasons: verdict.reasons, revision: verdict.revision, at: Date.now() })
    this.#deps.events.emit({ type: 'revocation', upstream, repository, digest, revision: verdict.revision, verdict: 'detained', reasons: verdict.reasons })
    this.#deps.logger.warn({ upstream, repository, digest, reasons: verdict.reasons }, 'cleared content detained by re-evaluation')
  }
}

/**
 * Whether two revisions (`builtin:trust:policies`, Inspector.revision) share their trust part:
 * then only the policies moved and the recorded facts still hold.
 */
export function sameTrust(a: string, b: string): boolean {
  const cut = (r: string): string => r.slice(0, r.lastIndexOf(':'))
  return a.includes(':') && cut(a) === cut(b)
}

/**
 * The verdict of a record detained on its own but admitted by tags (`admittedByTags`), judged by
 * each of them from the recorded facts as a pull by that tag would be: admitted by those that
 * still admit it, with the first one's reasons; undefined when none does (or it has no tags).
 */
function byTags(set: PolicySet, repo: RepoKey, record: ManifestRecord, revision: string): Verdict | undefined {
  const tags = record.verdict.admittedByTags
  const image = record.image
  if (tags === undefined || image === undefined) return undefined
  let first: Pick<Verdict, 'outcome' | 'reasons'> | undefined
  const admitting: string[] = []
  for (const tag of tags) {
    const decision = judgeRecord(set, repo, record, image, tag)
    if (decision.outcome === 'detained') continue
    first ??= decision
    admitting.push(tag)
  }
  if (first === undefined) return undefined
  return { outcome: first.outcome, reasons: first.reasons, revision, decidedAt: Date.now(), admittedByTags: admitting }
}
