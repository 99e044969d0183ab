// The admin CLI's output helpers and argument parsers: what people read must line up, say times
// plainly, and never pass a control sequence from a pulling client through to the terminal.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { expiresAt, parseRecordRef } from '../../../src/cli/admin.js'
import { clip, printable, relativeTime, shortDigest, table } from '../../../src/cli/format.js'

const NOW = Date.parse('2026-06-01T12:00:00Z')
const DIGEST = `sha256:${'0123456789abcdef'.repeat(4)}`

describe('printable', () => {
  it('shows control characters, escape sequences and C1 controls as \\xNN', () => {
    assert.equal(printable('evil\x1b[31mred\r\n'), 'evil\\x1b[31mred\\x0d\\x0a')
    assert.equal(printable('a\u009bb'), 'a\\x9bb')
  })
  it('keeps ordinary text, and shows undefined and null as empty', () => {
    assert.equal(printable('skopeo/1.9.3 ü'), 'skopeo/1.9.3 ü')
    assert.equal(printable(undefined), '')
    assert.equal(printable(null), '')
  })
})

describe('shortDigest', () => {
  it('keeps the algorithm and 12 hex digits', () => {
    assert.equal(shortDigest(DIGEST), 'sha256:0123456789ab')
  })
  it('leaves what is not a digest as it is', () => {
    assert.equal(shortDigest('v1'), 'v1')
  })
})

describe('relativeTime', () => {
  it('says how long ago, in the largest whole unit', () => {
    assert.equal(relativeTime(NOW - 42_000, NOW), '42s ago')
    assert.equal(relativeTime(NOW - 5 * 60_000 - 59_000, NOW), '5m ago')
    assert.equal(relativeTime(new Date(NOW - 3 * 3_600_000).toISOString(), NOW), '3h ago')
    assert.equal(relativeTime(NOW - 8 * 86_400_000, NOW), '8d ago')
    assert.equal(relativeTime(NOW, NOW), '0s ago')
  })
  it('says a time ahead in the units it was set to, a moment later', () => {
    assert.equal(relativeTime(NOW + 2 * 86_400_000 - 150, NOW), 'in 2d')
    assert.equal(relativeTime(NOW + 36 * 3_600_000, NOW), 'in 1d')
  })
  it('answers - for no time or a bad one', () => {
    assert.equal(relativeTime(undefined, NOW), '-')
    assert.equal(relativeTime('yesterday', NOW), '-')
  })
})

describe('table', () => {
  it('pads each column to its widest cell and leaves the last unpadded', () => {
    const text = table(['A', 'BB', 'C'], [['long', 'x', 'end'], ['s', 'yyy', '']])
    assert.equal(text, 'A     BB   C\nlong  x    end\ns     yyy\n')
  })
})

describe('clip', () => {
  it('cuts with an ellipsis only what is too long', () => {
    assert.equal(clip('abcdef', 4), 'abc…')
    assert.equal(clip('abc', 4), 'abc')
  })
})

describe('parseRecordRef', () => {
  it('takes the first component as the upstream, ports included', () => {
    assert.deepEqual(parseRecordRef(`registry.local:5000/team/app/api@${DIGEST}`), {
      upstream: 'registry.local:5000',
      repository: 'team/app/api',
      digest: DIGEST,
    })
  })
  it('refuses a tag, a missing repository and a bad digest', () => {
    assert.throws(() => parseRecordRef('docker.io/library/alpine:3.20'), /is not UPSTREAM\/REPOSITORY@DIGEST/)
    assert.throws(() => parseRecordRef(`docker.io@${DIGEST}`), /is not UPSTREAM\/REPOSITORY@DIGEST/)
    assert.throws(() => parseRecordRef('docker.io/a@sha256:ABC'), /is not a digest/)
  })
})

describe('expiresAt', () => {
  it('adds a duration to now', () => {
    assert.equal(expiresAt('7d', NOW), '2026-06-08T12:00:00.000Z')
    assert.equal(expiresAt('1h30m', NOW), '2026-06-01T13:30:00.000Z')
  })
  it('takes a time with its offset, in UTC', () => {
    assert.equal(expiresAt('2026-12-31T01:00:00+01:00', NOW), '2026-12-31T00:00:00.000Z')
  })
  it('refuses a bare number, a time without offset, and words', () => {
    assert.throws(() => expiresAt('7', NOW), /needs a unit/)
    assert.throws(() => expiresAt('2026-12-31T00:00:00', NOW), /with its offset/)
    assert.throws(() => expiresAt('next week', NOW), /neither a duration/)
  })
})
