// In-process coalescing: concurrent callers with one key share one run of the work (zot's
// LoadOrStore). Nothing is remembered after the run settles; results live in state.

export class SingleFlight<T> {
  readonly #running = new Map<string, Promise<T>>()

  run(key: string, work: () => Promise<T>): Promise<T> {
    const running = this.#running.get(key)
    if (running !== undefined) return running
    const promise = work().finally(() => this.#running.delete(key))
    this.#running.set(key, promise)
    return promise
  }
}
