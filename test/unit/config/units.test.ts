// Durations and sizes as operators write them: examples, refusals, and round-trip properties.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { formatBytes, parseDuration, parseSize } from '../../../src/config/units.js'

const DURATION_UNITS = { w: 604_800_000, d: 86_400_000, h: 3_600_000, m: 60_000, s: 1000, ms: 1 }
const SIZE_UNITS = {
  B: 1,
  KB: 1e3,
  MB: 1e6,
  GB: 1e9,
  TB: 1e12,
  KiB: 2 ** 10,
  MiB: 2 ** 20,
  GiB: 2 ** 30,
  TiB: 2 ** 40,
}

describe('parseDuration', () => {
  const cases: [string | number, number][] = [
    ['30s', 30_000],
    ['5m', 300_000],
    ['1h30m', 5_400_000],
    ['250ms', 250],
    ['7d', 604_800_000],
    ['2w', 1_209_600_000],
    ['1.5s', 1500],
    [' 10s ', 10_000],
    ['1000', 1000],
    [0, 0],
    [42, 42],
  ]
  for (const [text, ms] of cases) {
    it(`reads ${JSON.stringify(text)} as ${ms}ms`, () => assert.equal(parseDuration(text), ms))
  }
  for (const bad of ['', '  ', 'soon', '5x', '-1s', '1h 30m', '30S', 's']) {
    it(`refuses ${JSON.stringify(bad)}`, () => assert.throws(() => parseDuration(bad), Error))
  }
  for (const bad of [-1, Number.NaN, Number.POSITIVE_INFINITY]) {
    it(`refuses the number ${bad}`, () => assert.throws(() => parseDuration(bad), Error))
  }

  it('reads back any sum of whole units written unit by unit', () => {
    const parts = fc.record({
      w: fc.nat(100),
      d: fc.nat(100),
      h: fc.nat(100),
      m: fc.nat(1000),
      s: fc.nat(1000),
      ms: fc.nat(10_000),
    })
    fc.assert(
      fc.property(parts, (p) => {
        const entries = Object.entries(p) as [keyof typeof DURATION_UNITS, number][]
        const text = entries.map(([unit, n]) => (n === 0 ? '' : `${n}${unit}`)).join('') || '0ms'
        const expected = entries.reduce((sum, [unit, n]) => sum + n * DURATION_UNITS[unit], 0)
        assert.equal(parseDuration(text), expected)
      })
    )
  })
  it('reads a bare number as milliseconds, as text or as a number', () => {
    fc.assert(
      fc.property(fc.nat(), (n) => {
        assert.equal(parseDuration(String(n)), n)
        assert.equal(parseDuration(`${n}ms`), n)
        assert.equal(parseDuration(n), n)
      })
    )
  })
})

describe('parseSize', () => {
  const cases: [string | number, number][] = [
    ['512MiB', 512 * 2 ** 20],
    ['50GiB', 50 * 2 ** 30],
    ['10GB', 10e9],
    ['10 gb', 10e9],
    ['1.5KiB', 1536],
    ['1024', 1024],
    ['7b', 7],
    [0, 0],
    [4096, 4096],
  ]
  for (const [text, bytes] of cases) {
    it(`reads ${JSON.stringify(text)} as ${bytes} bytes`, () => {
      assert.equal(parseSize(text), bytes)
    })
  }
  for (const bad of ['', 'big', '10 parsecs', '-1GB', '1e3', 'GB', '99999999TiB']) {
    it(`refuses ${JSON.stringify(bad)}`, () => assert.throws(() => parseSize(bad), Error))
  }
  for (const bad of [-1, 1.5, Number.NaN, 2 ** 60]) {
    it(`refuses the number ${bad}`, () => assert.throws(() => parseSize(bad), Error))
  }

  it('reads back any whole number of any unit, in any letter case', () => {
    const unit = fc.constantFrom(...(Object.keys(SIZE_UNITS) as (keyof typeof SIZE_UNITS)[]))
    fc.assert(
      fc.property(fc.nat(1_000_000), unit, fc.boolean(), (n, u, lower) => {
        const bytes = n * SIZE_UNITS[u]
        fc.pre(Number.isSafeInteger(bytes))
        assert.equal(parseSize(`${n}${lower ? u.toLowerCase() : u}`), bytes)
      })
    )
  })
  it('reads formatBytes output back to within its rounding', () => {
    fc.assert(
      fc.property(fc.nat({ max: 2 ** 50 }), (bytes) => {
        const text = formatBytes(bytes)
        const back = parseSize(text)
        // One decimal of the chosen unit: off by at most half a tenth of it.
        const exponent = bytes < 1024 ? 0 : Math.floor(Math.log(bytes) / Math.log(1024))
        const unit = 1024 ** Math.min(4, exponent)
        assert.ok(Math.abs(back - bytes) <= 0.05 * unit + 1, `${bytes} -> ${text} -> ${back}`)
      })
    )
  })
})
