// Webhooks: each configured receiver hears the events it asked for as a signed JSON POST, so a
// security team learns of a detained image without watching a dashboard. Delivery never touches
// the pull: the event bus hands an event over synchronously, it waits in the webhook's own bounded
// queue, and one worker per webhook posts it, retrying with backoff while the receiver fails.

import { createHmac, randomUUID } from 'node:crypto'
import type { CustomsEvent, EventBus, EventType } from '../audit/events.js'
import type { WebhookConfig } from '../config/schema.js'
import type { Logger } from '../observability/logger.js'
import type { Metrics } from '../observability/metrics.js'

export const SIGNATURE_HEADER = 'Customs-Signature'
export const EVENT_HEADER = 'Customs-Event'
export const DELIVERY_HEADER = 'Customs-Delivery'

/** `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, the value of Customs-Signature. */
export function signPayload(secret: string, body: string, unixSeconds: number): string {
  const mac = createHmac('sha256', secret).update(`${unixSeconds}.${body}`).digest('hex')
  return `t=${unixSeconds},v1=${mac}`
}

export interface NotifierDeps {
  readonly metrics: Metrics
  readonly logger: Logger
  /** The clock, in ms since the epoch (tests). */
  readonly now?: () => number
}

interface Delivery {
  readonly id: string
  readonly event: CustomsEvent
}

type Outcome = 'delivered' | 'rejected' | 'failed' | 'dropped'

/** Every configured webhook, subscribed to one event bus. */
export class Notifier {
  readonly #hooks: Webhook[]
  #unsubscribe: (() => void) | undefined

  constructor(configs: readonly WebhookConfig[], deps: NotifierDeps) {
    this.#hooks = configs.map((config) => new Webhook(config, deps))
  }

  /** Starts hearing the bus; each event is queued for the webhooks that asked for its type. */
  subscribe(bus: EventBus): void {
    if (this.#hooks.length === 0 || this.#unsubscribe !== undefined) return
    this.#unsubscribe = bus.subscribe((event) => {
      for (const hook of this.#hooks) hook.enqueue(event)
    })
  }

  /**
   * Stops hearing the bus and delivers what is queued for at most drainMs; what is left then is
   * dropped (counted and logged) and attempts in flight are aborted.
   */
  async close(drainMs: number): Promise<void> {
    this.#unsubscribe?.()
    this.#unsubscribe = undefined
    await Promise.all(this.#hooks.map((hook) => hook.close(drainMs)))
  }
}

class Webhook {
  readonly #config: WebhookConfig
  readonly #deps: NotifierDeps
  readonly #events: ReadonlySet<EventType>
  readonly #queue: Delivery[] = []
  /** Aborts attempts and waits on close, once the drain time is over. */
  readonly #stop = new AbortController()
  #worker: Promise<void> | undefined
  #closing = false

  constructor(config: WebhookConfig, deps: NotifierDeps) {
    this.#config = config
    this.#deps = deps
    this.#events = new Set(config.events)
  }

  enqueue(event: CustomsEvent): void {
    if (this.#closing || !this.#events.has(event.type)) return
    if (this.#queue.length >= this.#config.queueSize) {
      const dropped = this.#queue.shift() as Delivery
      this.#count('dropped')
      this.#deps.logger.warn({ webhook: this.#config.name, delivery: dropped.id, type: dropped.event.type, queueSize: this.#config.queueSize }, 'webhook queue full; dropped the oldest event')
    }
    this.#queue.push({ id: randomUUID(), event })
    this.#worker ??= this.#work().finally(() => {
      this.#worker = undefined
    })
  }

  async close(drainMs: number): Promise<void> {
    this.#closing = true
    const worker = this.#worker
    if (worker !== undefined) {
      let timer: NodeJS.Timeout | undefined
      const deadline = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, drainMs)
      })
      await Promise.race([worker, deadline])
      clearTimeout(timer)
    }
    this.#stop.abort()
    await this.#worker
    for (const left of this.#queue.splice(0)) {
      this.#count('dropped')
      this.#deps.logger.warn({ webhook: this.#config.name, delivery: left.id, type: left.event.type }, 'webhook event dropped at shutdown')
    }
  }

  async #work(): Promise<void> {
    for (;;) {
      const next = this.#queue.shift()
      if (next === undefined || this.#stop.signal.aborted) {
        if (next !== undefined) this.#queue.unshift(next)
        return
      }
      await this.#deliver(next)
    }
  }

  /** Posts one event until it is accepted, refused, or maxAttempts have failed. */
  async #deliver(delivery: Delivery): Promise<void> {
    const { name, maxAttempts } = this.#config
    const fields = { webhook: name, delivery: delivery.id, type: delivery.event.type }
    const body = JSON.stringify({ id: delivery.id, event: delivery.event })
    for (let attempt = 1; ; attempt++) {
      const result = await this.#attempt(delivery, body)
      if (result.kind === 'delivered') return this.#count('delivered')
      if (result.kind === 'rejected') {
        this.#deps.logger.warn({ ...fields, attempt, status: result.status }, 'webhook refused the event; not retried')
        return this.#count('rejected')
      }
      if (this.#stop.signal.aborted) {
        this.#deps.logger.warn({ ...fields, attempt }, 'webhook event dropped at shutdown')
        return this.#count('dropped')
      }
      if (attempt >= maxAttempts) {
        this.#deps.logger.error({ ...fields, attempts: attempt, err: result.reason }, 'webhook delivery failed; giving up')
        return this.#count('failed')
      }
      const wait = this.#backoff(attempt, result.retryAfterMs)
      this.#deps.logger.info({ ...fields, attempt, err: result.reason, retryInMs: wait }, 'webhook delivery failed; will retry')
      await sleep(wait, this.#stop.signal)
    }
  }

  async #attempt(
    delivery: Delivery,
    body: string
  ): Promise<{ kind: 'delivered' } | { kind: 'rejected'; status: number } | { kind: 'retry'; reason: string; retryAfterMs?: number }> {
    const now = this.#deps.now?.() ?? Date.now()
    const signal = AbortSignal.any([this.#stop.signal, AbortSignal.timeout(this.#config.timeout)])
    try {
      const res = await fetch(this.#config.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': 'customs-webhook/1',
          [EVENT_HEADER]: delivery.event.type,
          [DELIVERY_HEADER]: delivery.id,
          [SIGNATURE_HEADER]: signPayload(this.#config.secret, body, Math.floor(now / 1000)),
        },
        body,
        // A receiver's redirect is not followed: the configured URL is the only place events go.
        redirect: 'manual',
        signal,
      })
      // The answer's body is not needed: dropped unread, however large a receiver makes it.
      await res.body?.cancel().catch(() => undefined)
      if (res.status >= 200 && res.status < 300) return { kind: 'delivered' }
      if (res.status === 429 || res.status === 408 || res.status >= 500) {
        const retryAfterMs = retryAfter(res.headers.get('retry-after'), now)
        return { kind: 'retry', reason: `HTTP ${res.status}`, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) }
      }
      return { kind: 'rejected', status: res.status }
    } catch (err) {
      const reason = (err as Error).name === 'TimeoutError' ? `no answer within ${this.#config.timeout} ms` : describeError(err)
      return { kind: 'retry', reason }
    }
  }

  /** Exponential from `backoff`, with jitter (half to all of it), a Retry-After taking its place; at most maxBackoff. */
  #backoff(attempt: number, retryAfterMs: number | undefined): number {
    const { backoff, maxBackoff } = this.#config
    if (retryAfterMs !== undefined) return Math.min(maxBackoff, Math.max(0, retryAfterMs))
    const base = Math.min(maxBackoff, backoff * 2 ** Math.min(attempt - 1, 30))
    return Math.round(base / 2 + Math.random() * (base / 2))
  }

  #count(outcome: Outcome): void {
    this.#deps.metrics.webhookDeliveries.inc({ webhook: this.#config.name, outcome })
  }
}

/** Retry-After in ms: delay-seconds or an HTTP date; undefined when absent or unreadable. */
export function retryAfter(value: string | null, now: number): number | undefined {
  if (value === null) return undefined
  const trimmed = value.trim()
  if (/^\d{1,9}$/.test(trimmed)) return Number(trimmed) * 1000
  const date = Date.parse(trimmed)
  return Number.isFinite(date) ? Math.max(0, date - now) : undefined
}

function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err)
  // fetch wraps the socket's error; its code (ECONNREFUSED) says more than "fetch failed".
  const cause = (err as { cause?: { code?: string; message?: string } }).cause
  return cause?.code ?? cause?.message ?? err.message
}

/** Resolves after ms, or at once when the signal aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve()
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    signal.addEventListener('abort', done, { once: true })
  })
}
