// The audit hash chain: one canonical encoding, and a verifier that finds an edited, deleted or
// reordered entry, a torn last line and a missing end, and accepts a head trimmed by retention
// only when told to. The JSON-lines file: verified line by line, and continued after a crash.

import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { readdir, readFile, rm, writeFile, appendFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import fc from 'fast-check'
import {
  EMPTY_HEAD,
  GENESIS,
  canonical,
  chainEvents,
  entryHash,
  entryText,
  verifyEntries,
  type AuditEntry,
} from '../../../src/audit/chain.js'
import type { CustomsEvent } from '../../../src/audit/events.js'
import { AuditFile, AuditFileError, verifyAuditFile } from '../../../src/audit/file.js'
import { makeTempDir } from '../../helpers/processes.js'

function events(n: number): CustomsEvent[] {
  return Array.from({ length: n }, (_, i) => ({
    type: 'decision',
    time: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(),
    upstream: 'docker.io',
    repository: 'acme/app',
    reference: `v${i + 1}`,
    verdict: i % 2 === 0 ? 'cleared' : 'detained',
    reasons: i % 2 === 0 ? [] : ['policy p rule r: no signature'],
  }))
}

const chain = (n: number): AuditEntry[] => chainEvents(EMPTY_HEAD, events(n)).entries

/** Characters of strings and keys: mostly the ones JSON escapes, and surrogates, paired or not. */
const awkward = fc.oneof(fc.constantFrom('"', '\\', '\n', '\u0000', '\u001f', '\u007f', '\ud800', '\udfff', '😀', '1', '10'), fc.string({ unit: 'binary', maxLength: 1 }))

/**
 * A reference for canonical(): JSON.stringify with every key of the value, sorted, as its property
 * list, which it then writes in that order in every object.
 */
function sortedStringify(value: unknown): string {
  const keys = new Set<string>()
  const collect = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(collect)
    else if (v !== null && typeof v === 'object') {
      for (const [key, member] of Object.entries(v)) {
        keys.add(key)
        collect(member)
      }
    }
  }
  collect(value)
  return JSON.stringify(value, [...keys].sort())
}

describe('canonical', () => {
  it('sorts keys at every depth, drops undefined members and writes no whitespace', () => {
    const value = { b: 1, a: { d: [3, { z: 1, y: 'x' }], c: undefined }, 'é': true }
    assert.equal(canonical(value), '{"a":{"d":[3,{"y":"x","z":1}]},"b":1,"é":true}')
  })

  it('encodes equal values built in another key order identically', () => {
    assert.equal(canonical({ x: 1, y: [1, 2] }), canonical({ y: [1, 2], x: 1 }))
  })

  it('writes strings exactly as JSON.stringify does: escapes, controls, surrogates paired or not', () => {
    for (const text of ['', 'plain', 'a"b', 'back\\slash', 'line\nbreak', '\u0000\u001f\u007f', '\u2028', '😀', '\ud800', 'x\udfffy', 'é']) {
      assert.equal(canonical(text), JSON.stringify(text))
      assert.equal(canonical({ [text]: text }), `{${JSON.stringify(text)}:${JSON.stringify(text)}}`)
    }
  })

  it('writes undefined array elements and holes as null, as JSON.stringify does', () => {
    assert.equal(canonical([1, undefined, , () => 0, { a: undefined }]), '[1,null,null,null,{}]')
  })

  it('equals JSON.stringify with the keys in sorted order, for any JSON value', () => {
    // Integer-like keys, which objects enumerate first in numeric order, are sorted as text too.
    assert.equal(canonical({ b: 1, 10: 2, 9: 3 }), '{"10":2,"9":3,"b":1}')
    assert.equal(sortedStringify({ b: 1, 10: 2, 9: 3 }), '{"10":2,"9":3,"b":1}')
    fc.assert(
      fc.property(fc.jsonValue({ stringUnit: awkward, maxDepth: 4 }), (value) => {
        assert.equal(canonical(value), sortedStringify(value))
      }),
      { seed: 20_261_129, numRuns: 2000 }
    )
  })
})

describe('chain', () => {
  it('hashes prev, a newline and canonical({ seq, event }), and stores canonical(entry), for any event', () => {
    const text = fc.string({ unit: awkward, maxLength: 40 })
    const anEvent = fc.record(
      {
        type: fc.constantFrom(...(['decision', 'detention', 'tag-move'] as const)),
        time: text,
        upstream: text,
        reference: text,
        client: fc.record({ address: text, userAgent: text }, { requiredKeys: ['address'] }),
        reasons: fc.array(text, { maxLength: 4 }),
        detail: fc.dictionary(text, fc.jsonValue({ stringUnit: awkward, maxDepth: 2 }), { maxKeys: 5 }),
      },
      { requiredKeys: ['type', 'time'] }
    )
    fc.assert(
      fc.property(fc.array(anEvent, { minLength: 1, maxLength: 4 }), (list) => {
        const { entries } = chainEvents(EMPTY_HEAD, list as CustomsEvent[])
        for (const entry of entries) {
          const expected = createHash('sha256').update(`${entry.prev}\n${canonical({ seq: entry.seq, event: entry.event })}`).digest('hex')
          assert.equal(entry.hash, expected)
          assert.equal(entryHash(entry.prev, entry.seq, entry.event), expected)
          assert.equal(entryText(entry, canonical(entry.event)), canonical(entry))
        }
        // Encodings handed in by the caller give the same chain.
        assert.deepEqual(chainEvents(EMPTY_HEAD, list as CustomsEvent[], list.map(canonical)).entries, entries)
      }),
      { seed: 20_261_129, numRuns: 500 }
    )
  })

  it('links each entry to the one before, from the genesis hash', () => {
    const entries = chain(3)
    assert.equal(entries[0]?.prev, GENESIS)
    assert.equal(entries[0]?.seq, 1)
    assert.equal(entries[1]?.prev, entries[0]?.hash)
    assert.equal(entries[2]?.seq, 3)
    const first = entries[0] as AuditEntry
    assert.equal(first.hash, entryHash(GENESIS, 1, first.event))
    assert.match(first.hash, /^[0-9a-f]{64}$/)
  })

  it('verifies an intact chain', () => {
    const report = verifyEntries(chain(5))
    assert.deepEqual(report, { ok: true, verified: 5, firstSeq: 1, lastSeq: 5 })
  })

  it('finds an edited entry by its hash, at its position', () => {
    const entries = chain(5)
    const third = entries[2] as AuditEntry
    entries[2] = { ...third, event: { ...third.event, verdict: 'detained', reasons: ['forged'] } }
    const report = verifyEntries(entries)
    assert.equal(report.ok, false)
    assert.equal(report.break?.kind, 'edited')
    assert.equal(report.break?.seq, 3)
    assert.equal(report.break?.message, 'entry seq 3 (position 3): hash does not match its content (edited)')
    assert.equal(report.verified, 2)
  })

  it('finds an entry edited and rehashed by the prev link of the next one', () => {
    const entries = chain(5)
    const third = entries[2] as AuditEntry
    const event: CustomsEvent = { ...third.event, verdict: 'detained' }
    entries[2] = { ...third, event, hash: entryHash(third.prev, 3, event) }
    const report = verifyEntries(entries)
    assert.equal(report.break?.kind, 'edited')
    assert.equal(report.break?.seq, 4)
    assert.match(report.break?.message ?? '', /^entry seq 4 \(position 4\): prev does not match the hash of entry seq 3/)
  })

  it('finds a deleted entry by the gap in seq', () => {
    const entries = chain(5)
    entries.splice(1, 1)
    const report = verifyEntries(entries)
    assert.equal(report.break?.kind, 'deleted')
    assert.equal(report.break?.message, 'entry seq 3 (position 2): entry seq 2 is missing after seq 1 (deleted)')
  })

  it('finds reordered entries', () => {
    const entries = chain(5)
    ;[entries[2], entries[3]] = [entries[3] as AuditEntry, entries[2] as AuditEntry]
    const report = verifyEntries(entries)
    assert.equal(report.ok, false)
    // seq 4 at position 3 is a gap after seq 2; either way the break is at position 3.
    assert.equal(report.break?.where, 'position 3')
    assert.equal(report.verified, 2)
    const swapped = verifyEntries([...chain(2), ...chain(2)])
    assert.equal(swapped.break?.kind, 'reordered')
    assert.equal(swapped.break?.message, 'entry seq 1 (position 3): seq 1 follows seq 2 (reordered or duplicated)')
  })

  it('finds deleted first entries unless a trimmed head is allowed', () => {
    const trimmed = chain(6).slice(3)
    const strict = verifyEntries(trimmed)
    assert.equal(strict.break?.kind, 'deleted')
    assert.equal(strict.break?.message, 'entry seq 4 (position 1): the log starts at seq 4: entries seq 1 to 3 are missing (deleted)')
    const lenient = verifyEntries(trimmed, { allowTrimmedHead: true })
    assert.deepEqual(lenient, { ok: true, verified: 3, firstSeq: 4, lastSeq: 6 })
  })

  it('finds the newest entries missing against the recorded head', () => {
    const entries = chain(5)
    const last = entries[4] as AuditEntry
    const report = verifyEntries(entries.slice(0, 3), { head: { seq: 5, hash: last.hash } })
    assert.equal(report.break?.kind, 'deleted')
    assert.match(report.break?.message ?? '', /ends at seq 3 but its recorded head is seq 5/)
    assert.equal(verifyEntries(entries, { head: { seq: 5, hash: last.hash } }).ok, true)
  })

  it('reports what is not an entry as malformed, with its position', () => {
    const report = verifyEntries([...chain(1), { seq: 2, prev: 'x' }])
    assert.equal(report.break?.kind, 'malformed')
    assert.match(report.break?.message ?? '', /^entry seq 2 \(position 2\): is not an audit entry/)
  })
})

describe('the JSON-lines file', () => {
  let dir: string
  before(async () => {
    dir = await makeTempDir('audit-chain-')
  })
  after(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  const lines = (entries: AuditEntry[]): string => entries.map((e) => `${canonical(e)}\n`).join('')

  it('verifies an intact file, and finds an edited line and a deleted line by line number', async () => {
    const path = join(dir, 'intact.jsonl')
    await writeFile(path, lines(chain(20)))
    assert.deepEqual(await verifyAuditFile(path), { ok: true, verified: 20, firstSeq: 1, lastSeq: 20 })

    const text = (await readFile(path, 'utf8')).split('\n')
    const edited = [...text]
    edited[16] = (edited[16] as string).replace('"verdict":"cleared"', '"verdict":"detained"')
    assert.notEqual(edited[16], text[16])
    await writeFile(join(dir, 'edited.jsonl'), edited.join('\n'))
    const e = await verifyAuditFile(join(dir, 'edited.jsonl'))
    assert.equal(e.break?.message, 'entry seq 17 (line 17): hash does not match its content (edited)')

    const deleted = text.filter((_, i) => i !== 9)
    await writeFile(join(dir, 'deleted.jsonl'), deleted.join('\n'))
    const d = await verifyAuditFile(join(dir, 'deleted.jsonl'))
    assert.equal(d.break?.message, 'entry seq 11 (line 10): entry seq 10 is missing after seq 9 (deleted)')
  })

  it('reports a torn last line', async () => {
    const path = join(dir, 'torn.jsonl')
    const full = lines(chain(4))
    await writeFile(path, full.slice(0, full.length - 30))
    const report = await verifyAuditFile(path)
    assert.equal(report.break?.kind, 'torn')
    assert.equal(report.break?.message, 'line 4: is incomplete (a write cut short by a crash, or a truncation)')
    assert.equal(report.verified, 3)
  })

  it('moves a torn last line aside at open and continues the chain from the last whole line', async () => {
    const path = join(dir, 'recover.jsonl')
    const full = lines(chain(4))
    const cutAt = full.length - 30
    await writeFile(path, full.slice(0, cutAt))
    const recoveries: Array<{ tornTo?: string; tornBytes?: number }> = []
    const file = await AuditFile.open(path, (r) => recoveries.push(r))
    assert.equal(file.head.seq, 3)
    await file.append(events(2))
    await file.close()
    assert.deepEqual(await verifyAuditFile(path), { ok: true, verified: 5, firstSeq: 1, lastSeq: 5 })
    assert.equal(recoveries.length, 1)
    const aside = (await readdir(dir)).filter((f) => f.startsWith('recover.jsonl.torn-'))
    assert.equal(aside.length, 1)
    const tornText = await readFile(join(dir, aside[0] as string), 'utf8')
    assert.equal(tornText, full.slice(full.lastIndexOf('\n', cutAt - 1) + 1, cutAt))
    assert.equal(recoveries[0]?.tornBytes, Buffer.byteLength(tornText))
  })

  it('continues the chain across reopenings', async () => {
    const path = join(dir, 'reopen.jsonl')
    for (let i = 0; i < 3; i++) {
      const file = await AuditFile.open(path)
      await file.append(events(2 + i))
      await file.close()
    }
    assert.deepEqual(await verifyAuditFile(path), { ok: true, verified: 9, firstSeq: 1, lastSeq: 9 })
  })

  it('refuses to continue a file whose last whole line is not an intact entry', async () => {
    const path = join(dir, 'garbage.jsonl')
    await writeFile(path, lines(chain(2)))
    await appendFile(path, '{"seq":3,"prev":"nope"}\n')
    await assert.rejects(AuditFile.open(path), (err: unknown) => err instanceof AuditFileError && /last line is not an intact audit entry/.test(err.message))
  })
})
