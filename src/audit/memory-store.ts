// The audit chain in process, for the memory state backend: a ring of the newest entries. It is
// lost on restart, like the rest of in-process state, and cannot be read from outside the process.
//
// Entries are kept as their canonical JSON text in one preallocated byte ring, off the V8 heap.
// Kept as objects, every entry outlived a few scavenges (at 15k manifest GETs/s the ring turns
// over every 0.15 s), so each one was promoted and then died in old space: V8 let old space grow
// to about 45 MiB before collecting it, against 18 MiB with no ring (measured with the bench's
// manifest phase). In the byte ring an entry costs no heap after its append returns; the admin API
// parses the few it reads.

import { EMPTY_HEAD, canonical, chainEvents, entryText, type AuditEntry, type ChainHead } from './chain.js'
import type { CustomsEvent } from './events.js'
import { collectPage, type AuditPage, type AuditQuery, type AuditStore, type StoredEntry } from './store.js'

/**
 * The most entries kept in process whatever the configured retention: the quick start must stay
 * small. A longer history needs Redis or the file.
 */
export const MEMORY_AUDIT_MAX = 2_000

/**
 * Bytes of ring per entry of capacity. A decision entry's text is about 700 bytes; an entry larger
 * than the average evicts more of the oldest ones, so the ring holds fewer than its capacity only
 * when entries average above this.
 */
export const MEMORY_AUDIT_ENTRY_BYTES = 1024

/** Entries parsed at a time when listing. */
const LIST_BATCH = 100

export class MemoryAuditStore implements AuditStore {
  readonly #capacity: number
  /** The entries' texts, each contiguous, in seq order around the ring. */
  readonly #bytes: Buffer
  /** By seq % capacity: where each kept entry's text starts in #bytes, and its length. */
  readonly #starts: Int32Array
  readonly #lengths: Int32Array
  /** Kept entries: seq #newest - #count + 1 to #newest. */
  #count = 0
  #newest = 0
  /** Where the next text goes (the end of the newest). */
  #end = 0
  #head: ChainHead = EMPTY_HEAD

  constructor(retention: number) {
    this.#capacity = Math.max(1, Math.min(retention, MEMORY_AUDIT_MAX))
    // Not zero-filled: only written bytes are ever read, and untouched pages stay out of RSS.
    this.#bytes = Buffer.allocUnsafeSlow(this.#capacity * MEMORY_AUDIT_ENTRY_BYTES)
    this.#starts = new Int32Array(this.#capacity)
    this.#lengths = new Int32Array(this.#capacity)
  }

  async append(events: readonly CustomsEvent[]): Promise<AuditEntry[]> {
    const encoded = events.map((event) => canonical(event))
    const { entries, head } = chainEvents(this.#head, events, encoded)
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i] as AuditEntry
      this.#keep(entry.seq, entryText(entry, encoded[i] as string))
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
    const first = this.#newest - this.#count + 1
    for (let i = 0; i < this.#count; i++) {
      const seq = first + i
      if (until !== undefined && seq > until) return
      yield { raw: this.#read(seq), where: `position ${i + 1}` }
    }
  }

  async close(): Promise<void> {}

  /**
   * Appends the text of entry `seq`, the one after the newest kept one, evicting the oldest entries while the
   * capacity is reached or their bytes are in the way. A text that does not fit the whole ring
   * empties it: what is kept is always the newest entries without a gap.
   */
  #keep(seq: number, text: string): void {
    const size = this.#bytes.byteLength
    const length = Buffer.byteLength(text)
    this.#newest = seq
    if (length > size) {
      this.#count = 0
      this.#end = 0
      return
    }
    const at = this.#end + length <= size ? this.#end : 0
    // The bytes this append uses, counted forward from #end: the text, plus the tail left unused
    // when it wraps to the start.
    const used = at === this.#end ? length : size - this.#end + length
    while (this.#count > 0) {
      const oldest = (seq - this.#count) % this.#capacity
      const ahead = ((this.#starts[oldest] as number) - this.#end + size) % size
      if (this.#count < this.#capacity && ahead >= used) break
      this.#count--
    }
    this.#bytes.write(text, at, 'utf8')
    const slot = seq % this.#capacity
    this.#starts[slot] = at
    this.#lengths[slot] = length
    this.#end = at + length
    this.#count++
  }

  /** The kept entry `seq`, parsed from its text. */
  #read(seq: number): AuditEntry {
    const slot = seq % this.#capacity
    const start = this.#starts[slot] as number
    const text = this.#bytes.toString('utf8', start, start + (this.#lengths[slot] as number))
    return JSON.parse(text) as AuditEntry
  }

  /** In batches, so that a page of the newest entries parses only those. */
  async *#newestFirst(before: number | undefined): AsyncIterable<AuditEntry[]> {
    const oldest = this.#newest - this.#count + 1
    let seq = before === undefined ? this.#newest : Math.min(this.#newest, before - 1)
    while (seq >= oldest) {
      const batch: AuditEntry[] = []
      for (; seq >= oldest && batch.length < LIST_BATCH; seq--) batch.push(this.#read(seq))
      yield batch
    }
  }
}
