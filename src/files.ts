// Reading the small files an operator names (the config file, secret files, certificates and
// keys, trust roots, policies, the console token) with a bound. A file named by mistake (a disk
// image, a log, /dev/zero, a FIFO nobody writes to the end of) must be refused with a message,
// not read into memory until the process runs out of it. The size stat() gives is not enough:
// devices and FIFOs report 0 and a file may grow while it is read, so what is read is counted.

import { open } from 'node:fs/promises'
import { formatBytes } from './config/units.js'

/**
 * Why a file could not be read, short enough for a parenthesis after its name: the fs code
 * (ENOENT, EACCES) without node's message, which may quote more than the path, or the bound.
 */
export function readFailure(err: unknown): string {
  if (err instanceof FileTooLargeError) return `over the ${formatBytes(err.limit, ' ')} limit`
  return (err as NodeJS.ErrnoException | undefined)?.code ?? 'unreadable'
}

/** A file holds more than the bound its reader set. */
export class FileTooLargeError extends Error {
  override readonly name = 'FileTooLargeError'
  /** The bytes known to be in the file: its size, or at least what was read before stopping. */
  readonly size: number
  readonly limit: number
  /** Node's error code style, so callers that print `err.code` say something useful. */
  readonly code = 'EFBIG'

  constructor(file: string, size: number, limit: number) {
    super(`${file} is over the ${formatBytes(limit, ' ')} limit for this file`)
    this.size = size
    this.limit = limit
  }
}

/**
 * The whole file, at most `limit` bytes; FileTooLargeError past it, and fs errors (ENOENT,
 * EACCES, EISDIR...) as they come.
 */
export async function readBounded(file: string, limit: number): Promise<Buffer> {
  const handle = await open(file, 'r')
  try {
    const info = await handle.stat()
    // Only a regular file's size means anything (a folder's is its entries' table: reading it
    // fails with EISDIR below, which says more).
    const size = info.isFile() ? info.size : 0
    if (size > limit) throw new FileTooLargeError(file, size, limit)
    // One byte more than the limit tells a file at the limit from one past it.
    let buffer = Buffer.allocUnsafe(Math.min(limit, Math.max(size, 4096)) + 1)
    let length = 0
    for (;;) {
      if (length === buffer.byteLength) {
        // The file grew since stat, or is a device or FIFO that reported no size.
        const bigger = Buffer.allocUnsafe(Math.min(limit + 1, buffer.byteLength * 2))
        buffer.copy(bigger, 0, 0, length)
        buffer = bigger
      }
      const { bytesRead } = await handle.read(buffer, length, buffer.byteLength - length, null)
      if (bytesRead === 0) return buffer.subarray(0, length)
      length += bytesRead
      if (length > limit) throw new FileTooLargeError(file, length, limit)
    }
  } finally {
    await handle.close()
  }
}

/** The file as UTF-8 text, bounded as readBounded. */
export async function readTextBounded(file: string, limit: number): Promise<string> {
  return (await readBounded(file, limit)).toString('utf8')
}
