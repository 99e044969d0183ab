// Where the audit chain is kept for the admin API: a Redis stream shared by every replica
// (redis-store.ts) or a ring in process (memory-store.ts). Both keep ONE linear chain and at most
// their retention of the newest entries; both are read newest first, in pages, through list().

import type { AuditEntry, ChainHead } from './chain.js'
import type { CustomsEvent } from './events.js'

export interface AuditQuery {
  /** At most this many entries. */
  readonly limit: number
  /** Only entries with a smaller seq (the `next` of a previous page). */
  readonly before?: number
  /** Only entries this accepts. */
  readonly match?: (entry: AuditEntry) => boolean
  /**
   * Stop at the first entry older than this (ms since the epoch). Entries are in seq order, which
   * is time order up to the clock skew between replicas.
   */
  readonly since?: number
}

export interface AuditPage {
  readonly entries: AuditEntry[]
  /** Pass as `before` for the next page; absent when nothing older is left to look at. */
  readonly next?: number
}

/** One stored entry as read back for verification: parsed if it parses, and where it was. */
export interface StoredEntry {
  readonly raw: unknown
  readonly where: string
}

export interface AuditStore {
  /** Appends the events, in order, at the end of the chain; the entries as stored. */
  append(events: readonly CustomsEvent[]): Promise<AuditEntry[]>
  /** The end of the chain (EMPTY_HEAD before the first entry). */
  head(): Promise<ChainHead>
  /** Newest first. */
  list(query: AuditQuery): Promise<AuditPage>
  /** Every kept entry, oldest first, up to `until` (a seq) when given: for verification. */
  scan(until?: number): AsyncIterable<StoredEntry>
  close(): Promise<void>
}

/**
 * How many entries one list() looks at, matching or not: a filter that matches nothing costs one
 * bounded read per request, and the caller goes on with `next`.
 */
export const AUDIT_SCAN_LIMIT = 10_000

/** Fills a page from batches of entries read newest first. */
export async function collectPage(batches: AsyncIterable<readonly AuditEntry[]>, query: AuditQuery): Promise<AuditPage> {
  const entries: AuditEntry[] = []
  let scanned = 0
  for await (const batch of batches) {
    for (const entry of batch) {
      if (query.since !== undefined && Date.parse(entry.event.time) < query.since) return { entries }
      scanned++
      if (query.match === undefined || query.match(entry)) {
        entries.push(entry)
        if (entries.length >= query.limit) return entry.seq > 1 ? { entries, next: entry.seq } : { entries }
      }
      if (scanned >= AUDIT_SCAN_LIMIT) return entry.seq > 1 ? { entries, next: entry.seq } : { entries }
    }
  }
  return { entries }
}
