// The audit log: every event on the bus, appended to the audit store (Redis stream or in process)
// and, when configured, to a JSON-lines file. A pull never waits on it: the bus listener only
// queues. Each destination (sink) drains its own bounded queue in order, in batches, so a Redis
// outage (retried with backoff) never holds up the file. A full queue drops the newest events,
// counted in customs_audit_dropped_total and logged; close() flushes with a deadline.

import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from '../observability/logger.js'
import type { Metrics } from '../observability/metrics.js'
import type { EventBus, CustomsEvent } from './events.js'
import type { AuditFile } from './file.js'
import type { AuditStore } from './store.js'

export interface AuditLogOptions {
  readonly store: AuditStore
  readonly file?: AuditFile
  readonly metrics: Metrics
  readonly logger: Logger
  /** Events waiting per sink before new ones are dropped (default 10000). */
  readonly queueLimit?: number
  /** Events written per append (default 100). */
  readonly batchSize?: number
  /** Backoff after a failed append: first wait and cap, ms (default 100 and 5000). */
  readonly backoffMs?: number
  readonly maxBackoffMs?: number
}

/** How long close() waits for the queues to drain by default. */
export const AUDIT_CLOSE_DEADLINE_MS = 5000

export class AuditLog {
  readonly store: AuditStore
  readonly file: AuditFile | undefined
  readonly #sinks: Sink[]
  readonly #metrics: Metrics
  #unsubscribe: (() => void) | undefined
  #closed = false

  constructor(options: AuditLogOptions) {
    this.store = options.store
    this.file = options.file
    this.#metrics = options.metrics
    const settings = {
      queueLimit: options.queueLimit ?? 10_000,
      batchSize: options.batchSize ?? 100,
      backoffMs: options.backoffMs ?? 100,
      maxBackoffMs: options.maxBackoffMs ?? 5000,
      metrics: options.metrics,
      logger: options.logger,
    }
    const store = options.store
    this.#sinks = [new Sink('store', (batch) => store.append(batch), settings)]
    const file = options.file
    if (file !== undefined) this.#sinks.push(new Sink('file', (batch) => file.append(batch), settings))
  }

  /** Takes every event of `bus` from now on. */
  attach(bus: EventBus): void {
    this.#unsubscribe?.()
    this.#unsubscribe = bus.subscribe((event) => this.record(event))
  }

  /** Queues one event on every sink; never waits, never throws. */
  record(event: CustomsEvent): void {
    if (this.#closed) return
    this.#metrics.auditEvents.inc({ type: event.type })
    for (const sink of this.#sinks) sink.push(event)
  }

  /** Resolves once every event queued so far is written (or dropped); for tests and close(). */
  async flush(deadlineMs = AUDIT_CLOSE_DEADLINE_MS): Promise<boolean> {
    const until = Date.now() + deadlineMs
    const results = await Promise.all(this.#sinks.map((s) => s.idle(until)))
    return results.every(Boolean)
  }

  /** Stops taking events, writes what is queued until the deadline, drops (and counts) the rest. */
  async close(deadlineMs = AUDIT_CLOSE_DEADLINE_MS): Promise<void> {
    if (this.#closed) return
    this.#unsubscribe?.()
    await this.flush(deadlineMs)
    this.#closed = true
    for (const sink of this.#sinks) sink.abandon()
    await this.file?.close().catch(() => undefined)
    await this.store.close()
  }
}

interface SinkSettings {
  readonly queueLimit: number
  readonly batchSize: number
  readonly backoffMs: number
  readonly maxBackoffMs: number
  readonly metrics: Metrics
  readonly logger: Logger
}

/** One destination: an ordered queue drained by one loop, retried with backoff on failure. */
class Sink {
  readonly #queue: CustomsEvent[] = []
  #draining = false
  #scheduled = false
  /** Events of the queue's front being written now. */
  #inFlight = 0
  #abandoned = false
  /** Drops since the last one logged, so an outage logs a line now and then, not per event. */
  #unlogged = 0
  #lastDropLog = 0
  #failures = 0
  #waiters: Array<() => void> = []
  /** Wakes a backoff sleep early (close with a deadline). */
  #wake: AbortController | undefined

  constructor(
    readonly name: string,
    readonly write: (batch: CustomsEvent[]) => Promise<unknown>,
    readonly settings: SinkSettings
  ) {}

  push(event: CustomsEvent): void {
    if (this.#abandoned) return
    if (this.#queue.length >= this.settings.queueLimit) {
      this.#drop(1, 'queue full')
      return
    }
    this.#queue.push(event)
    this.#schedule()
  }

  /**
   * Starts the drain on a later turn of the event loop: the hashing and writing never run inside
   * the emitter's call (the pull), and events emitted in one turn go out in one batch.
   */
  #schedule(): void {
    if (this.#draining || this.#scheduled) return
    this.#scheduled = true
    setImmediate(() => {
      this.#scheduled = false
      if (!this.#draining) void this.#drain()
    })
  }

  /** True once the queue is empty, false when `until` (ms since the epoch) came first. */
  async idle(until: number): Promise<boolean> {
    while (this.#draining || this.#queue.length > 0) {
      const left = until - Date.now()
      if (left <= 0) return false
      this.#schedule()
      const wake = new Promise<void>((resolve) => this.#waiters.push(resolve))
      const timer = sleep(Math.min(left, 50), undefined, { ref: false })
      await Promise.race([wake, timer])
    }
    return true
  }

  /** Gives up on what is still queued (closing): counted and logged as dropped. */
  abandon(): void {
    this.#abandoned = true
    this.#wake?.abort()
    const left = this.#queue.splice(this.#inFlight)
    if (left.length > 0) this.#drop(left.length, 'unwritten at shutdown', true)
  }

  async #drain(): Promise<void> {
    this.#draining = true
    try {
      while (this.#queue.length > 0 && !this.#abandoned) {
        const batch = this.#queue.slice(0, this.settings.batchSize)
        this.#inFlight = batch.length
        try {
          await this.write(batch)
          this.#queue.splice(0, batch.length)
          if (this.#failures > 0) this.settings.logger.info({ sink: this.name, failures: this.#failures }, 'audit sink recovered')
          this.#failures = 0
        } catch (err) {
          if (this.#abandoned) {
            this.#drop(this.#queue.splice(0).length, 'unwritten at shutdown', true)
            break
          }
          this.#failures++
          if (this.#failures === 1 || this.#failures % 20 === 0) {
            const fields = { sink: this.name, failures: this.#failures, queued: this.#queue.length, err: (err as Error).message }
            this.settings.logger.warn(fields, 'failed to write audit events; retrying')
          }
          const wait = Math.min(this.settings.backoffMs * 2 ** Math.min(this.#failures - 1, 16), this.settings.maxBackoffMs)
          this.#wake = new AbortController()
          await sleep(wait, undefined, { signal: this.#wake.signal }).catch(() => undefined)
        }
      }
    } finally {
      this.#inFlight = 0
      this.#draining = false
      for (const resolve of this.#waiters.splice(0)) resolve()
    }
  }

  #drop(count: number, why: string, now = false): void {
    this.settings.metrics.auditDropped.inc({ sink: this.name }, count)
    this.#unlogged += count
    // One line per ten seconds at most while dropping; always one at shutdown.
    if (now || Date.now() - this.#lastDropLog >= 10_000) {
      this.settings.logger.error({ sink: this.name, dropped: this.#unlogged, why }, 'audit events dropped')
      this.#unlogged = 0
      this.#lastDropLog = Date.now()
    }
  }
}
