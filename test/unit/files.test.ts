// Reading the files an operator names, with a bound: whole files within it, a clear refusal past
// it, and never more than the bound in memory, whatever the file's size claims to be.

import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { FileTooLargeError, readBounded, readFailure, readTextBounded } from '../../src/files.js'

let dir: string
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'customs-files-'))
})
after(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe('readBounded', () => {
  it('reads a file whole at, under and far under the bound', async () => {
    for (const size of [0, 1, 4095, 4096, 4097, 10_000]) {
      const file = join(dir, `f${size}`)
      const bytes = Buffer.alloc(size, 0x61)
      await writeFile(file, bytes)
      assert.deepEqual(await readBounded(file, 10_000), bytes, `a file of ${size} bytes`)
    }
    assert.equal(await readTextBounded(join(dir, 'f1'), 1), 'a')
  })

  it('refuses a file one byte over the bound, by its size, before reading it', async () => {
    const file = join(dir, 'over')
    await writeFile(file, Buffer.alloc(10_001))
    await assert.rejects(readBounded(file, 10_000), (err: unknown) => {
      assert.ok(err instanceof FileTooLargeError)
      assert.equal(err.size, 10_001)
      assert.equal(err.limit, 10_000)
      assert.equal(err.message, `${file} is over the 9.8 KiB limit for this file`)
      assert.equal(readFailure(err), 'over the 9.8 KiB limit')
      return true
    })
  })

  it('stops reading a device that reports no size at one byte past the bound', async () => {
    // /dev/zero stats as 0 bytes and never ends: without counting what is read, it would fill memory.
    await assert.rejects(readBounded('/dev/zero', 64 * 1024), (err: unknown) => {
      assert.ok(err instanceof FileTooLargeError)
      assert.equal(err.size, 64 * 1024 + 1)
      return true
    })
  })

  it('reads a FIFO whose writer stops within the bound, and refuses one that goes past it', async () => {
    const fifo = join(dir, 'fifo')
    execFileSync('mkfifo', [fifo])
    const small = readBounded(fifo, 100_000)
    await writeFile(fifo, Buffer.alloc(50_000, 0x62))
    assert.deepEqual(await small, Buffer.alloc(50_000, 0x62))
    const refused = assert.rejects(readBounded(fifo, 100_000), FileTooLargeError)
    // The writer is refused once the reader stops and closes (EPIPE): that is the point.
    await writeFile(fifo, Buffer.alloc(300_000)).catch(() => {})
    await refused
  })

  it('passes fs errors on with their codes, and readFailure names only the code', async () => {
    await assert.rejects(readBounded(join(dir, 'missing'), 10), (err: NodeJS.ErrnoException) => err.code === 'ENOENT')
    await assert.rejects(readBounded(dir, 10), (err: unknown) => {
      assert.equal(readFailure(err), 'EISDIR')
      return true
    })
    assert.equal(readFailure(new Error('no code')), 'unreadable')
  })
})
