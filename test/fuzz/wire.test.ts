// Fuzz: the response framing of upstream/wire.ts. Any bytes from an upstream either parse or fail
// with WireError (never another exception); a chunked body, however it is cut into chunks and
// however the socket splits it, decodes to exactly its bytes; and a body cut anywhere never
// decodes as complete.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { ChunkedDecoder, WireError, framing, parseHead } from '../../src/upstream/wire.js'
import { fuzz, thrown } from './settings.js'

/** `bytes` cut at `cuts` (offsets, any order, duplicates allowed) into consecutive pieces. */
function split(bytes: Uint8Array, cuts: readonly number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.byteLength + 1)))].sort((a, b) => a - b)
  const pieces: Uint8Array[] = []
  let from = 0
  for (const p of [...points, bytes.byteLength]) {
    pieces.push(bytes.subarray(from, p))
    from = p
  }
  return pieces
}

/** A body encoded as chunks of the given sizes (cycled), with optional extensions and trailers. */
function encodeChunked(body: Uint8Array, sizes: readonly number[], ext: string, trailer: string): Buffer {
  const parts: Buffer[] = []
  let at = 0
  for (let i = 0; at < body.byteLength; i++) {
    const n = Math.min(body.byteLength - at, sizes[i % sizes.length] as number)
    parts.push(Buffer.from(`${n.toString(16)}${ext}\r\n`), Buffer.from(body.subarray(at, at + n)), Buffer.from('\r\n'))
    at += n
  }
  parts.push(Buffer.from(`0${ext}\r\n${trailer}\r\n`))
  return Buffer.concat(parts)
}

function decode(pieces: readonly Uint8Array[]): { bytes: Buffer; done: boolean } {
  const decoder = new ChunkedDecoder()
  const out: Buffer[] = []
  let done = false
  for (const piece of pieces) {
    if (done) break
    done = decoder.feed(piece, (view) => out.push(Buffer.from(view)))
  }
  return { bytes: Buffer.concat(out), done }
}

const sizes = fc.array(fc.integer({ min: 1, max: 300 }), { minLength: 1, maxLength: 6 })
const cuts = fc.array(fc.nat(), { maxLength: 12 })
const ext = fc.constantFrom('', ';a=1', ';name="x y"', ' ;q')
const trailer = fc.constantFrom('', 'Digest: sha-256=abc\r\n', 'A: 1\r\nB: \r\n')

describe('fuzz: chunked decoding', () => {
  it('decodes any body, chunked any way and split anywhere, to exactly its bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2000 }), sizes, cuts, ext, trailer, (body, s, c, e, t) => {
        const encoded = encodeChunked(body, s, e, t)
        const { bytes, done } = decode(split(encoded, c))
        assert.equal(done, true)
        assert.ok(bytes.equals(Buffer.from(body)))
      }),
      fuzz(1000)
    )
  })

  it('never reports a body cut short as complete', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 500 }), sizes, cuts, fc.nat(), (body, s, c, cutAt) => {
        const encoded = encodeChunked(body, s, '', '')
        const short = encoded.subarray(0, cutAt % encoded.byteLength)
        // A prefix of a valid encoding is never malformed, only incomplete.
        assert.equal(decode(split(short, c)).done, false)
      }),
      fuzz(1000)
    )
  })

  it('takes any bytes as chunked framing without throwing anything but WireError', () => {
    const chunky = fc.array(fc.oneof(fc.constantFrom('\r\n', '0', 'a', ';', ':', ' ', 'ffffffffffff', '\n', 'x: y'), fc.string({ maxLength: 8 })), { maxLength: 30 })
    fc.assert(
      fc.property(fc.oneof(chunky.map((p) => Buffer.from(p.join(''), 'latin1')), fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b))), cuts, (bytes, c) => {
        const err = thrown(() => decode(split(bytes, c)))
        assert.ok(err === undefined || err instanceof WireError, String(err))
      }),
      fuzz(2000)
    )
  })
})

describe('fuzz: response heads', () => {
  const token = fc.stringMatching(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,12}$/)
  const line = fc.oneof(
    fc.tuple(token, fc.string({ maxLength: 20 })).map(([n, v]) => `${n}: ${v}`),
    fc.constantFrom('Content-Length: 12', 'Content-Length: 1, 1', 'Content-Length: x', 'Transfer-Encoding: chunked', 'Transfer-Encoding: gzip', ' folded', 'no colon'),
    fc.string({ maxLength: 30 })
  )
  const status = fc.oneof(fc.constantFrom('HTTP/1.1 200 OK', 'HTTP/1.0 204 No Content', 'HTTP/1.1 307', 'HTTP/2 200'), fc.string({ maxLength: 20 }))

  it('parse and frame or fail with WireError, and frame only what the rules allow', () => {
    fc.assert(
      fc.property(status, fc.array(line, { maxLength: 8 }), (first, lines) => {
        const err = thrown(() => {
          const { status: code, headers } = parseHead([first, ...lines].join('\r\n'))
          const f = framing(code, headers)
          if (f.kind === 'chunked') assert.equal(headers.get('content-length'), null)
          if (f.kind === 'length') assert.ok(Number.isSafeInteger(f.remaining) && f.remaining > 0)
        })
        assert.ok(err === undefined || err instanceof WireError, String(err))
      }),
      fuzz(2000)
    )
  })
})
