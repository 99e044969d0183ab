// The history table of a quarantine record's console page: each entry's revision, and the reason
// or reasons that say why (a release's, a purge's, a refusal's), rendered from the record.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { QuarantineDetail } from '../../../src/console/views/quarantine.js'
import type { Session } from '../../../src/console/session.js'
import { digestOf } from '../../../src/oci/digest.js'
import type { QuarantineRecord } from '../../../src/state/store.js'

const viewer: Session = { id: 'i', token: 't', name: 'vera', role: 'viewer', csrf: 'c', created: 0, lastUsed: 0 }

const record: QuarantineRecord = {
  upstream: 'docker.io',
  repository: 'acme/app',
  digest: digestOf(Buffer.from('history')),
  state: 'detained',
  history: [
    { action: 'detained', by: 'customs', at: 9000, reasons: ['unsigned', 'too old'], revision: 'rev-3' },
    { action: 'cleared', by: 'customs', at: 8000, revision: 'rev-2' },
    { action: 'detained', by: 'customs', at: 7000, reasons: [] },
    { action: 'purge', by: 'adam', at: 6000, reason: 'malware found' },
  ],
  references: ['v1'],
  reasons: ['unsigned', 'too old'],
  firstSeen: 1000,
  lastSeen: 9000,
  refused: 3,
  clients: [],
}

/** The rows of the history table, each as its cells' text. */
function historyRows(html: string): string[][] {
  const table = html.slice(html.indexOf('data-testid="history"'))
  const body = table.slice(table.indexOf('<tbody>'), table.indexOf('</tbody>'))
  return [...body.matchAll(/<tr>([\s\S]*?)<\/tr>/g)].map((row) =>
    [...(row[1] as string).matchAll(/<td>([\s\S]*?)<\/td>/g)].map((cell) => cell[1] as string)
  )
}

describe('the quarantine detail page', () => {
  it('shows each history entry with its revision and why', async () => {
    const html = String(await QuarantineDetail({ record, session: viewer, now: 10_000 }))
    const rows = historyRows(html)
    assert.deepEqual(
      rows.map((cells) => cells.slice(1, 4)),
      [
        ['detained', 'customs', 'at revision rev-3: unsigned; too old'],
        ['cleared', 'customs', 'at revision rev-2'],
        ['detained', 'customs', ''],
        ['purge', 'adam', 'malware found'],
      ]
    )
  })
})
