// A per-upstream circuit breaker, separate from retries (verdaccio #6194: coupling the two
// multiplied timeouts). After `failures` consecutive failures it opens for `cooldown`; then one
// probe request is let through (half-open), and its outcome closes or re-opens the circuit.

export type BreakerState = 'closed' | 'open' | 'half-open'

export interface BreakerOptions {
  failures: number
  cooldown: number
  now?: () => number
  onChange?: (state: BreakerState) => void
}

export class CircuitBreaker {
  #state: BreakerState = 'closed'
  #consecutive = 0
  #openedAt = 0
  #changedAt: number
  #probing = false
  readonly #options: BreakerOptions
  readonly #now: () => number

  constructor(options: BreakerOptions) {
    this.#options = options
    this.#now = options.now ?? Date.now
    this.#changedAt = this.#now()
  }

  /** Since when the circuit is in its current state (ms since the epoch; closed: since start). */
  get since(): number {
    void this.state // moves an open circuit past its cooldown to half-open
    return this.#changedAt
  }

  get state(): BreakerState {
    if (this.#state === 'open' && this.#now() - this.#openedAt >= this.#options.cooldown) {
      this.#set('half-open')
    }
    return this.#state
  }

  /** Whether a request may go out now; in half-open state only one probe at a time. */
  tryAcquire(): boolean {
    const state = this.state
    if (state === 'closed') return true
    if (state === 'open' || this.#probing) return false
    this.#probing = true
    return true
  }

  /** Milliseconds until an open circuit lets a probe through. */
  retryAfterMs(): number {
    return Math.max(0, this.#options.cooldown - (this.#now() - this.#openedAt))
  }

  success(): void {
    this.#consecutive = 0
    this.#probing = false
    if (this.#state !== 'closed') this.#set('closed')
  }

  failure(): void {
    this.#probing = false
    this.#consecutive++
    if (this.#state === 'half-open' || this.#consecutive >= this.#options.failures) {
      this.#openedAt = this.#now()
      if (this.#state !== 'open') this.#set('open')
    }
  }

  #set(state: BreakerState): void {
    this.#state = state
    this.#changedAt = state === 'half-open' ? this.#openedAt + this.#options.cooldown : this.#now()
    this.#options.onChange?.(state)
  }
}
