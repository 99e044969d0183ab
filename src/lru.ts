// A Map used as a least-recently-used list, bounded in entries: a Map keeps insertion order, so
// re-inserting on use makes the first entry the least recently used, the one dropped. Shared by
// the state's fallback memories, the TLS sessions kept for blob connections and the console's
// in-process sessions.

export class Lru<V> {
  readonly #entries = new Map<string, V>()
  readonly #limit: number

  constructor(limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError('an LRU list holds at least one entry')
    this.#limit = limit
  }

  /** The value, marked most recently used. */
  get(key: string): V | undefined {
    const value = this.#entries.get(key)
    if (value !== undefined) {
      this.#entries.delete(key)
      this.#entries.set(key, value)
    }
    return value
  }

  /** Sets the value as the most recently used, dropping the least recently used past the limit. */
  set(key: string, value: V): void {
    this.#entries.delete(key)
    this.#entries.set(key, value)
    if (this.#entries.size > this.#limit) this.#entries.delete(this.#entries.keys().next().value as string)
  }

  delete(key: string): void {
    this.#entries.delete(key)
  }

  get size(): number {
    return this.#entries.size
  }
}
