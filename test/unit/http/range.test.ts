// Parsing blob Range headers: every accepted form, clamping, the unsatisfiable and malformed
// cases with their Content-Range header, and a property over generated valid ranges.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { CustomsError } from '../../../src/errors.js'
import { parseRange } from '../../../src/http/range.js'

/** Checks the error is RANGE_INVALID carrying `Content-Range: bytes *\/<size>`. */
function isRangeInvalid(size: number): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof CustomsError, `expected a CustomsError, got ${String(err)}`)
    assert.equal(err.code, 'RANGE_INVALID')
    assert.equal(err.status, 416)
    assert.deepEqual(err.headers, { 'Content-Range': `bytes */${size}` })
    return true
  }
}

describe('parseRange', () => {
  describe('when there is no Range header', () => {
    it('returns undefined for null and undefined', () => {
      assert.equal(parseRange(null, 100), undefined)
      assert.equal(parseRange(undefined, 100), undefined)
    })
  })

  describe('when the range is closed', () => {
    it('returns start and end inclusive', () => {
      assert.deepEqual(parseRange('bytes=0-0', 100), { start: 0, end: 0 })
      assert.deepEqual(parseRange('bytes=10-19', 100), { start: 10, end: 19 })
      assert.deepEqual(parseRange('bytes=0-99', 100), { start: 0, end: 99 })
      assert.deepEqual(parseRange('bytes=99-99', 100), { start: 99, end: 99 })
    })

    it('returns the end clamped to size-1 when it is past the blob', () => {
      assert.deepEqual(parseRange('bytes=10-1000', 100), { start: 10, end: 99 })
      assert.deepEqual(parseRange('bytes=0-100', 100), { start: 0, end: 99 })
      assert.deepEqual(parseRange('bytes=0-999999999999999', 100), { start: 0, end: 99 })
    })

    it('throws RANGE_INVALID when it ends before it starts', () => {
      assert.throws(() => parseRange('bytes=20-10', 100), isRangeInvalid(100))
    })
  })

  describe('when the range is open-ended', () => {
    it('returns from start to the last byte', () => {
      assert.deepEqual(parseRange('bytes=0-', 100), { start: 0, end: 99 })
      assert.deepEqual(parseRange('bytes=42-', 100), { start: 42, end: 99 })
      assert.deepEqual(parseRange('bytes=99-', 100), { start: 99, end: 99 })
    })
  })

  describe('when the range is a suffix', () => {
    it('returns the last N bytes', () => {
      assert.deepEqual(parseRange('bytes=-1', 100), { start: 99, end: 99 })
      assert.deepEqual(parseRange('bytes=-10', 100), { start: 90, end: 99 })
      assert.deepEqual(parseRange('bytes=-100', 100), { start: 0, end: 99 })
    })

    it('returns the whole blob when N is larger than the blob', () => {
      assert.deepEqual(parseRange('bytes=-1000', 100), { start: 0, end: 99 })
    })

    it('throws RANGE_INVALID for a suffix of zero bytes', () => {
      assert.throws(() => parseRange('bytes=-0', 100), isRangeInvalid(100))
    })
  })

  describe('when the range starts at or beyond the end of the blob', () => {
    for (const header of [
      'bytes=100-',
      'bytes=100-200',
      'bytes=1000-2000',
      'bytes=999999999999999-',
    ]) {
      it(`throws RANGE_INVALID for ${header}`, () => {
        assert.throws(() => parseRange(header, 100), isRangeInvalid(100))
      })
    }
  })

  describe('when the blob is empty', () => {
    for (const header of ['bytes=0-', 'bytes=0-0', 'bytes=-1', 'bytes=-100']) {
      it(`throws RANGE_INVALID with bytes */0 for ${header}`, () => {
        assert.throws(() => parseRange(header, 0), isRangeInvalid(0))
      })
    }

    it('returns undefined without a Range header', () => {
      assert.equal(parseRange(null, 0), undefined)
    })
  })

  describe('when the header varies in case and whitespace', () => {
    it('returns the range', () => {
      assert.deepEqual(parseRange('Bytes=1-2', 10), { start: 1, end: 2 })
      assert.deepEqual(parseRange('BYTES = 1 - 2 ', 10), { start: 1, end: 2 })
      assert.deepEqual(parseRange('  bytes=3-', 10), { start: 3, end: 9 })
    })
  })

  describe('when the header is malformed', () => {
    const malformed = [
      '',
      'bytes',
      'bytes=',
      'bytes=-',
      'bytes=a-b',
      'bytes=1-2,4-5',
      'bytes=0-1, 3-4',
      'items=0-1',
      'bytes 0-1',
      'bytes=1.5-2',
      'bytes=+1-2',
      'bytes=-1-2',
      'bytes=0x10-20',
      'bytes=1e3-',
      'bytes=1234567890123456-',
      'bytes=0--1',
      '0-1',
    ]
    for (const header of malformed) {
      it(`throws RANGE_INVALID for ${JSON.stringify(header)}`, () => {
        assert.throws(() => parseRange(header, 100), isRangeInvalid(100))
      })
    }

    // Node accepts request headers up to 16 KiB by default, so a client controls this much input.
    it('throws in linear time on a 16 KB header of whitespace (no regex backtracking)', () => {
      const pad = ' '.repeat(16_000)
      for (const header of [`bytes=${pad}x`, `bytes=1${pad.slice(8000)}-${pad.slice(8000)}x`]) {
        const started = performance.now()
        assert.throws(() => parseRange(header, 100), isRangeInvalid(100))
        const ms = performance.now() - started
        assert.ok(ms < 50, `took ${ms.toFixed(1)} ms`)
      }
    })
  })
})

describe('parseRange properties', () => {
  const size = fc.integer({ min: 1, max: 2 ** 40 })

  /** A valid header for a blob of `size` bytes, in one of the three forms. */
  const validRange = size.chain((n) =>
    fc.tuple(
      fc.constant(n),
      fc.oneof(
        fc
          .integer({ min: 0, max: n - 1 })
          .chain((start) =>
            fc.integer({ min: start, max: start + 2 ** 41 }).map((end) => `bytes=${start}-${end}`)
          ),
        fc.integer({ min: 0, max: n - 1 }).map((start) => `bytes=${start}-`),
        fc.integer({ min: 1, max: 2 ** 45 }).map((suffix) => `bytes=-${suffix}`)
      )
    )
  )

  it('returns 0 <= start <= end < size for any valid range', () => {
    fc.assert(
      fc.property(validRange, ([n, header]) => {
        const r = parseRange(header, n)
        assert.ok(r !== undefined)
        assert.ok(Number.isSafeInteger(r.start) && Number.isSafeInteger(r.end))
        assert.ok(
          0 <= r.start && r.start <= r.end && r.end < n,
          `${header} of ${n}: ${JSON.stringify(r)}`
        )
      }),
      { numRuns: 1000 }
    )
  })

  it('returns the asked range exactly when it lies inside the blob', () => {
    fc.assert(
      fc.property(size, fc.nat(), fc.nat(), (n, a, b) => {
        const start = a % n
        const end = start + (b % (n - start))
        assert.deepEqual(parseRange(`bytes=${start}-${end}`, n), { start, end })
      }),
      { numRuns: 500 }
    )
  })

  it('either returns a range inside the blob or throws RANGE_INVALID, for any header', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1000 }), fc.string({ maxLength: 40 }), (n, tail) => {
        for (const header of [tail, `bytes=${tail}`]) {
          try {
            const r = parseRange(header, n)
            assert.ok(r !== undefined && 0 <= r.start && r.start <= r.end && r.end < n)
          } catch (err) {
            isRangeInvalid(n)(err)
          }
        }
      }),
      { numRuns: 1000 }
    )
  })
})
