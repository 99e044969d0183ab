// The audit chain as a JSON-lines file (config `audit.file`): one entry per line, appended, with a
// chain of its own (the file is one replica's record, independent of Redis). At open the chain
// continues from the file's last line. A last line without its newline is a write a crash cut
// short: it was never a whole entry, so it is moved aside to `<file>.torn-<time>` (kept as
// evidence, logged) and the file is cut back to its last whole line. A last whole line that is not
// a valid entry stops the start: continuing would chain onto something that is not the log.

import { createReadStream } from 'node:fs'
import { open, stat, truncate, writeFile, type FileHandle } from 'node:fs/promises'
import { CustomsError } from '../errors.js'
import {
  ChainVerifier,
  EMPTY_HEAD,
  canonical,
  chainEvents,
  entryHash,
  entryText,
  type AuditEntry,
  type ChainHead,
  type VerifyReport,
} from './chain.js'
import type { CustomsEvent } from './events.js'

/** The longest line read back; an entry is far smaller (reasons and details are bounded). */
export const AUDIT_LINE_MAX = 1024 * 1024

/** The audit file cannot be continued; the message says why and what to do. */
export class AuditFileError extends CustomsError<'STATE_UNAVAILABLE'> {
  constructor(message: string) {
    super('STATE_UNAVAILABLE', message)
    this.name = 'AuditFileError'
  }
}

export interface AuditFileRecovery {
  /** Where the torn last line was moved, when there was one. */
  readonly tornTo?: string
  readonly tornBytes?: number
}

export class AuditFile {
  readonly path: string
  #handle: FileHandle
  #head: ChainHead
  /** Set after a failed write, which may have left a partial line: recover before the next. */
  #dirty = false

  private constructor(path: string, handle: FileHandle, head: ChainHead) {
    this.path = path
    this.#handle = handle
    this.#head = head
  }

  /** Opens (creating) the file for appending, after recovering its head; see the file comment. */
  static async open(path: string, onRecovery?: (r: AuditFileRecovery) => void): Promise<AuditFile> {
    const { head, recovery } = await recoverHead(path)
    if (recovery.tornTo !== undefined) onRecovery?.(recovery)
    const handle = await open(path, 'a', 0o640)
    return new AuditFile(path, handle, head)
  }

  get head(): ChainHead {
    return this.#head
  }

  /** Appends the events as entries, in one write; the head moves only when the write succeeded. */
  async append(events: readonly CustomsEvent[]): Promise<AuditEntry[]> {
    if (this.#dirty) {
      await this.#handle.close().catch(() => undefined)
      const { head } = await recoverHead(this.path)
      this.#handle = await open(this.path, 'a', 0o640)
      this.#head = head
      this.#dirty = false
    }
    const encoded = events.map(canonical)
    const { entries, head } = chainEvents(this.#head, events, encoded)
    const text = entries.map((e, i) => `${entryText(e, encoded[i] as string)}\n`).join('')
    try {
      await this.#handle.write(text)
    } catch (err) {
      this.#dirty = true
      throw err
    }
    this.#head = head
    return entries
  }

  async close(): Promise<void> {
    await this.#handle.close()
  }
}

/** The head of the chain in the file, after moving a torn last line aside. */
async function recoverHead(path: string): Promise<{ head: ChainHead; recovery: AuditFileRecovery }> {
  let size: number
  try {
    size = (await stat(path)).size
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { head: EMPTY_HEAD, recovery: {} }
    throw err
  }
  if (size === 0) return { head: EMPTY_HEAD, recovery: {} }
  const handle = await open(path, 'r')
  let recovery: AuditFileRecovery = {}
  let last: string
  try {
    const tail = await readTail(handle, size)
    const cut = tail.bytes.lastIndexOf(0x0a)
    const tooLong = (): AuditFileError =>
      new AuditFileError(`audit file ${path}: its last line is longer than ${AUDIT_LINE_MAX} bytes; move the file aside`)
    if (cut !== tail.bytes.length - 1) {
      if (cut < 0 && tail.start > 0) throw tooLong()
      // A torn last line: keep its bytes aside, cut the file back to the last whole line.
      const torn = tail.bytes.subarray(cut + 1)
      const tornTo = `${path}.torn-${new Date().toISOString().replace(/[:.]/g, '-')}`
      await writeFile(tornTo, torn, { flag: 'wx', mode: 0o640 })
      await truncate(path, tail.start + cut + 1)
      recovery = { tornTo, tornBytes: torn.length }
      if (cut < 0) return { head: EMPTY_HEAD, recovery }
    }
    const before = cut === 0 ? -1 : tail.bytes.lastIndexOf(0x0a, cut - 1)
    if (before < 0 && tail.start > 0) throw tooLong()
    last = tail.bytes.subarray(before + 1, cut).toString('utf8')
  } finally {
    await handle.close()
  }
  return { head: headOf(path, last), recovery }
}

/** The last 2 * AUDIT_LINE_MAX bytes of the file (all of it when smaller). */
async function readTail(handle: FileHandle, size: number): Promise<{ bytes: Buffer; start: number }> {
  const length = Math.min(size, AUDIT_LINE_MAX * 2)
  const start = size - length
  const buffer = Buffer.alloc(length)
  let read = 0
  while (read < length) {
    const { bytesRead } = await handle.read(buffer, read, length - read, start + read)
    if (bytesRead === 0) break
    read += bytesRead
  }
  return { bytes: buffer.subarray(0, read), start }
}

function headOf(path: string, line: string): ChainHead {
  let entry: Partial<AuditEntry>
  try {
    entry = JSON.parse(line) as Partial<AuditEntry>
  } catch {
    throw new AuditFileError(`audit file ${path}: its last line is not JSON; run customs audit verify --file and move the file aside`)
  }
  const { seq, prev, hash, event } = entry
  const valid =
    typeof seq === 'number' && Number.isSafeInteger(seq) && seq >= 1 && typeof prev === 'string' && typeof hash === 'string' && typeof event === 'object' && event !== null && entryHash(prev, seq, event) === hash
  if (!valid) {
    throw new AuditFileError(`audit file ${path}: its last line is not an intact audit entry; run customs audit verify --file and move the file aside`)
  }
  return { seq, hash }
}

/**
 * Verifies a JSON-lines audit file line by line, streaming. A last line without its newline is
 * reported as torn; a line that does not parse as malformed; breaks of the chain by the verifier.
 */
export async function verifyAuditFile(path: string): Promise<VerifyReport> {
  const verifier = new ChainVerifier()
  const stream = createReadStream(path, { encoding: 'utf8', highWaterMark: 64 * 1024 })
  let pending = ''
  let line = 0
  const take = (text: string): boolean => {
    line++
    let raw: unknown
    try {
      raw = JSON.parse(text)
    } catch {
      raw = text
    }
    return verifier.push(raw, `line ${line}`)
  }
  try {
    for await (const chunk of stream as AsyncIterable<string>) {
      pending += chunk
      let at: number
      while ((at = pending.indexOf('\n')) >= 0) {
        const text = pending.slice(0, at)
        pending = pending.slice(at + 1)
        if (!take(text)) return verifier.finish()
      }
      if (pending.length > AUDIT_LINE_MAX) {
        take(pending.slice(0, 200))
        return verifier.finish()
      }
    }
  } finally {
    stream.destroy()
  }
  if (pending !== '') verifier.torn(`line ${line + 1}`)
  return verifier.finish()
}
