// A web-stream reader keeps what it reads, so it gets copies and gives every lent read buffer back
// at once: a buffer kept by a consumer would shrink the readers' budget for good.

import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { READ_CHUNK, fileSource, rangeChunks, rangeStream, readBuffers } from '../../../src/cache/reader.js'

describe('rangeStream', () => {
  it('hands out copies and gives the read buffers back, so reused buffers never change what was read', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'customs-reader-'))
    try {
      const content = randomBytes(3 * READ_CHUNK + 123)
      const path = join(dir, 'blob')
      await writeFile(path, content)
      const lentBefore = readBuffers.lent
      const handle = await open(path, 'r')
      const chunks: Uint8Array[] = []
      const reader = rangeStream(fileSource(handle, content.byteLength, () => undefined), 0, content.byteLength - 1).getReader()
      for (;;) {
        const { done, value } = await reader.read()
        if (done) break
        chunks.push(value)
        assert.equal(readBuffers.lent, lentBefore, 'a read buffer is still lent after its chunk was read')
      }
      // Overwrite whatever the pool holds: kept chunks must not be views of pooled memory.
      const pooled: Buffer[] = []
      while (readBuffers.free > 0) pooled.push(readBuffers.take().fill(0))
      for (const buffer of pooled) readBuffers.give(buffer)
      assert.deepEqual(Buffer.concat(chunks), content)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

})

describe('rangeChunks', () => {
  it('gives a read buffer back once, however often its chunk is released', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'customs-reader-'))
    try {
      const content = randomBytes(READ_CHUNK + 5)
      const path = join(dir, 'blob')
      await writeFile(path, content)
      const handle = await open(path, 'r')
      const lentBefore = readBuffers.lent
      const chunks = rangeChunks(fileSource(handle, content.byteLength, () => undefined), 0, content.byteLength - 1)
      const first = await chunks.next()
      assert.ok(first.done !== true)
      assert.equal(readBuffers.lent, lentBefore + 1)
      const freeBefore = readBuffers.free
      first.value.release()
      first.value.release()
      assert.equal(readBuffers.lent, lentBefore)
      assert.equal(readBuffers.free, freeBefore + 1, 'the buffer went back to the pool twice')
      await chunks.return()
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
