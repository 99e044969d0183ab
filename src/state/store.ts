// The state interface: tag resolutions, manifest records with their verdicts, the blob gate's
// links, quarantine records of refused pulls, and fill locks. Two implementations (memory.ts,
// redis.ts) pass one conformance suite (test/conformance/state.test.ts). Everything is keyed by
// (upstream, repository, ...): never by a bare name, or docker.io/x/y and ghcr.io/x/y would
// collide.

import type { Redis } from 'ioredis'
import type { Digest } from '../oci/digest.js'
import type { VerificationFacts } from '../verify/facts.js'
import type { ImageFacts } from '../inspection/facts.js'

/** Where a repository lives: the configured upstream's name and the repository on it. */
export interface RepoKey {
  readonly upstream: string
  readonly repository: string
}

export type VerdictOutcome = 'cleared' | 'cleared-with-warnings' | 'detained'

export interface Verdict {
  readonly outcome: VerdictOutcome
  /** Why: one entry per check that failed or warned; empty when simply cleared. */
  readonly reasons: readonly string[]
  /** The policy/trust revision the verdict was reached under; a new revision invalidates it. */
  readonly revision: string
  /** Milliseconds since the epoch. */
  readonly decidedAt: number
  /**
   * Present when the outcome stands only by a person's release of a detained digest
   * (QuarantineRecord.release): the reasons it was detained for. Readers check the release on
   * every use and fall back to a detained verdict with these reasons once it is revoked or expired.
   */
  readonly detainedFor?: readonly string[]
  /**
   * Present on a manifest detained only because a detained index lists it: that index. Its own
   * content was not what was refused, so a release of the index lets it through, and a new
   * revision judges the index again before it.
   */
  readonly detainedByIndex?: Digest
  /**
   * Present when the outcome stands only because tag-scoped policies admit pulls by these tags
   * (the digest alone is detained): a re-evaluation judges the record by them, as the pull path
   * would, rather than by the digest alone, which would revoke what a tag still admits.
   */
  readonly admittedByTags?: readonly string[]
}

/** What Customs knows of one manifest (image, index or artifact) in one repository. */
export interface ManifestRecord {
  readonly digest: Digest
  readonly mediaType: string
  readonly size: number
  readonly verdict: Verdict
  /** The signatures and attestations found and verified for it (absent for artifacts). */
  readonly facts?: VerificationFacts
  /** What policies saw of the image: config facts, platforms, sizes. */
  readonly image?: ImageFacts
}

/** A tag's resolution, recorded only after its digest was cleared. */
export interface TagRecord {
  readonly digest: Digest
  /** When the upstream last confirmed this mapping (ms since the epoch). */
  readonly checkedAt: number
}

/** One change of a tag's digest, kept in the tag's history. */
export interface TagMove {
  readonly from: Digest | null
  readonly to: Digest
  readonly at: number
}

export interface BlobLink {
  readonly digest: Digest
  readonly size: number
}

/** What recordManifest writes besides the record itself, in the same transaction. */
export interface ManifestLinks {
  /** The blobs the manifest references (config and layers): the blob gate opens for these. */
  readonly blobs: readonly BlobLink[]
  /** For an index: its child manifests, each of which is recorded with this digest as parent. */
  readonly children: readonly Digest[]
}

export interface StateStore {
  /**
   * The Redis connection and key prefix a Redis-backed store works through, so that the audit log
   * keeps its chain beside the state (audit/setup.ts); absent for in-process state.
   */
  readonly redis?: { readonly client: Redis; readonly prefix: string }

  /** Resolves when the backing store answers; throws STATE_UNAVAILABLE otherwise (for /readyz). */
  ping(): Promise<void>

  getTag(repo: RepoKey, tag: string): Promise<TagRecord | null>
  /**
   * Records tag -> digest. When the digest differs from the recorded one the move is appended to the
   * tag's history (bounded) and the previous digest returned; otherwise only checkedAt is updated.
   */
  setTag(repo: RepoKey, tag: string, record: TagRecord): Promise<{ previous: Digest | null }>
  /** The most recent moves of a tag, newest first. */
  tagHistory(repo: RepoKey, tag: string, limit: number): Promise<TagMove[]>

  getManifest(repo: RepoKey, digest: Digest): Promise<ManifestRecord | null>
  /**
   * Records a manifest and its verdict; when cleared, also links its blobs and children, all in one
   * transaction so that no reader sees the links without the verdict or the other way round.
   */
  recordManifest(repo: RepoKey, record: ManifestRecord, links: ManifestLinks): Promise<void>
  /**
   * Records a manifest as detained (`record.verdict.outcome` must be `detained`: a revoked or
   * expired release, a re-evaluation, a purge) and, in the same atomic step, takes it out of the
   * referencer sets of its blobs, dropping the link of every blob no other admitted manifest of
   * this repository references: the gate closes for its own layers, a layer shared with another
   * admitted manifest stays served. `unlinked` lists the blobs whose link was dropped.
   */
  detainManifest(repo: RepoKey, record: ManifestRecord): Promise<{ unlinked: Digest[] }>
  /** The blobs a manifest referenced when it was recorded (any verdict); empty when unknown. */
  manifestBlobs(repo: RepoKey, digest: Digest): Promise<Digest[]>
  /**
   * Of these digests, those no repository holds: neither linked as a blob nor recorded as an
   * admitted manifest. Their cached bytes may be removed (a later need fetches them again).
   */
  unheld(digests: readonly Digest[]): Promise<Digest[]>
  /**
   * Every manifest record, a page at a time, in no particular order; a record may appear twice
   * across pages (Redis SCAN), never zero times if it existed for the whole walk.
   */
  listManifests(query: ScanQuery): Promise<ScanPage<{ repo: RepoKey; record: ManifestRecord }>>
  /** Every tag resolution, a page at a time, with the same guarantees as listManifests. */
  listTags(query: ScanQuery): Promise<ScanPage<{ repo: RepoKey; tag: string; record: TagRecord }>>
  /** The size of a blob if a cleared manifest in this repository references it. */
  getBlobLink(repo: RepoKey, digest: Digest): Promise<BlobLink | null>
  /** The index that listed this manifest, if any. */
  getParent(repo: RepoKey, digest: Digest): Promise<Digest | null>

  /**
   * Records one refused pull of a detained manifest: creates the quarantine record or updates it
   * (references, latest reasons, lastSeen, refused count, recent clients) in one atomic step.
   * `created` tells whether this refusal made the record (the first one of this digest here).
   * A record found `cleared` or `purged` is made `detained` again, with a `detained` action by
   * `customs` (the reasons, and the revision when given) in its history, so that the record
   * itself says why it is detained; `previous` is then the state it left, else null.
   */
  recordDetention(repo: RepoKey, digest: Digest, detention: Detention): Promise<{ created: boolean; previous: QuarantineState | null }>
  /** The quarantine record of a detained manifest, if a pull of it was ever refused. */
  getQuarantine(repo: RepoKey, digest: Digest): Promise<QuarantineRecord | null>
  /** Quarantine records, most recently refused first, a page at a time. */
  listQuarantine(query: QuarantineQuery): Promise<QuarantinePage>
  /**
   * How many quarantine records there are, released and cleared ones included (a cheap count,
   * for metrics).
   */
  countQuarantine(): Promise<number>
  /**
   * Releases a detained manifest: state `released` with `release`, and the action added to the
   * bounded `history`, in one atomic step. False, changing nothing, when there is no quarantine
   * record or it says `cleared`: the policies clear that digest, there is no detention to release,
   * and a release would only put it back to `detained` in the record when it expired.
   */
  releaseQuarantine(repo: RepoKey, digest: Digest, release: QuarantineRelease): Promise<boolean>
  /**
   * Revokes a release: state `detained`, `release` dropped, the action added to the bounded
   * `history`, in one atomic step. False, changing nothing, when there is no quarantine record or
   * it holds no release in force at `revocation.at` (`detained`, `revoked`, `purged`, `cleared`,
   * or a release that expired): there is nothing to revoke, and a `revoke` entry would bury the
   * state the record says (a `revoked` record, say) under a `detained` one. An expired release is
   * the expiry job's to end, with its `expire` entry.
   */
  revokeRelease(repo: RepoKey, digest: Digest, revocation: QuarantineRevocation): Promise<boolean>
  /**
   * Detains again, at `now`, the records whose release expired (expires <= now): state `detained`,
   * `release` dropped, an `expire` action added to the history, each in one atomic step, at most
   * `limit` of them. Each expiry is claimed exactly once however many replicas call this at once:
   * the caller that gets a record back is the one that moved it.
   */
  expireReleases(now: number, limit: number): Promise<ExpiredRelease[]>

  /**
   * Marks content that was cleared and is now detained by a re-evaluation: state `revoked`, the
   * reasons, the revision, any release dropped, the action in `history`; creates the record when
   * no pull was ever refused (no references, refused 0). `created` as for recordDetention.
   */
  markRevoked(repo: RepoKey, digest: Digest, revocation: QuarantineReevaluation): Promise<{ created: boolean }>
  /**
   * Records a purge: state `purged`, any release dropped, the action in `history`, in one atomic
   * step. False when there is no quarantine record. A later refusal sets the state back to
   * `detained`.
   */
  purgeQuarantine(repo: RepoKey, digest: Digest, purge: QuarantinePurge): Promise<boolean>
  /**
   * Resolves the record of a digest the policies now clear on their own (a re-evaluation, or an
   * inspection under a newer revision): state `cleared`, any release dropped, a `cleared` action
   * by `customs` with the revision in `history`, in one atomic step. Returns the state the record
   * left, or null when nothing changed: no record (none is created), `cleared` already, or in a
   * state `clearance.from` leaves out.
   */
  markCleared(repo: RepoKey, digest: Digest, clearance: QuarantineClearance): Promise<{ previous: QuarantineState | null }>

  /** Takes a named lock for ttlMs; returns a token, or null when another holder has it. */
  acquireLock(name: string, ttlMs: number): Promise<string | null>
  /** Extends a lock still held under this token; false when it was lost. */
  renewLock(name: string, token: string, ttlMs: number): Promise<boolean>
  /** Releases a lock if still held under this token. */
  releaseLock(name: string, token: string): Promise<void>
  /** Whether a lock is currently held by anyone. */
  isLocked(name: string): Promise<boolean>

  close(): Promise<void>
}

/** How many moves a tag's history keeps. */
export const TAG_HISTORY_LIMIT = 50

/** Who asked for a refused pull, as the HTTP layer saw it. */
export interface QuarantineClient {
  readonly address?: string
  readonly userAgent?: string
  /** The CN of a verified mTLS client certificate. */
  readonly identity?: string
}

/** One refused pull, as recordDetention takes it. */
export interface Detention {
  /** The tag or digest the client asked for. */
  readonly reference: string
  /** Why it was refused: the failing policy/rule/reason strings of the verdict. */
  readonly reasons: readonly string[]
  /** The revision of the verdict refused; kept in a `detained` history entry. */
  readonly revision?: string
  readonly client?: QuarantineClient
  /** Milliseconds since the epoch. */
  readonly at: number
}

/** A detained manifest whose pull was refused at least once, with who asked and why. */
export interface QuarantineRecord {
  readonly upstream: string
  readonly repository: string
  readonly digest: Digest
  /** As stored; what holds now is effectiveState(record, now), which sees expired releases. */
  readonly state: QuarantineState
  /** The release in force (state `released`); absent in every other state. */
  readonly release?: QuarantineRelease
  /** Every change of state after the record was made, newest first, bounded; absent until the first one. */
  readonly history?: readonly QuarantineAction[]
  /** The tags and digests it was asked for, most recently asked first, bounded. */
  readonly references: readonly string[]
  /** The reasons of the latest refusal. */
  readonly reasons: readonly string[]
  readonly firstSeen: number
  readonly lastSeen: number
  /** How many pulls were refused. */
  readonly refused: number
  /** The most recent distinct clients, newest first, bounded. */
  readonly clients: readonly QuarantineClient[]
}

/**
 * `detained`: refused; `released`: a person's release holds (effectiveState sees its expiry);
 * `revoked`: it was cleared and a re-evaluation under a new policy or trust detained it;
 * `purged`: a person removed its cached bytes; a later refusal makes it `detained` again;
 * `cleared`: the policies in force clear it on their own (it is served); the record stays, with
 * its history, for the people who saw it detained; a later refusal makes it `detained` again.
 */
export type QuarantineState = 'detained' | 'released' | 'revoked' | 'purged' | 'cleared'

/** What markRevoked takes: why a re-evaluation detained cleared content, and under what. */
export interface QuarantineReevaluation {
  readonly reasons: readonly string[]
  /** The policy and trust revision of the re-evaluation. */
  readonly revision: string
  readonly at: number
}

/** What markCleared takes: the revision whose policies and trust clear the digest, and when. */
export interface QuarantineClearance {
  readonly revision: string
  readonly at: number
  /** The states it may end (others are left as they are); every state but `cleared` if absent. */
  readonly from?: readonly QuarantineState[]
}

/** Who purged a detained manifest, why, and when (milliseconds since the epoch). */
export interface QuarantinePurge {
  readonly by: string
  readonly reason: string
  readonly at: number
}

/** A page of a scan: `next` is the cursor of the next page, absent on the last one. */
export interface ScanPage<T> {
  readonly entries: T[]
  readonly next?: string
}

export interface ScanQuery {
  /** A hint of how many entries a page holds (Redis SCAN COUNT); pages may be smaller or larger. */
  readonly limit: number
  /** The `next` of the previous page. */
  readonly after?: string
}

/** A person's exception for one detained digest, until `expires`. */
export interface QuarantineRelease {
  /** The name of the admin token that released it. */
  readonly by: string
  readonly reason: string
  /** Milliseconds since the epoch; the release no longer holds from then on. */
  readonly expires: number
  /** When it was released, milliseconds since the epoch. */
  readonly at: number
}

/** Who revoked a release, and when (milliseconds since the epoch). */
export interface QuarantineRevocation {
  readonly by: string
  readonly at: number
}

/** A release that expireReleases moved back to `detained`. */
export interface ExpiredRelease {
  readonly upstream: string
  readonly repository: string
  readonly digest: Digest
  /** The release that expired. */
  readonly release: QuarantineRelease
}

/** Who the `expire` action of a record's history is by: Customs itself, not a person. */
export const EXPIRY_ACTOR = 'customs'

/** One entry of a quarantine record's history. */
export interface QuarantineAction {
  /**
   * `expire`: the release reached its expiry and Customs detained the digest again; `revoked`: a
   * re-evaluation detained cleared content; `cleared`: the policies cleared the digest again;
   * `detained`: a refused pull detained again a `cleared` or `purged` record (all four by
   * `customs`); the others (`release`, `revoke`, `purge`) are a person's.
   */
  readonly action: 'release' | 'revoke' | 'expire' | 'revoked' | 'purge' | 'cleared' | 'detained'
  readonly by: string
  readonly at: number
  /** The release's or purge's reason. */
  readonly reason?: string
  /** The refusal's reasons (`detained` only). */
  readonly reasons?: readonly string[]
  /**
   * The revision the digest was revoked or cleared under (`revoked`, `cleared`), or of the verdict
   * a `detained` refusal was reached under, when known.
   */
  readonly revision?: string
  /** The release's expiry (releases and expiries), milliseconds since the epoch. */
  readonly expires?: number
}

/**
 * What holds for a quarantine record at `now` (ms since the epoch): `released` only while a
 * release is recorded and has not expired (then `detained`); `revoked`, `purged` and `cleared` as
 * stored.
 * The one place that decides, so that a pull never depends on the expiry job
 * (src/quarantine/expiry.ts) having run: the pull path and the admin API both read states through
 * it; the job only makes the stored state and the events catch up.
 */
export function effectiveState(record: QuarantineRecord, now: number): QuarantineState {
  const release = record.release
  if (record.state === 'revoked' || record.state === 'purged' || record.state === 'cleared') return record.state
  return record.state === 'released' && release !== undefined && release.expires > now
    ? 'released'
    : 'detained'
}

export interface QuarantineQuery {
  /** Only records of this upstream. */
  readonly upstream?: string
  /** At most this many records (a positive whole number). */
  readonly limit: number
  /** The `next` cursor of the previous page. */
  readonly after?: string
}

export interface QuarantinePage {
  readonly records: QuarantineRecord[]
  /** The cursor of the next page; absent on the last page. */
  readonly next?: string
}

/** How many references a quarantine record keeps. */
export const QUARANTINE_REFERENCES_LIMIT = 50
/** How many recent clients a quarantine record keeps. */
export const QUARANTINE_CLIENTS_LIMIT = 20
/** How many actions (changes of state) a quarantine record's history keeps. */
export const QUARANTINE_HISTORY_LIMIT = 50

/** Where a page of a listing ordered by (lastSeen desc, id desc) ended; `id` is store-specific. */
export interface QuarantineCursor {
  readonly lastSeen: number
  readonly id: string
}

/** An opaque cursor string: base64url of the JSON pair. */
export function encodeQuarantineCursor(cursor: QuarantineCursor): string {
  return Buffer.from(JSON.stringify([cursor.lastSeen, cursor.id])).toString('base64url')
}

/** The cursor in an opaque string, or null when it is not one encodeQuarantineCursor made. */
export function decodeQuarantineCursor(value: string): QuarantineCursor | null {
  if (value.length > 4096 || !/^[A-Za-z0-9_-]+$/.test(value)) return null
  try {
    const parsed: unknown = JSON.parse(Buffer.from(value, 'base64url').toString('utf8'))
    if (!Array.isArray(parsed) || parsed.length !== 2) return null
    const [lastSeen, id] = parsed as [unknown, unknown]
    if (typeof lastSeen !== 'number' || !Number.isFinite(lastSeen)) return null
    return typeof id === 'string' ? { lastSeen, id } : null
  } catch {
    return null
  }
}

/** Whether two clients are the same (address, user agent and identity all equal). */
export function sameClient(a: QuarantineClient, b: QuarantineClient): boolean {
  return a.address === b.address && a.userAgent === b.userAgent && a.identity === b.identity
}
