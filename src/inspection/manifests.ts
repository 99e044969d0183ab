// The pull-through path of one manifest: resolve the tag, inspect the digest, record the verdict,
// serve or deny (DESIGN steps 2-4). A tag mapping is recorded only after its digest was cleared;
// a stale mapping is served only when the upstream fails and its digest is cleared now.

import type { EventBus } from '../audit/events.js'
import type { UpstreamConfig } from '../config/schema.js'
import { CustomsError, isCustomsError } from '../errors.js'
import type { Logger } from '../observability/logger.js'
import type { Metrics } from '../observability/metrics.js'
import { digestOf, isDigest, type Digest } from '../oci/digest.js'
import { Header, UPSTREAM_MANIFEST_ACCEPT, acceptsMediaType } from '../oci/media-types.js'
import { MAX_MANIFEST_BYTES, parseManifest, referencedBlobs, type Descriptor } from '../oci/manifest.js'
import type { Reference } from '../oci/reference.js'
import type { BlobStore } from '../cache/blob-store.js'
import type { ManifestMemory } from '../cache/manifest-memory.js'
import {
  effectiveState,
  type ManifestRecord,
  type QuarantineClient,
  type QuarantineRecord,
  type RepoKey,
  type StateStore,
  type TagRecord,
  type Verdict,
} from '../state/store.js'
import type { PolicyEngine } from '../policy/engine.js'
import type { PolicySet } from '../policy/types.js'
import { readBounded } from '../upstream/auth.js'
import { statusError } from '../upstream/client.js'
import type { UpstreamPool } from '../upstream/pool.js'
import type { Inspector } from './inspector.js'
import type { VerificationFacts } from '../verify/facts.js'
import { SingleFlight } from './single-flight.js'
import { judgeRecord } from './judge.js'
import { detainUnreleased } from './detain.js'
import { clearQuarantine } from './clearance.js'
import { classifyTagMove, detainingPolicies, tagMoveReason, type TagMoveFinding } from './tag-moves.js'

export interface ManifestRequest {
  readonly repo: RepoKey
  readonly reference: Reference
  readonly method: 'GET' | 'HEAD'
  /** The client's Accept header. */
  readonly accept: string | null
  /** Read as another manifest's signature or attestation: not itself searched for signatures. */
  readonly artifact?: boolean
  /** Who asks, as the HTTP layer saw it: kept in the quarantine record when the pull is denied. */
  readonly client?: QuarantineClient
}

export interface ManifestAnswer {
  readonly digest: Digest
  readonly mediaType: string
  readonly size: number
  /** cleared, or cleared-with-warnings when an audit-mode policy would have denied. */
  readonly verdict: string
  /** The exact bytes, for GET. */
  readonly bytes?: Buffer
  /** Why the answer is stale, when it is: a stale tag mapping, or the upstream failing now. */
  readonly stale?: string
}

export interface ManifestServiceDeps {
  readonly upstreams: UpstreamPool
  readonly upstreamConfig: (name: string) => UpstreamConfig
  readonly state: StateStore
  readonly blobs: BlobStore
  readonly memory: ManifestMemory
  readonly inspector: Inspector
  readonly policies: PolicyEngine
  readonly metrics: Metrics
  readonly logger: Logger
  /** Where decisions and detentions are announced (audit log, webhooks). */
  readonly events: EventBus
  /**
   * Told when an inspection recorded a verdict reached under a revision no longer in force: a
   * reload landed while it ran, and the walk that reload started may have passed this digest
   * already, leaving its blob gate as the old policies set it. Services queue another walk.
   */
  readonly staleRecorded?: () => void
}

/** Tag-level decisions remembered per (digest, tag, revision); cleared wholesale when full. */
const TAG_DECISIONS_MAX = 10_000

/** A tag move a policy detains: the tag keeps its old digest until the new one is released. */
interface HeldMove {
  readonly tag: string
  readonly from: Digest
  readonly finding: TagMoveFinding
  readonly reason: string
}

interface Resolution {
  readonly digest: Digest
  readonly stale?: string
  readonly held?: HeldMove
}

/** Upstream failures after which the last cleared tag mapping may be served. */
const STALE_OK = new Set(['UPSTREAM_UNAVAILABLE', 'TOOMANYREQUESTS', 'UPSTREAM_INVALID'])

export class ManifestService {
  readonly #deps: ManifestServiceDeps
  readonly #inspections = new SingleFlight<ManifestRecord>()
  readonly #resolutions = new SingleFlight<Resolution>()
  readonly #tagDecisions = new Map<string, Pick<Verdict, 'outcome' | 'reasons'>>()

  constructor(deps: ManifestServiceDeps) {
    this.#deps = deps
  }

  /** Callers waiting on an inspection or a tag resolution another caller started (metrics). */
  waiters(): { inspection: number; resolution: number } {
    return { inspection: this.#inspections.waiters, resolution: this.#resolutions.waiters }
  }

  async get(req: ManifestRequest): Promise<ManifestAnswer> {
    // The warm path reads state here rather than through a resolve layer and #inspected: each async
    // layer is a promise and a microtask more on every pull, and these answer most of them.
    let resolution: Resolution | undefined
    if (req.reference.kind === 'digest') resolution = { digest: req.reference.digest }
    else {
      resolution = this.#freshTag(req.repo, await this.#deps.state.getTag(req.repo, req.reference.tag))
      resolution ??= await this.#revalidated(req.repo, req.reference.tag, req.artifact === true)
    }
    const { digest, stale, held } = resolution
    const known = await this.#deps.state.getManifest(req.repo, digest)
    const record = known !== null && this.#fresh(known) ? known : await this.#inspected(req.repo, digest, req.artifact === true, known)
    let verdict = this.#decide(req, record)
    // A policy detains this tag's move to another signer: refused like a detained digest.
    if (held !== undefined && verdict.outcome !== 'detained') verdict = { outcome: 'detained', reasons: [held.reason] }
    // A tag-scoped policy admitted what the digest alone did not: open the gate for its blobs, and
    // keep the tag, by which a re-evaluation judges the record again rather than by its digest.
    // Most pulls change nothing here: no await for them, every pull passes this way.
    const admission = verdict.outcome !== 'detained' ? this.#admissionByTag(req, record, verdict) : undefined
    if (admission !== undefined) await this.#admit(req.repo, record, admission)
    if (verdict.outcome === 'detained' && req.artifact !== true) {
      // A person may have released this digest: served with a warning while the release holds.
      // A child detained for its index is released with the index.
      const byIndex = record.verdict.detainedByIndex
      const release = (await this.#release(req.repo, digest)) ?? (byIndex !== undefined ? await this.#release(req.repo, byIndex) : null)
      if (release !== null) {
        const detainedFor = record.verdict.detainedFor ?? verdict.reasons
        verdict = { outcome: 'cleared-with-warnings', reasons: [release] }
        if (record.verdict.outcome === 'detained') await this.#admit(req.repo, record, { ...verdict, detainedFor })
      }
    }
    // A person released the digest a held move goes to: the move is accepted and recorded now.
    if (held !== undefined && verdict.outcome !== 'detained') await this.#recordTag(req.repo, held.tag, record, false)
    this.#announce(req, record, verdict)
    // Admitted only by a release that no longer holds (expired): close the gate of its blobs too.
    // Best effort, like the quarantine record: a state failure must not turn the 403 into a 503.
    if (verdict.outcome === 'detained' && record.verdict.detainedFor !== undefined && req.artifact !== true) {
      await detainUnreleased(this.#deps.state, req.repo, digest).catch((err: unknown) => {
        const fields = { upstream: req.repo.upstream, repository: req.repo.repository, digest, err: (err as Error).message }
        this.#deps.logger.warn(fields, 'failed to close the blob gate of an ended release')
      })
    }
    if (verdict.outcome === 'detained') {
      const created = await this.#recordDetention(req, digest, verdict.reasons, record.verdict.revision)
      if (held !== undefined && created) await this.#announceMove(req.repo, held.tag, held.from, record, 'detained', held.finding)
      const asked = req.reference.kind === 'tag' ? `${req.repo.upstream}/${req.repo.repository}:${req.reference.tag} (${digest})` : describe(req.repo, digest)
      throw new CustomsError('DENIED', `${asked} is denied: ${verdict.reasons.join('; ')}`, {
        detail: { digest, reasons: verdict.reasons },
      })
    }
    if (!acceptsMediaType(req.accept, record.mediaType)) {
      // Never converted: conversion changes the digest and breaks signatures (PROTOCOL §1.4).
      throw new CustomsError('MANIFEST_UNKNOWN', `${describe(req.repo, digest)} is a ${record.mediaType}, which the client does not accept`)
    }
    // Served from what was verified before, while the upstream is failing: say so (DESIGN step 2).
    const staleness = stale ?? this.#deps.upstreams.staleness(req.repo.upstream)
    const bytes = req.method === 'HEAD' ? undefined : (this.#deps.memory.get(digest) ?? (await this.#bytes(req.repo, record)))
    // One literal, optional members last: V8 builds `{ ...answer, bytes }` on a slow path.
    return {
      digest,
      mediaType: record.mediaType,
      size: record.size,
      verdict: verdict.outcome,
      ...(bytes !== undefined ? { bytes } : {}),
      ...(staleness ? { stale: staleness } : {}),
    }
  }

  /**
   * The record under the revision in force, inspected again (I/O) when it was reached under
   * another one: re-evaluation's path when the trust configuration changed.
   */
  reinspect(repo: RepoKey, digest: Digest, artifact = false): Promise<ManifestRecord> {
    return this.#inspected(repo, digest, artifact)
  }

  /**
   * Holds the children of an index that a re-evaluation detained from its recorded facts, as an
   * inspection that detains an index does, so that none is served by digest on its own.
   */
  async holdChildren(repo: RepoKey, index: ManifestRecord): Promise<void> {
    if (index.verdict.outcome !== 'detained' || index.image?.kind !== 'index') return
    const manifest = parseManifest(await this.#bytes(repo, index), index.mediaType)
    if (manifest.kind === 'index') await this.#detainChildren(repo, index, manifest.manifests)
  }

  /** Records a detained manifest as admitted under `verdict`, opening the gate of its blobs. */
  admitRecord(repo: RepoKey, record: ManifestRecord, verdict: Admission): Promise<void> {
    return this.#admit(repo, record, verdict)
  }

  /**
   * The verdict for this request: the digest's own, unless a policy looks at tags (a banned
   * `latest`, tag-scoped matches), in which case it is evaluated again with the tag, from the
   * recorded facts, without I/O.
   */
  #decide(req: ManifestRequest, record: ManifestRecord): Pick<Verdict, 'outcome' | 'reasons'> {
    const own = ownVerdict(record)
    if (req.reference.kind !== 'tag' || req.artifact === true || record.image === undefined) return own
    const set = this.#deps.policies.current()
    if (!isTagSensitive(set)) return own
    // The set's own revision too: a record read just before a reload is judged by the new set.
    const key = `${req.repo.upstream} ${req.repo.repository} ${record.digest} ${req.reference.tag} ${record.verdict.revision} ${set.revision}`
    let decided = this.#tagDecisions.get(key)
    if (decided === undefined) {
      const decision = judgeRecord(set, req.repo, record, record.image, req.reference.tag)
      decided = { outcome: decision.outcome, reasons: decision.reasons }
      if (this.#tagDecisions.size >= TAG_DECISIONS_MAX) this.#tagDecisions.clear()
      this.#tagDecisions.set(key, decided)
      this.#report(req.repo, record.digest, decided, req.reference.tag)
    }
    return decided
  }

  /**
   * What to record when a pull's clearing `verdict` admits a digest detained on its own (a
   * tag-scoped policy admits it by the tag of `req`), or adds that tag to those that admit it
   * already; undefined when there is nothing to record.
   */
  #admissionByTag(req: ManifestRequest, record: ManifestRecord, verdict: Pick<Verdict, 'outcome' | 'reasons'>): Admission | undefined {
    const tags = record.verdict.admittedByTags
    if (req.reference.kind !== 'tag') return record.verdict.outcome === 'detained' ? verdict : undefined
    const tag = req.reference.tag
    if (record.verdict.outcome === 'detained') return { ...verdict, admittedByTags: [tag] }
    // Past the bound a tag is not remembered: a walk may then detain the digest, and the next
    // pull by that tag admits it again (fail closed, never open).
    if (tags !== undefined && !tags.includes(tag) && tags.length < MAX_ADMITTING_TAGS) {
      return { outcome: record.verdict.outcome, reasons: record.verdict.reasons, admittedByTags: [...tags, tag] }
    }
    return undefined
  }

  /**
   * Records a digest detained on its own as admitted, with its links, because a pull by tag
   * cleared it (a tag-scoped policy admits it) or a release holds: its blobs must then be served too.
   */
  async #admit(repo: RepoKey, record: ManifestRecord, verdict: Admission): Promise<void> {
    const bytes = await this.#bytes(repo, record)
    const manifest = parseManifest(bytes, record.mediaType)
    const links = manifest.kind === 'index'
      ? { blobs: [], children: manifest.manifests.map((d) => d.digest) }
      : { blobs: referencedBlobs(manifest).map((d) => ({ digest: d.digest, size: d.size })), children: [] }
    await this.#deps.state.recordManifest(repo, { ...record, verdict: { ...record.verdict, ...verdict, decidedAt: Date.now() } }, links)
  }

  /**
   * Why a detained digest is served anyway, when a release of it holds now; else null. A state
   * failure here denies the pull (fail closed): it is logged, not turned into a 503.
   */
  async #release(repo: RepoKey, digest: Digest): Promise<string | null> {
    let record: QuarantineRecord | null
    try {
      record = await this.#deps.state.getQuarantine(repo, digest)
    } catch (err) {
      const fields = { upstream: repo.upstream, repository: repo.repository, digest, err: (err as Error).message }
      this.#deps.logger.warn(fields, 'failed to read a quarantine record; denying')
      return null
    }
    const now = Date.now()
    const release = record?.release
    if (record === null || release === undefined || effectiveState(record, now) !== 'released') return null
    return `released by ${release.by} until ${new Date(release.expires).toISOString()}: ${release.reason}`
  }

  /**
   * One `decision` event per answered GET, and per denied HEAD (clients HEAD before each GET; the
   * GET is the pull). Internal reads of signatures and attestations are not pulls: not announced.
   */
  #announce(req: ManifestRequest, record: ManifestRecord, verdict: Pick<Verdict, 'outcome' | 'reasons'>): void {
    if (req.artifact === true || (req.method === 'HEAD' && verdict.outcome !== 'detained')) return
    this.#deps.events.emit({
      type: 'decision',
      upstream: req.repo.upstream,
      repository: req.repo.repository,
      reference: req.reference.kind === 'tag' ? req.reference.tag : req.reference.digest,
      digest: record.digest,
      revision: record.verdict.revision,
      verdict: verdict.outcome,
      reasons: verdict.reasons,
      ...(req.client !== undefined ? { client: req.client } : {}),
    })
  }

  /**
   * Best effort: a refused pull is put in the quarantine record, but a state failure here must
   * not turn the 403 into a 503. Internal reads of artifacts (signatures) are not pulls: skipped.
   */
  async #recordDetention(
    req: ManifestRequest,
    digest: Digest,
    reasons: readonly string[],
    revision: string
  ): Promise<boolean> {
    if (req.artifact === true) return false
    const reference = req.reference.kind === 'tag' ? req.reference.tag : req.reference.digest
    try {
      const { created, previous } = await this.#deps.state.recordDetention(req.repo, digest, {
        reference,
        reasons,
        revision,
        at: Date.now(),
        ...(req.client !== undefined ? { client: req.client } : {}),
      })
      // A new record, or one the refusal moved back to `detained`: announced, so that whoever
      // follows the record's state by events sees every change of it.
      if (created || previous !== null) {
        const { upstream, repository } = req.repo
        this.#deps.events.emit({
          type: 'detention',
          upstream,
          repository,
          reference,
          digest,
          revision,
          reasons,
          verdict: 'detained',
          ...(req.client !== undefined ? { client: req.client } : {}),
          ...(previous !== null ? { detail: { previous } } : {}),
        })
      }
      return created
    } catch (err) {
      const { upstream, repository } = req.repo
      const fields = { upstream, repository, digest, err: (err as Error).message }
      this.#deps.logger.warn(fields, 'failed to record a detention in quarantine')
      return false
    }
  }

  /** Logs and counts what policies decided (once per decision, not per request). */
  #report(repo: RepoKey, digest: Digest, verdict: Pick<Verdict, 'outcome' | 'reasons'>, tag?: string): void {
    if (verdict.outcome === 'cleared') return
    const fields = { upstream: repo.upstream, repository: repo.repository, digest, ...(tag ? { tag } : {}), reasons: verdict.reasons }
    if (verdict.outcome === 'detained') this.#deps.logger.warn(fields, 'image detained')
    else this.#deps.logger.info(fields, 'audit policy would deny image')
  }

  /**
   * tag -> digest when the mapping get() read was not fresh: a HEAD upstream, else the last
   * cleared one. The warm path of every pull by tag reads state without joining the single
   * flight: only a revalidation is worth sharing, and the run reads the mapping again when it
   * starts, so a caller that saw it stale just before another run recorded it does not ask
   * upstream again.
   */
  #revalidated(repo: RepoKey, tag: string, artifact: boolean): Promise<Resolution> {
    return this.#resolutions.run(`${repo.upstream} ${repo.repository} ${tag}`, () => this.#revalidate(repo, tag, artifact))
  }

  /**
   * A fresh mapping is used as it is: get() judges its digest under the revision in force right
   * after, so checking its record here too would only read state twice per pull.
   */
  #freshTag(repo: RepoKey, known: TagRecord | null): Resolution | undefined {
    const ttl = this.#deps.upstreamConfig(repo.upstream).tagTtl
    return known !== null && Date.now() - known.checkedAt < ttl ? { digest: known.digest } : undefined
  }

  /** The tag's digest asked of the upstream (HEAD), inspected and recorded; else the stale mapping. */
  async #revalidate(repo: RepoKey, tag: string, artifact: boolean): Promise<Resolution> {
    const known = await this.#deps.state.getTag(repo, tag)
    const fresh = this.#freshTag(repo, known)
    if (fresh !== undefined) return fresh
    let digest: Digest
    try {
      digest = await this.#headTag(repo, tag, artifact)
      await this.#inspected(repo, digest, artifact)
    } catch (err) {
      if (known !== null && isCustomsError(err) && STALE_OK.has(err.code) && (await this.#isCleared(repo, known.digest))) {
        this.#deps.metrics.staleServed.inc({ upstream: repo.upstream })
        this.#deps.logger.warn({ upstream: repo.upstream, repository: repo.repository, tag, err: err.message }, 'serving stale tag mapping')
        return { digest: known.digest, stale: `upstream failed: ${err.code}` }
      }
      throw err
    }
    const record = await this.#inspected(repo, digest, artifact)
    if (ownVerdict(record).outcome !== 'detained') {
      if (!artifact && known !== null && known.digest !== digest) {
        const held = await this.#heldMove(repo, tag, known.digest, record)
        if (held !== undefined) return { digest, held }
      }
      await this.#recordTag(repo, tag, record, artifact)
    }
    return { digest }
  }

  /**
   * The move of `tag` from `from` to the cleared `record`, when a policy in force detains it (an
   * enforcing policy with tagMoves.signerChange: detain, and the signers changed); else undefined.
   */
  async #heldMove(repo: RepoKey, tag: string, from: Digest, record: ManifestRecord): Promise<HeldMove | undefined> {
    const policies = detainingPolicies(this.#deps.policies.current(), repo, tag)
    if (policies.length === 0) return undefined
    // Not caught: a state failure fails the pull rather than letting a move through unjudged.
    const previous = await this.#deps.state.getManifest(repo, from)
    const finding = classifyTagMove(previous?.facts, record.facts)
    if (finding.change === 'none') return undefined
    return { tag, from, finding, reason: tagMoveReason(repo, tag, from, record.digest, finding, policies) }
  }

  /** Records tag -> the cleared record's digest; a move is logged, and announced unless an artifact's. */
  async #recordTag(repo: RepoKey, tag: string, record: ManifestRecord, artifact: boolean): Promise<void> {
    let previous: Digest | null
    try {
      ;({ previous } = await this.#deps.state.setTag(repo, tag, { digest: record.digest, checkedAt: Date.now() }))
    } catch (err) {
      // The digest is cleared (get() judges it again right after); only the record of the
      // mapping is lost while state is away: logged here, resolved again next time.
      if (!isCustomsError(err, 'STATE_UNAVAILABLE')) throw err
      this.#deps.logger.warn({ upstream: repo.upstream, repository: repo.repository, tag, digest: record.digest, err: err.message }, 'failed to record a tag mapping')
      return
    }
    if (previous === null) return
    this.#deps.logger.info({ upstream: repo.upstream, repository: repo.repository, tag, from: previous, to: record.digest }, 'tag moved upstream')
    if (!artifact) await this.#announceMove(repo, tag, previous, record, 'moved')
  }

  /**
   * One `tag-move` event and count per move recorded (`moved`), or per move a policy detained, at
   * its first refusal (`detained`). Best effort: a state failure here is logged, the pull goes on.
   */
  async #announceMove(repo: RepoKey, tag: string, from: Digest, record: ManifestRecord, outcome: 'moved' | 'detained', known?: TagMoveFinding): Promise<void> {
    const { upstream, repository } = repo
    let finding = known
    try {
      finding ??= classifyTagMove((await this.#deps.state.getManifest(repo, from))?.facts, record.facts)
    } catch (err) {
      this.#deps.logger.warn({ upstream, repository, tag, from, to: record.digest, err: (err as Error).message }, 'failed to compare the signers of a tag move')
      return
    }
    const { change, previousSigners, newSigners } = finding
    this.#deps.metrics.tagMoves.inc({ upstream, change })
    const fields = { upstream, repository, tag, from, to: record.digest, change, previousSigners, newSigners, outcome }
    if (change !== 'none') this.#deps.logger.warn(fields, 'tag moved to a digest its previous signers did not sign')
    this.#deps.events.emit({
      type: 'tag-move',
      upstream,
      repository,
      reference: tag,
      digest: record.digest,
      ...(outcome === 'detained' ? { verdict: 'detained' as const } : {}),
      detail: { tag, from, to: record.digest, previousSigners, newSigners, change, outcome },
    })
  }

  /** HEAD is free against Docker Hub's pull quota; GET only when HEAD gives no usable digest. */
  async #headTag(repo: RepoKey, tag: string, artifact: boolean): Promise<Digest> {
    const client = this.#deps.upstreams.get(repo.upstream)
    const path = `/v2/${repo.repository}/manifests/${tag}`
    const what = `${repo.upstream}/${repo.repository}:${tag}`
    const res = await client.send({ method: 'HEAD', path, repository: repo.repository, accept: UPSTREAM_MANIFEST_ACCEPT })
    if (!res.ok) throw await statusError(res, repo.upstream, what, 'MANIFEST_UNKNOWN')
    const header = res.headers.get(Header.CONTENT_DIGEST)
    if (header !== null && isDigest(header)) return header
    // Some registries omit the digest on HEAD: fetch by tag, and inspect those very bytes.
    const { bytes, mediaType } = await this.#fetch(repo, tag, what)
    const digest = digestOf(bytes)
    await this.#inspect(repo, digest, bytes, mediaType, artifact, artifact ? null : await this.#deps.state.getManifest(repo, digest))
    return digest
  }

  async #isCleared(repo: RepoKey, digest: Digest): Promise<boolean> {
    const record = await this.#deps.state.getManifest(repo, digest)
    return record !== null && ownVerdict(record).outcome !== 'detained' && record.verdict.revision === this.#deps.inspector.revision
  }

  /**
   * The record under the revision in force, inspecting (once, however many ask) when needed: never
   * seen, reached under another trust revision, or an empty signature search gone stale.
   */
  async #inspected(repo: RepoKey, digest: Digest, artifact = false, read?: ManifestRecord | null): Promise<ManifestRecord> {
    // `read`: the record the caller has just read from state, not fresh; not read again.
    const record = read !== undefined ? read : await this.#deps.state.getManifest(repo, digest)
    if (record !== null && this.#fresh(record)) return record
    return this.#inspections.run(`${repo.upstream} ${repo.repository} ${digest}`, async () => {
      // Held for a detained index under an older revision: judge the index first, so that asking
      // for the child before the index after a policy change does not let the child through.
      const index = artifact ? undefined : record?.verdict.detainedByIndex
      if (index !== undefined && index !== digest) {
        const held = await this.#heldByIndex(repo, digest, await this.#inspected(repo, index))
        if (held !== undefined) return held
      }
      const cached = await this.#deps.blobs.readSmall(digest)
      if (cached !== null && record !== null) return this.#inspect(repo, digest, cached, record.mediaType, artifact, record)
      const { bytes, mediaType } = await this.#fetch(repo, digest, describe(repo, digest))
      return this.#inspect(repo, digest, bytes, mediaType, artifact, record)
    })
  }

  #fresh(record: ManifestRecord): boolean {
    if (record.verdict.revision !== this.#deps.inspector.revision) return false
    const recheck = record.facts?.recheckAfter
    return recheck === undefined || recheck > Date.now()
  }

  /** The cleared index that listed this manifest, with its facts, when there is one. */
  async #parent(repo: RepoKey, digest: Digest): Promise<{ digest: Digest; facts: VerificationFacts } | undefined> {
    const parentDigest = await this.#deps.state.getParent(repo, digest)
    if (parentDigest === null) return undefined
    const parent = await this.#deps.state.getManifest(repo, parentDigest)
    if (parent === null || parent.facts === undefined || ownVerdict(parent).outcome === 'detained') return undefined
    if (parent.verdict.revision !== this.#deps.inspector.revision) return undefined
    return { digest: parentDigest, facts: parent.facts }
  }

  /** Inspects and records; `before` is the record read before (null: none), for the quarantine. */
  async #inspect(repo: RepoKey, digest: Digest, bytes: Buffer, mediaType: string, artifact: boolean, before: ManifestRecord | null): Promise<ManifestRecord> {
    const parent = artifact ? undefined : await this.#parent(repo, digest)
    const { verdict, links, manifest, facts, image } = await this.#deps.inspector.inspect({
      repo,
      digest,
      bytes,
      mediaType,
      artifact,
      ...(parent !== undefined ? { parent } : {}),
    })
    this.#deps.metrics.verdicts.inc({ outcome: verdict.outcome })
    this.#report(repo, digest, verdict)
    const record: ManifestRecord = {
      digest,
      mediaType: manifest.mediaType,
      size: bytes.byteLength,
      verdict,
      image,
      ...(facts !== undefined ? { facts } : {}),
    }
    // Bytes first, then the record that points at them: a crash in between leaves only bytes.
    if (verdict.outcome !== 'detained') {
      await this.#deps.blobs.putVerified(digest, bytes)
      this.#deps.memory.set(digest, bytes)
      // Signatures and attestations are never refused as pulls: they have no quarantine record.
      if (!artifact) await clearQuarantine(this.#deps, repo, digest, verdict, before)
    }
    await this.#deps.state.recordManifest(repo, record, links)
    if (!artifact && manifest.kind === 'index' && verdict.outcome === 'detained') await this.#detainChildren(repo, record, manifest.manifests)
    if (verdict.revision !== this.#deps.inspector.revision) this.#deps.staleRecorded?.()
    return record
  }

  /**
   * An index's verdict covers its children (DESIGN step 3): a child of a detained index must not
   * be served by digest because its own content passes. Each child gets a detained record naming
   * the index, unless it is detained on its own already. A child a cleared index shares is
   * detained too until the next revision: fail closed.
   */
  async #detainChildren(repo: RepoKey, index: ManifestRecord, children: readonly Descriptor[]): Promise<void> {
    for (const child of children.slice(0, MAX_CHILDREN_DETAINED)) {
      if (child.digest === index.digest) continue
      const existing = await this.#deps.state.getManifest(repo, child.digest)
      if (existing !== null && existing.verdict.outcome === 'detained' && existing.verdict.detainedByIndex === undefined && this.#fresh(existing)) continue
      await this.#deps.state.recordManifest(repo, childHeldBy(index, child, existing), { blobs: [], children: [] })
    }
  }

  /** The child's record held for `index` when that index is detained now; else undefined. */
  async #heldByIndex(repo: RepoKey, digest: Digest, index: ManifestRecord): Promise<ManifestRecord | undefined> {
    if (index.verdict.outcome !== 'detained') return undefined
    const existing = await this.#deps.state.getManifest(repo, digest)
    if (existing === null) return undefined
    const held = childHeldBy(index, { digest, mediaType: existing.mediaType, size: existing.size }, existing)
    await this.#deps.state.recordManifest(repo, held, { blobs: [], children: [] })
    return held
  }

  async #fetch(repo: RepoKey, ref: string, what: string): Promise<{ bytes: Buffer; mediaType: string }> {
    const client = this.#deps.upstreams.get(repo.upstream)
    const res = await client.send({
      method: 'GET',
      path: `/v2/${repo.repository}/manifests/${ref}`,
      repository: repo.repository,
      accept: UPSTREAM_MANIFEST_ACCEPT,
      signal: AbortSignal.timeout(this.#deps.upstreamConfig(repo.upstream).timeout),
    })
    if (!res.ok) throw await statusError(res, repo.upstream, what, 'MANIFEST_UNKNOWN')
    const mediaType = (res.headers.get('content-type') ?? '').split(';')[0]?.trim() ?? ''
    const bytes = await readBounded(res, MAX_MANIFEST_BYTES, `${repo.upstream} manifest ${ref}`)
    const declared = res.headers.get(Header.CONTENT_DIGEST)
    if (ref.includes(':') && declared !== null && declared !== ref) {
      throw new CustomsError('UPSTREAM_INVALID', `${repo.upstream} answered ${ref} with Docker-Content-Digest ${declared.slice(0, 80)}`)
    }
    return { bytes, mediaType }
  }

  async #bytes(repo: RepoKey, record: ManifestRecord): Promise<Buffer> {
    const inMemory = this.#deps.memory.get(record.digest)
    if (inMemory !== undefined) return inMemory
    const onDisk = await this.#deps.blobs.readSmall(record.digest)
    if (onDisk !== null) {
      this.#deps.memory.set(record.digest, onDisk)
      return onDisk
    }
    // Evicted or lost from disk: fetch by digest again; putVerified refuses other bytes.
    const { bytes } = await this.#fetch(repo, record.digest, describe(repo, record.digest))
    await this.#deps.blobs.putVerified(record.digest, bytes)
    this.#deps.memory.set(record.digest, bytes)
    return bytes
  }

}

/** The verdict that admits a digest detained on its own, and why (a release, tags). */
type Admission = Pick<Verdict, 'outcome' | 'reasons'> & Partial<Pick<Verdict, 'revision' | 'detainedFor' | 'admittedByTags'>>

/** Tags remembered as admitting one digest; a digest is rarely pulled by more. */
const MAX_ADMITTING_TAGS = 32

/** An index lists at most this many children to detain with it; the rest are judged alone. */
const MAX_CHILDREN_DETAINED = 1024

/** A child's record detained for the detained `index` that lists it. */
function childHeldBy(index: ManifestRecord, child: Pick<Descriptor, 'digest' | 'mediaType' | 'size'>, existing: ManifestRecord | null): ManifestRecord {
  const reasons = [`listed by the detained index ${index.digest}`, ...index.verdict.reasons.slice(0, 8)]
  const verdict: Verdict = { outcome: 'detained', reasons, revision: index.verdict.revision, decidedAt: Date.now(), detainedByIndex: index.digest }
  if (existing !== null) {
    const { detainedFor: _released, ...rest } = existing.verdict
    return { ...existing, verdict: { ...rest, ...verdict } }
  }
  return { digest: child.digest, mediaType: child.mediaType, size: child.size, verdict }
}

/** A record's verdict without any release: one admitted only by a release is detained again. */
function ownVerdict(record: ManifestRecord): Pick<Verdict, 'outcome' | 'reasons'> {
  const { detainedFor } = record.verdict
  return detainedFor === undefined ? record.verdict : { outcome: 'detained', reasons: detainedFor }
}

/** Whether any policy of a set looks at tags; computed once per set, not per pull. */
const tagSensitivity = new WeakMap<PolicySet, boolean>()
function isTagSensitive(set: PolicySet): boolean {
  let sensitive = tagSensitivity.get(set)
  if (sensitive === undefined) {
    sensitive = set.policies.some((p) => p.rules.tags !== undefined || p.match.some((m) => m.tags !== undefined))
    tagSensitivity.set(set, sensitive)
  }
  return sensitive
}

function describe(repo: RepoKey, digest: Digest): string {
  return `${repo.upstream}/${repo.repository}@${digest}`
}
