// Parsing a blob request's Range header (RFC 9110 §14): one `bytes=` range, or none.

import { CustomsError } from '../errors.js'

export interface ByteRange {
  readonly start: number
  /** Inclusive. */
  readonly end: number
}

/**
 * The range to serve for a blob of `size` bytes: undefined for a whole-blob answer, a range for
 * 206, or RANGE_INVALID (416) for a malformed, multi-part or unsatisfiable range.
 */
export function parseRange(header: string | null | undefined, size: number): ByteRange | undefined {
  if (header === null || header === undefined) return undefined
  const unsatisfiable = (why: string) =>
    new CustomsError('RANGE_INVALID', `range ${JSON.stringify(header.slice(0, 100))} ${why}`, {
      headers: { 'Content-Range': `bytes */${size}` },
    })
  // Bounded before the regex: a client controls up to 16 KiB of header.
  const m = header.length > 100 ? null : /^\s*bytes\s*=\s*(\d{0,15})\s*-\s*(\d{0,15})\s*$/i.exec(header)
  if (m === null) throw unsatisfiable('is not a single bytes range')
  const [, first = '', last = ''] = m
  if (first === '' && last === '') throw unsatisfiable('names no bytes')
  let start: number
  let end: number
  if (first === '') {
    // A suffix range: the last N bytes.
    const n = Number(last)
    if (n === 0) throw unsatisfiable('is empty')
    start = Math.max(0, size - n)
    end = size - 1
  } else {
    start = Number(first)
    end = last === '' ? size - 1 : Math.min(Number(last), size - 1)
    if (last !== '' && Number(last) < start) throw unsatisfiable('ends before it starts')
  }
  if (start >= size) throw unsatisfiable(`starts beyond the ${size}-byte blob`)
  return { start, end }
}
