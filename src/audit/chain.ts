// The hash chain that makes the audit log tamper-evident. Each stored entry is
// `{ seq, prev, hash, event }` with `hash = sha256hex(prev + "\n" + canonical({ seq, event }))` and
// `prev` the hash of the entry before it (64 zeros before the first). Editing an entry breaks its
// own hash; deleting or reordering entries breaks the seq sequence or the prev link of the next one.
// What a plain hash chain cannot show by itself: the removal of the newest entries (checked
// against the head kept beside the log when there is one), and a rewrite of every entry from the
// edited one onwards, which needs the head copied elsewhere to be caught.

import { hash as oneShotHash } from 'node:crypto'
import type { CustomsEvent } from './events.js'

/** The `prev` of the first entry of a chain. */
export const GENESIS = '0'.repeat(64)

export interface AuditEntry {
  /** 1 for the first entry of the chain, then +1 per entry. */
  readonly seq: number
  readonly prev: string
  readonly hash: string
  readonly event: CustomsEvent
}

/** Where a chain ends: what the next entry links to. seq 0 is the empty chain. */
export interface ChainHead {
  readonly seq: number
  readonly hash: string
}

export const EMPTY_HEAD: ChainHead = Object.freeze({ seq: 0, hash: GENESIS })

/**
 * JSON with object keys sorted and no whitespace, so that one value has one encoding whoever
 * writes it. Undefined members are left out, as JSON.stringify does; only plain JSON values are
 * expected (events are built from strings, numbers, arrays and plain objects). Every answered pull
 * emits an event that is encoded here, so this is written for speed: keys sorted in place, and
 * strings that need no escaping quoted without JSON.stringify (same text either way).
 */
export function canonical(value: unknown): string {
  if (typeof value === 'string') return quote(value)
  if (value === null || typeof value !== 'object') {
    // JSON.stringify gives undefined for undefined and functions: no JSON value, encode as null.
    return JSON.stringify(value) ?? 'null'
  }
  if (Array.isArray(value)) {
    let out = '['
    for (let i = 0; i < value.length; i++) {
      // A hole or an undefined element is null, as JSON.stringify writes it.
      const item: unknown = value[i]
      out += i === 0 ? '' : ','
      out += item === undefined ? 'null' : canonical(item)
    }
    return `${out}]`
  }
  const record = value as Record<string, unknown>
  const keys = sortedKeys(record)
  let out = ''
  for (const key of keys) {
    const member = record[key]
    if (member === undefined) continue
    out += out === '' ? '{' : ','
    out += `${quote(key)}:${canonical(member)}`
  }
  return out === '' ? '{}' : `${out}}`
}

/** Characters JSON.stringify escapes (quote, backslash, controls) and surrogates, paired or not. */
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/

/** JSON.stringify(text), without its cost for the usual string that needs no escape. */
function quote(text: string): string {
  return NEEDS_ESCAPE.test(text) ? JSON.stringify(text) : `"${text}"`
}

/**
 * Own enumerable keys in code-unit order, as Array.prototype.sort orders strings. Events have a
 * dozen keys at most, where an insertion sort beats sort()'s comparator calls; larger objects
 * (a detail from elsewhere) take sort().
 */
function sortedKeys(record: object): string[] {
  const keys = Object.keys(record)
  if (keys.length > 16) return keys.sort()
  for (let i = 1; i < keys.length; i++) {
    const key = keys[i] as string
    let j = i - 1
    for (; j >= 0 && (keys[j] as string) > key; j--) keys[j + 1] = keys[j] as string
    keys[j + 1] = key
  }
  return keys
}

/** The SHA-256 of a text's UTF-8 bytes, in hex: one call, where createHash took three. */
function sha256Hex(text: string): string {
  return oneShotHash('sha256', text, 'hex')
}

/** The text an entry's hash covers: `prev`, a newline, and canonical({ seq, event }). */
function hashedText(prev: string, seq: number, eventJson: string): string {
  // canonical({ seq, event }) with its two keys in order, from the event's own encoding.
  return `${prev}\n{"event":${eventJson},"seq":${canonical(seq)}}`
}

export function entryHash(prev: string, seq: number, event: CustomsEvent): string {
  return sha256Hex(hashedText(prev, seq, canonical(event)))
}

/**
 * canonical(entry), from the canonical encoding of its event: what the Redis stream and the file
 * store, without encoding the event a second time.
 */
export function entryText(entry: AuditEntry, eventJson: string): string {
  return `{"event":${eventJson},"hash":${quote(entry.hash)},"prev":${quote(entry.prev)},"seq":${canonical(entry.seq)}}`
}

/** The entry that follows `head`, for an event whose canonical encoding is `eventJson`. */
function chainOne(head: ChainHead, event: CustomsEvent, eventJson: string): AuditEntry {
  const seq = head.seq + 1
  return { seq, prev: head.hash, hash: sha256Hex(hashedText(head.hash, seq, eventJson)), event }
}

/**
 * Entries for `events` in order after `head`, and the new head. `encoded` holds canonical(event)
 * of each event when the caller has them already (a store that also writes entryText, or retries).
 */
export function chainEvents(
  head: ChainHead,
  events: readonly CustomsEvent[],
  encoded?: readonly string[]
): { entries: AuditEntry[]; head: ChainHead } {
  const entries: AuditEntry[] = []
  let current = head
  for (let i = 0; i < events.length; i++) {
    const event = events[i] as CustomsEvent
    const entry = chainOne(current, event, encoded?.[i] ?? canonical(event))
    entries.push(entry)
    current = { seq: entry.seq, hash: entry.hash }
  }
  return { entries, head: current }
}

/** How a chain is broken at an entry. */
export type BreakKind = 'edited' | 'deleted' | 'reordered' | 'malformed' | 'torn'

export interface ChainBreak {
  readonly kind: BreakKind
  /** The seq of the offending entry, when it has one. */
  readonly seq?: number
  /** Where it is in its medium: `line 17`, `stream id 17-0`. */
  readonly where: string
  /** One positioned sentence: `entry seq 17 (line 17): hash does not match its content (edited)`. */
  readonly message: string
}

export interface VerifyReport {
  readonly ok: boolean
  /** Entries checked and found linked, before the break if there is one. */
  readonly verified: number
  /** The seq of the first entry; above 1 only where a trimmed head was allowed. */
  readonly firstSeq?: number
  readonly lastSeq?: number
  readonly break?: ChainBreak
}

export interface VerifyOptions {
  /**
   * Accept a chain whose first entry has seq > 1: a Redis stream trimmed by its retention. A file
   * is never trimmed by Customs, so for it a missing start is a deletion.
   */
  readonly allowTrimmedHead?: boolean
  /** The head recorded beside the log: entries missing at its end are then detected. */
  readonly head?: ChainHead
}

const HEX64 = /^[0-9a-f]{64}$/

/**
 * Checks entries one at a time, in stored order, and stops at the first break. Pure: the caller
 * reads the medium (a file line by line, a stream page by page) and says where each entry was.
 */
export class ChainVerifier {
  readonly #options: VerifyOptions
  #verified = 0
  #first: number | undefined
  #last: ChainHead | undefined
  #break: ChainBreak | undefined

  constructor(options: VerifyOptions = {}) {
    this.#options = options
  }

  get broken(): boolean {
    return this.#break !== undefined
  }

  /** Checks the next entry, `raw` as parsed from storage; false once the chain is broken. */
  push(raw: unknown, where: string): boolean {
    if (this.#break !== undefined) return false
    if (!isEntry(raw)) {
      const seq = isRecord(raw) && Number.isSafeInteger(raw.seq) ? (raw.seq as number) : undefined
      return this.#fail('malformed', where, 'is not an audit entry { seq, prev, hash, event }', seq)
    }
    const { seq, prev, hash, event } = raw
    if (entryHash(prev, seq, event) !== hash) {
      return this.#fail('edited', where, 'hash does not match its content (edited)', seq)
    }
    const last = this.#last
    if (last === undefined) {
      if (seq === 1 && prev !== GENESIS) {
        return this.#fail('edited', where, 'the first entry does not link to the genesis hash (edited)', seq)
      }
      if (seq > 1 && this.#options.allowTrimmedHead !== true) {
        const missing = seq === 2 ? 'entry seq 1 is' : `entries seq 1 to ${seq - 1} are`
        return this.#fail('deleted', where, `the log starts at seq ${seq}: ${missing} missing (deleted)`, seq)
      }
      this.#first = seq
    } else if (seq <= last.seq) {
      const message = `seq ${seq} follows seq ${last.seq} (reordered or duplicated)`
      return this.#fail('reordered', where, message, seq)
    } else if (seq > last.seq + 1) {
      const missing = seq === last.seq + 2 ? `entry seq ${last.seq + 1} is` : `entries seq ${last.seq + 1} to ${seq - 1} are`
      return this.#fail('deleted', where, `${missing} missing after seq ${last.seq} (deleted)`, seq)
    } else if (prev !== last.hash) {
      const message = `prev does not match the hash of entry seq ${last.seq} (an entry was replaced)`
      return this.#fail('edited', where, message, seq)
    }
    this.#last = { seq, hash }
    this.#verified++
    return true
  }

  /** Records a line that was cut short by a crash (the last line, without its newline). */
  torn(where: string): void {
    if (this.#break !== undefined) return
    this.#fail('torn', where, 'is incomplete (a write cut short by a crash, or a truncation)')
  }

  /** The outcome, once every entry was pushed. */
  finish(): VerifyReport {
    const head = this.#options.head
    if (this.#break === undefined && head !== undefined && head.seq > 0) {
      const last = this.#last
      if (last === undefined || last.seq < head.seq) {
        const after = last === undefined ? 'the log is empty' : `the log ends at seq ${last.seq}`
        this.#break = {
          kind: 'deleted',
          seq: head.seq,
          where: 'head',
          message: `${after} but its recorded head is seq ${head.seq}: the newest entries are missing (deleted)`,
        }
      } else if (last.seq > head.seq || last.hash !== head.hash) {
        this.#break = {
          kind: 'edited',
          seq: last.seq,
          where: 'head',
          message: `entry seq ${last.seq} does not match the recorded head (seq ${head.seq}, hash ${head.hash.slice(0, 12)}...)`,
        }
      }
    }
    return {
      ok: this.#break === undefined,
      verified: this.#verified,
      ...(this.#first !== undefined ? { firstSeq: this.#first } : {}),
      ...(this.#last !== undefined ? { lastSeq: this.#last.seq } : {}),
      ...(this.#break !== undefined ? { break: this.#break } : {}),
    }
  }

  #fail(kind: BreakKind, where: string, why: string, seq?: number): false {
    const subject = seq === undefined ? where : `entry seq ${seq} (${where})`
    this.#break = { kind, where, message: `${subject}: ${why}`, ...(seq !== undefined ? { seq } : {}) }
    return false
  }
}

/** Verifies entries already in memory, each at `position i` (1-based) unless `where` says. */
export function verifyEntries(
  entries: Iterable<unknown>,
  options: VerifyOptions & { where?: (index: number, entry: unknown) => string } = {}
): VerifyReport {
  const verifier = new ChainVerifier(options)
  const where = options.where ?? ((i: number) => `position ${i + 1}`)
  let i = 0
  for (const entry of entries) {
    if (!verifier.push(entry, where(i, entry))) break
    i++
  }
  return verifier.finish()
}

/** A one-line summary of a report: what was verified, or the first break. */
export function describeReport(report: VerifyReport): string {
  if (report.break !== undefined) return report.break.message
  if (report.verified === 0) return 'the audit log is empty'
  return `verified ${report.verified} entries from seq ${report.firstSeq} to seq ${report.lastSeq}`
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function isEntry(value: unknown): value is AuditEntry {
  if (!isRecord(value)) return false
  const { seq, prev, hash, event } = value
  return (
    typeof seq === 'number' &&
    Number.isSafeInteger(seq) &&
    seq >= 1 &&
    typeof prev === 'string' &&
    HEX64.test(prev) &&
    typeof hash === 'string' &&
    HEX64.test(hash) &&
    isRecord(event) &&
    typeof event.type === 'string'
  )
}
