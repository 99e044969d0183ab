// The release expiry job: a release is a person's exception until a date; when the date passes the
// digest is detained again. Pulls never wait for this job (effectiveState already reads an expired
// release as detained); it makes the stored state, the record's history and the outside world
// (the `release-expired` event: audit log, webhooks) catch up. Every replica runs it; the store
// hands each expiry to exactly one of them.

import type { EventBus } from '../audit/events.js'
import type { Logger } from '../observability/logger.js'
import { detainUnreleased } from '../inspection/detain.js'
import type { ExpiredRelease, StateStore } from '../state/store.js'

export interface ReleaseExpiryOptions {
  readonly state: StateStore
  readonly events: EventBus
  readonly logger: Logger
  /** How often the store is asked for due releases (config quarantine.expiryInterval). */
  readonly intervalMs: number
  /** The clock, in ms since the epoch (tests inject their own). */
  readonly now?: () => number
}

/** How many expiries one pass moves at most; the rest wait for the next pass. */
const BATCH = 500

export class ReleaseExpiry {
  readonly #options: ReleaseExpiryOptions
  readonly #now: () => number
  #timer: NodeJS.Timeout | undefined
  #running: Promise<number> | undefined

  constructor(options: ReleaseExpiryOptions) {
    this.#options = options
    this.#now = options.now ?? Date.now
  }

  /** Runs a pass every intervalMs until stop(); a pass still running is not overlapped. */
  start(): void {
    if (this.#timer !== undefined) return
    this.#timer = setInterval(() => void this.runOnce(), this.#options.intervalMs)
    // The job alone must not keep a process alive that is otherwise done.
    this.#timer.unref()
  }

  /** Stops the timer and waits for a pass in progress. */
  async stop(): Promise<void> {
    clearInterval(this.#timer)
    this.#timer = undefined
    await this.#running
  }

  /**
   * One pass: detains again every release due now, in batches. Returns how many this replica
   * moved. A state failure is logged and the pass ends; the next one tries again.
   */
  runOnce(): Promise<number> {
    this.#running ??= this.#pass().finally(() => {
      this.#running = undefined
    })
    return this.#running
  }

  async #pass(): Promise<number> {
    let moved = 0
    try {
      for (;;) {
        const expired = await this.#options.state.expireReleases(this.#now(), BATCH)
        for (const entry of expired) await this.#detainedAgain(entry)
        moved += expired.length
        if (expired.length < BATCH) return moved
      }
    } catch (err) {
      this.#options.logger.warn({ err: (err as Error).message }, 'release expiry pass failed')
      return moved
    }
  }

  /**
   * The one place where an expired release is acted on, after the store moved the record back to
   * `detained` (once, on this replica only). Whatever else must follow a digest being detained
   * again (closing the blob gate, say) belongs here.
   */
  async #detainedAgain(entry: ExpiredRelease): Promise<void> {
    const { upstream, repository, digest, release } = entry
    // The release opened the gate of the digest's blobs: close it. On failure the next pull of the
    // manifest closes it (the pull path meets the ended release); the event goes out regardless.
    await detainUnreleased(this.#options.state, { upstream, repository }, digest).catch((err: unknown) => {
      this.#options.logger.warn({ upstream, repository, digest, err: (err as Error).message }, 'failed to close the blob gate of an expired release')
    })
    const expires = new Date(release.expires).toISOString()
    this.#options.logger.info({ upstream, repository, digest, releasedBy: release.by, expires }, 'release expired; detained again')
    this.#options.events.emit({
      type: 'release-expired',
      upstream,
      repository,
      digest,
      verdict: 'detained',
      reasons: [release.reason],
      detail: { releasedBy: release.by, releasedAt: new Date(release.at).toISOString(), expires },
    })
  }
}
