// The audit chain in process, for the memory state backend: a ring of the newest entries. It is
// lost on restart, like the rest of in-process state, and cannot be read from outside the process.

import { EMPTY_HEAD, chainEvents, type AuditEntry, type ChainHead } from './chain.js'
import type { CustomsEvent } from './events.js'
import { collectPage, type AuditPage, type AuditQuery, type AuditStore, type StoredEntry } from './store.js'

/**
 * The most entries kept in process whatever the configured retention: each costs about 750 bytes
 * of heap (measured with a full ring of decision events), and the quick start must stay small.
 * A longer history needs Redis or the file.
 */
export const MEMORY_AUDIT_MAX = 2_000

export class MemoryAuditStore implements AuditStore {
  readonly #capacity: number
  readonly #ring: AuditEntry[] = []
  /** Index in #ring of the oldest entry once the ring is full. */
  #start = 0
  #head: ChainHead = EMPTY_HEAD

  constructor(retention: number) {
    this.#capacity = Math.max(1, Math.min(retention, MEMORY_AUDIT_MAX))
  }

  async append(events: readonly CustomsEvent[]): Promise<AuditEntry[]> {
    const { entries, head } = chainEvents(this.#head, events)
    for (const entry of entries) {
      if (this.#ring.length < this.#capacity) {
        this.#ring.push(entry)
      } else {
        this.#ring[this.#start] = entry
        this.#start = (this.#start + 1) % this.#capacity
      }
    }
    this.#head = head
    return entries
  }

  async head(): Promise<ChainHead> {
    return this.#head
  }

  async list(query: AuditQuery): Promise<AuditPage> {
    return collectPage(this.#newestFirst(query.before), query)
  }

  async *scan(until?: number): AsyncIterable<StoredEntry> {
    for (let i = 0; i < this.#ring.length; i++) {
      const entry = this.#at(i)
      if (until !== undefined && entry.seq > until) return
      yield { raw: entry, where: `position ${i + 1}` }
    }
  }

  async close(): Promise<void> {}

  /** The i-th oldest entry kept. */
  #at(i: number): AuditEntry {
    return this.#ring[(this.#start + i) % this.#ring.length] as AuditEntry
  }

  async *#newestFirst(before: number | undefined): AsyncIterable<AuditEntry[]> {
    const batch: AuditEntry[] = []
    for (let i = this.#ring.length - 1; i >= 0; i--) {
      const entry = this.#at(i)
      if (before === undefined || entry.seq < before) batch.push(entry)
    }
    yield batch
  }
}
