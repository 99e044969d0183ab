// In-process coalescing: concurrent callers with one key share one run of the work (zot's
// LoadOrStore). Nothing is remembered after the run settles; results live in state.

export class SingleFlight<T> {
  readonly #running = new Map<string, Promise<T>>()
  #waiting = 0

  /** Callers waiting on a run another caller started (a metrics gauge). */
  get waiters(): number {
    return this.#waiting
  }

  run(key: string, work: () => Promise<T>): Promise<T> {
    const running = this.#running.get(key)
    if (running !== undefined) {
      this.#waiting++
      return running.finally(() => this.#waiting--)
    }
    const promise = work().finally(() => this.#running.delete(key))
    this.#running.set(key, promise)
    return promise
  }
}
