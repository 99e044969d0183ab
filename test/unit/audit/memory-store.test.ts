// The in-process audit ring keeps entries as text in a fixed byte ring: what comes back must be
// the newest entries, consecutive, as appended, whatever their sizes and however the ring wraps.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { verifyEntries, type AuditEntry } from '../../../src/audit/chain.js'
import type { CustomsEvent } from '../../../src/audit/events.js'
import { MEMORY_AUDIT_ENTRY_BYTES, MemoryAuditStore } from '../../../src/audit/memory-store.js'

/** A decision whose reasons make its entry's text roughly `bytes` long. */
function event(i: number, bytes: number): CustomsEvent {
  return {
    type: 'decision',
    time: new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString(),
    repository: 'acme/app',
    reference: `v${i}`,
    verdict: 'cleared',
    // Non-ASCII on purpose: the ring counts UTF-8 bytes, not string length.
    reasons: [`é${'x'.repeat(Math.max(0, bytes - 400))}`],
  }
}

async function kept(store: MemoryAuditStore): Promise<AuditEntry[]> {
  const entries: AuditEntry[] = []
  for await (const { raw } of store.scan()) entries.push(raw as AuditEntry)
  return entries
}

describe('MemoryAuditStore', () => {
  it('keeps the newest entries, consecutive and as appended, while texts of mixed sizes wrap the ring', async () => {
    const capacity = 8
    const store = new MemoryAuditStore(capacity)
    const appended: AuditEntry[] = []
    // Sizes from a tenth of the per-entry average to three times it, so the ring wraps at
    // different offsets and evicts by bytes as well as by count.
    const sizes = [100, 3000, 500, 1024, 2500, 700, 3100, 200, 900, 1500]
    for (let i = 0; i < 60; i++) {
      const [entry] = await store.append([event(i, sizes[i % sizes.length] as number)])
      appended.push(entry as AuditEntry)
      const now = await kept(store)
      assert.ok(now.length >= 1 && now.length <= capacity, `after ${i + 1} appends: ${now.length} kept`)
      assert.deepEqual(now, appended.slice(-now.length))
      assert.ok(verifyEntries(now, { allowTrimmedHead: true }).ok)
    }
  })

  it('keeps its whole capacity when entries are no larger than the average', async () => {
    const store = new MemoryAuditStore(50)
    for (let i = 0; i < 120; i++) await store.append([event(i, MEMORY_AUDIT_ENTRY_BYTES - 50)])
    const now = await kept(store)
    assert.deepEqual(now.map((e) => e.seq), Array.from({ length: 50 }, (_, i) => 71 + i))
  })

  it('lists newest first across batches and from `before`', async () => {
    const store = new MemoryAuditStore(500)
    await store.append(Array.from({ length: 300 }, (_, i) => event(i, 300)))
    const page = await store.list({ limit: 150, before: 260 })
    assert.deepEqual(page.entries.map((e) => e.seq), Array.from({ length: 150 }, (_, i) => 259 - i))
    assert.equal(page.next, 110)
  })

  it('empties the ring for an entry larger than the whole ring, and goes on after it', async () => {
    const store = new MemoryAuditStore(2)
    await store.append([event(0, 300), event(1, 300)])
    await store.append([event(2, 3 * MEMORY_AUDIT_ENTRY_BYTES)])
    assert.deepEqual(await kept(store), [])
    assert.equal((await store.head()).seq, 3)
    const [next] = await store.append([event(3, 300)])
    assert.deepEqual(await kept(store), [next])
  })
})
