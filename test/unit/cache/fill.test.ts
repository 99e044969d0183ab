// One blob fill and its readers: bytes stream to readers as they are written, the last byte waits
// until the whole blob is verified, a mismatch or overflow aborts every reader short and leaves nothing on disk.

import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, open, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { Readable } from 'node:stream'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, describe, it } from 'node:test'
import { Fill } from '../../../src/cache/fill.js'
import { READ_CHUNK, fileSource, fillSource, rangeStream, type ByteSource } from '../../../src/cache/reader.js'
import { CustomsError, type ErrorCode } from '../../../src/errors.js'
import { digestOf, type Digest } from '../../../src/oci/digest.js'
import { readableBody, type BodyStream } from '../../../src/upstream/body.js'

/** An upstream body the test feeds by hand. */
function controlledBody() {
  let controller!: ReadableStreamDefaultController<Uint8Array>
  let cancelled: unknown
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c
    },
    cancel(reason) {
      cancelled = reason ?? true
    },
  })
  return {
    stream: readableBody(Readable.fromWeb(stream as import('node:stream/web').ReadableStream<Uint8Array>)),
    push: (bytes: Uint8Array | string) =>
      controller.enqueue(typeof bytes === 'string' ? Buffer.from(bytes) : bytes),
    close: () => controller.close(),
    fail: (err: Error) => controller.error(err),
    cancelled: () => cancelled,
  }
}

interface Collected {
  bytes: Buffer
  error: unknown
}

/** Reads a stream to its end or error, `pace` ms between reads. */
async function collect(stream: ReadableStream<Uint8Array>, pace = 0): Promise<Collected> {
  const reader = stream.getReader()
  const chunks: Buffer[] = []
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      chunks.push(Buffer.from(value))
      if (pace > 0) await sleep(pace)
    }
    return { bytes: Buffer.concat(chunks), error: undefined }
  } catch (error) {
    return { bytes: Buffer.concat(chunks), error }
  }
}

/** A signal that never aborts. */
function never(): AbortSignal {
  return new AbortController().signal
}

/** Whether a promise settles within `ms`. */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  const pending = Symbol('pending')
  const winner = await Promise.race([promise.then(() => true), sleep(ms, pending)])
  return winner !== pending
}

async function until(check: () => boolean, what: string, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`)
    await sleep(2)
  }
}

function assertCode(err: unknown, code: ErrorCode): void {
  assert.ok(err instanceof CustomsError, `expected a CustomsError, got ${String(err)}`)
  assert.equal(err.code, code)
}

let root: string
let n = 0

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'customs-fill-'))
})
after(async () => {
  await rm(root, { recursive: true, force: true })
})

/** A fill of `content` (or of a declared digest/size) with its own temp and final paths. */
function newFill(content: Buffer, declared: { digest?: Digest; size?: number } = {}) {
  n++
  const tmp = join(root, `t${n}`, 'tmp')
  const part = join(tmp, 'blob.part')
  const final = join(root, `t${n}`, 'blobs', 'final')
  const fill = new Fill(
    declared.digest ?? digestOf(content),
    declared.size ?? content.byteLength,
    part,
    final
  )
  return { fill, tmp, part, final }
}

/** Runs `fill` on a body that sends `content` whole and ends. */
async function runWhole(fill: Fill, content: Buffer): Promise<void> {
  const body = controlledBody()
  const running = fill.run(body.stream, never(), 5000)
  body.push(content)
  body.close()
  await running
}

describe('Fill with rangeStream readers', () => {
  describe('when a reader reads a fill in progress', () => {
    it('returns bytes as they are written, but the last byte only once all are verified', async () => {
      const content = Buffer.from('hello world')
      const { fill, final } = newFill(content)
      const body = controlledBody()
      const reader = rangeStream(fillSource(fill), 0, content.byteLength - 1).getReader()
      const running = fill.run(body.stream, never(), 5000)

      body.push('hello ')
      const first = await reader.read()
      assert.equal(Buffer.from(first.value ?? []).toString(), 'hello ')

      body.push('world')
      const second = await reader.read()
      assert.equal(Buffer.from(second.value ?? []).toString(), 'worl')

      await until(() => fill.written === content.byteLength, 'all bytes written')
      const last = reader.read()
      assert.equal(await settlesWithin(last, 50), false, 'the last byte came before verification')
      assert.equal(fill.state, 'filling')

      body.close()
      assert.equal(Buffer.from((await last).value ?? []).toString(), 'd')
      assert.equal((await reader.read()).done, true)
      await running
      assert.equal(fill.state, 'committed')
      assert.deepEqual(await readFile(final), content)
    })

    it('holds back the last byte of a sub-range until verification', async () => {
      const content = Buffer.from('0123456789')
      const { fill } = newFill(content)
      const body = controlledBody()
      const reader = rangeStream(fillSource(fill), 2, 5).getReader()
      void fill.run(body.stream, never(), 5000)
      body.push(content)
      assert.equal(Buffer.from((await reader.read()).value ?? []).toString(), '234')
      const last = reader.read()
      assert.equal(await settlesWithin(last, 30), false)
      body.close()
      assert.equal(Buffer.from((await last).value ?? []).toString(), '5')
      assert.equal((await reader.read()).done, true)
    })
  })

  describe('when the bytes verify but the cache cannot commit them', () => {
    it('still gives the reader every byte, and commits nothing', async () => {
      const content = randomBytes(3 * READ_CHUNK + 17)
      const { fill, final } = newFill(content)
      // The final file's folder cannot be made: a regular file has its name.
      const blocked = join(final, '..')
      await mkdir(join(blocked, '..'), { recursive: true })
      await writeFile(blocked, 'not a folder')
      const body = controlledBody()
      const collected = collect(rangeStream(fillSource(fill), 0, content.byteLength - 1))
      const running = fill.run(body.stream, never(), 5000)
      body.push(content)
      body.close()
      const { bytes, error } = await collected
      await running
      assert.equal(error, undefined)
      assert.deepEqual(bytes, content)
      assert.equal(fill.verified, true)
      assert.equal(fill.state, 'failed')
      assert.equal(existsSync(final), false)
    })
  })

  describe('when the bytes hash to another digest', () => {
    it('errors the reader before its last byte and leaves no file behind', async () => {
      const content = Buffer.from('hello world')
      const { fill, tmp, part, final } = newFill(content)
      const body = controlledBody()
      const reading = collect(rangeStream(fillSource(fill), 0, content.byteLength - 1))
      const running = fill.run(body.stream, never(), 5000)
      body.push('hello ')
      body.push('WORLD')
      body.close()
      const { bytes, error } = await reading
      assertCode(error, 'DIGEST_INVALID')
      assert.ok(bytes.byteLength < content.byteLength, `reader got ${bytes.byteLength} bytes`)
      assert.deepEqual(bytes, Buffer.from('hello WORL').subarray(0, bytes.byteLength))
      await running
      assert.equal(fill.state, 'failed')
      assertCode(fill.error, 'DIGEST_INVALID')
      assert.equal(existsSync(part), false)
      assert.deepEqual(await readdir(tmp), [])
      assert.equal(existsSync(final), false)
    })

    it('errors a reader that joins after the failure without sending anything', async () => {
      const content = Buffer.from('abc')
      const { fill } = newFill(content)
      const body = controlledBody()
      const running = fill.run(body.stream, never(), 5000)
      body.push('abd')
      body.close()
      await running
      const { bytes, error } = await collect(rangeStream(fillSource(fill), 0, 2))
      assertCode(error, 'DIGEST_INVALID')
      assert.equal(bytes.byteLength, 0)
    })
  })

  describe('when the abort option is given', () => {
    it('calls abort with the error and ends the stream short, instead of erroring it', async () => {
      const content = Buffer.from('hello world')
      const { fill } = newFill(content)
      const body = controlledBody()
      const aborts: unknown[] = []
      const reading = collect(
        rangeStream(fillSource(fill), 0, 10, { abort: (err) => aborts.push(err) })
      )
      void fill.run(body.stream, never(), 5000)
      body.push('hello WORLD')
      body.close()
      const { bytes, error } = await reading
      assert.equal(error, undefined)
      assert.ok(bytes.byteLength < content.byteLength)
      assert.equal(aborts.length, 1)
      assertCode(aborts[0], 'DIGEST_INVALID')
    })
  })

  describe('when the upstream sends more bytes than declared', () => {
    it('fails with DIGEST_INVALID, never writes past the size, and leaves no file', async () => {
      const content = Buffer.from('12345')
      const { fill, part, final } = newFill(content)
      const body = controlledBody()
      const reading = collect(rangeStream(fillSource(fill), 0, 4))
      const running = fill.run(body.stream, never(), 5000)
      body.push('123')
      body.push('456')
      body.push('789')
      body.close()
      await running
      assert.equal(fill.state, 'failed')
      assertCode(fill.error, 'DIGEST_INVALID')
      assert.ok(fill.written <= 5)
      const { bytes, error } = await reading
      assertCode(error, 'DIGEST_INVALID')
      assert.ok(bytes.byteLength < 5)
      assert.equal(existsSync(part), false)
      assert.equal(existsSync(final), false)
    })

    it('fails for a body that is the right content plus one byte in one chunk', async () => {
      const content = Buffer.from('12345')
      const { fill } = newFill(content)
      const body = controlledBody()
      const running = fill.run(body.stream, never(), 5000)
      body.push('123456')
      body.close()
      await running
      assertCode(fill.error, 'DIGEST_INVALID')
    })
  })

  describe('when the upstream sends fewer bytes than declared', () => {
    it('fails with DIGEST_INVALID and leaves no file', async () => {
      const content = Buffer.from('12345')
      const { fill, part, final } = newFill(content)
      const body = controlledBody()
      const running = fill.run(body.stream, never(), 5000)
      body.push('1234')
      body.close()
      await running
      assertCode(fill.error, 'DIGEST_INVALID')
      assert.equal(existsSync(part), false)
      assert.equal(existsSync(final), false)
    })
  })

  describe('when the bytes match', () => {
    it('commits the final file with the content and removes the temp file', async () => {
      const content = randomBytes(1000)
      const { fill, part, final } = newFill(content)
      const body = controlledBody()
      const running = fill.run(body.stream, never(), 5000)
      body.push(content.subarray(0, 300))
      body.push(content.subarray(300))
      body.close()
      await running
      await fill.done
      assert.equal(fill.state, 'committed')
      assert.equal(fill.error, undefined)
      assert.equal(fill.written, 1000)
      assert.deepEqual(await readFile(final), content)
      assert.equal(existsSync(part), false)
    })

    it('commits a sha512 blob', async () => {
      const content = Buffer.from('sha512 content')
      const like = `sha512:${'0'.repeat(128)}` as Digest
      const { fill, final } = newFill(content, { digest: digestOf(content, like) })
      await runWhole(fill, content)
      assert.equal(fill.state, 'committed')
      assert.deepEqual(await readFile(final), content)
    })
  })

  describe('when the blob is empty', () => {
    it('commits an empty file and ends the reader with no bytes', async () => {
      const content = Buffer.alloc(0)
      const { fill, final } = newFill(content)
      const body = controlledBody()
      const reading = collect(rangeStream(fillSource(fill), 0, -1))
      const running = fill.run(body.stream, never(), 5000)
      body.close()
      await running
      assert.equal(fill.state, 'committed')
      assert.equal((await readFile(final)).byteLength, 0)
      const { bytes, error } = await reading
      assert.equal(error, undefined)
      assert.equal(bytes.byteLength, 0)
    })

    it('fails an empty blob whose upstream sends a byte', async () => {
      const { fill, final } = newFill(Buffer.alloc(0))
      const body = controlledBody()
      const running = fill.run(body.stream, never(), 5000)
      body.push('x')
      body.close()
      await running
      assertCode(fill.error, 'DIGEST_INVALID')
      assert.equal(existsSync(final), false)
    })
  })

  describe('when two readers read at different paces', () => {
    it('returns the full correct bytes to both', async () => {
      const content = randomBytes(2 * READ_CHUNK + 12345)
      const { fill } = newFill(content)
      const body = controlledBody()
      const fast = collect(rangeStream(fillSource(fill), 0, content.byteLength - 1))
      const running = fill.run(body.stream, never(), 5000)
      const step = 64 * 1024
      let slow: Promise<Collected> | undefined
      for (let at = 0; at < content.byteLength; at += step) {
        body.push(content.subarray(at, at + step))
        await sleep(0)
        // The slow reader joins part-way, and sleeps between its reads.
        if (slow === undefined && at > READ_CHUNK)
          slow = collect(rangeStream(fillSource(fill), 0, content.byteLength - 1), 5)
      }
      body.close()
      await running
      assert.ok(slow !== undefined)
      const [a, b] = await Promise.all([fast, slow])
      assert.equal(a.error, undefined)
      assert.equal(b.error, undefined)
      assert.ok(a.bytes.equals(content), 'fast reader bytes differ')
      assert.ok(b.bytes.equals(content), 'slow reader bytes differ')
    })
  })

  describe('when a reader joins after the fill committed and no reader held it open', () => {
    // blob-store's getOrFill can hand out fillSource(fill) for a fill that has just committed (its
    // `#fills` entry is removed only after the handle is closed).
    it('returns the bytes or an error, not an endless stream of empty chunks', async () => {
      const content = Buffer.from('committed already')
      const { fill } = newFill(content)
      const body = controlledBody()
      const running = fill.run(body.stream, never(), 5000)
      body.push(content)
      body.close()
      await running
      assert.equal(fill.state, 'committed')
      const reader = rangeStream(fillSource(fill), 0, content.byteLength - 1).getReader()
      const chunks: Buffer[] = []
      let reads = 0
      let error: unknown
      try {
        for (; reads < 100; reads++) {
          const { done, value } = await reader.read()
          if (done) break
          chunks.push(Buffer.from(value))
        }
      } catch (err) {
        error = err
      }
      await reader.cancel().catch(() => {})
      assert.ok(reads < 100, `${reads} reads returned ${Buffer.concat(chunks).byteLength} bytes`)
      if (error === undefined) assert.deepEqual(Buffer.concat(chunks), content)
    })
  })

  describe('when the upstream stalls or the fill times out', () => {
    it('fails as UPSTREAM_UNAVAILABLE after the idle timeout, not as a mismatch', async () => {
      const content = Buffer.from('never comes')
      const { fill, part } = newFill(content)
      const body = controlledBody()
      const running = fill.run(body.stream, never(), 30)
      body.push('nev')
      await running
      assert.equal(fill.state, 'failed')
      assertCode(fill.error, 'UPSTREAM_UNAVAILABLE')
      assert.ok(body.cancelled() !== undefined)
      assert.equal(existsSync(part), false)
    })

    it('fails as UPSTREAM_UNAVAILABLE when the fill signal aborts', async () => {
      const content = Buffer.from('never comes')
      const { fill } = newFill(content)
      const body = controlledBody()
      const controller = new AbortController()
      const running = fill.run(body.stream, controller.signal, 5000)
      body.push('nev')
      await until(() => fill.written === 3, 'the first bytes written')
      controller.abort(new Error('fill timeout'))
      await running
      assert.equal(fill.state, 'failed')
      assertCode(fill.error, 'UPSTREAM_UNAVAILABLE')
    })

    it('fails as UPSTREAM_UNAVAILABLE when the upstream body errors', async () => {
      const content = Buffer.from('broken')
      const { fill } = newFill(content)
      const body = controlledBody()
      const reading = collect(rangeStream(fillSource(fill), 0, 5))
      const running = fill.run(body.stream, never(), 5000)
      body.push('bro')
      body.fail(new Error('socket hang up'))
      await running
      assertCode(fill.error, 'UPSTREAM_UNAVAILABLE')
      const { error } = await reading
      assertCode(error, 'UPSTREAM_UNAVAILABLE')
    })
  })

  describe('when the temp file is opened before the upstream answers (prepare)', () => {
    it('creates the temp file and its missing folder at once, and the run uses that file', async () => {
      const content = randomBytes(4096)
      const { fill, tmp, part, final } = newFill(content)
      fill.prepare()
      await until(() => existsSync(part), 'the prepared temp file')
      assert.deepEqual(await readdir(tmp), ['blob.part'])
      await runWhole(fill, content)
      assert.equal(fill.state, 'committed')
      assert.deepEqual(await readFile(final), content)
      assert.deepEqual(await readdir(tmp), [])
    })

    it('removes the temp file when the fill is discarded instead of run (the upstream refused)', async () => {
      const content = Buffer.from('refused')
      const { fill, tmp, part } = newFill(content)
      fill.prepare()
      await until(() => existsSync(part), 'the prepared temp file')
      await fill.discard()
      assert.deepEqual(await readdir(tmp), [])
      // Twice is harmless (a caller's cleanup path may run again).
      await fill.discard()
    })

    it('fails the run as STORAGE_FAILED when the prepared open failed, and leaves nothing behind', async () => {
      const content = Buffer.from('no room')
      const { fill, tmp, part, final } = newFill(content)
      // A folder where the temp folder should be: the open fails with ENOTDIR.
      await mkdir(join(tmp, '..'), { recursive: true })
      await writeFile(tmp, 'not a folder')
      fill.prepare()
      const body = controlledBody()
      await fill.run(body.stream, never(), 5000)
      assert.equal(fill.state, 'failed')
      assertCode(fill.error, 'STORAGE_FAILED')
      assert.match(fill.error?.message ?? '', /ENOTDIR/)
      assert.ok(body.cancelled() !== undefined, 'the upstream body was left open')
      assert.equal(existsSync(part), false)
      assert.equal(existsSync(final), false)
    })

    it('never creates a second temp file when run without prepare, nor lets discard touch a running fill', async () => {
      const content = Buffer.from('once')
      const { fill, tmp, final } = newFill(content)
      const body = controlledBody()
      const running = fill.run(body.stream, never(), 5000)
      fill.prepare()
      await fill.discard()
      body.push(content)
      body.close()
      await running
      assert.equal(fill.state, 'committed')
      assert.deepEqual(await readFile(final), content)
      assert.deepEqual(await readdir(tmp), [])
    })
  })
})

describe('rangeStream over a committed file', () => {
  async function committed(content: Buffer) {
    const path = join(root, `file-${++n}`)
    const { writeFile } = await import('node:fs/promises')
    await writeFile(path, content)
    const handle = await open(path, 'r')
    let released = 0
    const source = fileSource(handle, content.byteLength, () => released++)
    return { source, released: () => released }
  }

  describe('when a sub-range is asked', () => {
    it('returns exactly those bytes and releases the source', async () => {
      const content = Buffer.from('0123456789abcdef')
      const { source, released } = await committed(content)
      const counted: number[] = []
      const { bytes, error } = await collect(
        rangeStream(source, 3, 9, { onBytes: (k) => counted.push(k) })
      )
      assert.equal(error, undefined)
      assert.equal(bytes.toString(), '3456789')
      assert.equal(
        counted.reduce((a, b) => a + b, 0),
        7
      )
      assert.equal(released(), 1)
    })

    it('returns a one-byte range and the last byte alone', async () => {
      const content = Buffer.from('0123456789')
      const a = await committed(content)
      assert.equal((await collect(rangeStream(a.source, 4, 4))).bytes.toString(), '4')
      const b = await committed(content)
      assert.equal((await collect(rangeStream(b.source, 9, 9))).bytes.toString(), '9')
    })

    it('returns a range spanning several read chunks whole', async () => {
      const content = randomBytes(READ_CHUNK * 2 + 7)
      const { source } = await committed(content)
      const { bytes } = await collect(rangeStream(source, 5, content.byteLength - 3))
      assert.ok(bytes.equals(content.subarray(5, content.byteLength - 2)))
    })
  })

  describe('when the client goes away', () => {
    it('releases the source once, on abort and on cancel', async () => {
      const content = randomBytes(READ_CHUNK * 3)
      const { source, released } = await committed(content)
      const controller = new AbortController()
      const reader = rangeStream(source, 0, content.byteLength - 1, {
        signal: controller.signal,
      }).getReader()
      await reader.read()
      controller.abort()
      assert.equal(released(), 1)
      await reader.cancel()
      assert.equal(released(), 1)
    })
  })

  describe('when the file is shorter than recorded', () => {
    it('errors the stream instead of hanging', async () => {
      const path = join(root, `short-${++n}`)
      const { writeFile } = await import('node:fs/promises')
      await writeFile(path, 'abc')
      const source = fileSource(await open(path, 'r'), 10, () => {})
      const { bytes, error } = await collect(rangeStream(source, 0, 9))
      assert.ok(error instanceof Error)
      assert.equal(bytes.toString(), 'abc')
    })
  })
})

describe('Fill pacing', () => {
  /** The body's pause and resume calls, in order. */
  function tracked(body: ReturnType<typeof controlledBody>) {
    const calls: string[] = []
    const stream: BodyStream = {
      start: (sink) => body.stream.start(sink),
      pause: () => (calls.push('pause'), body.stream.pause()),
      resume: () => (calls.push('resume'), body.stream.resume()),
      destroy: () => body.stream.destroy(),
    }
    return { stream, calls }
  }

  const MiB = 1024 * 1024
  const content = randomBytes(24 * MiB)

  it('waits for a reader that keeps up, which then reads every byte from memory', async () => {
    // A long patience: a loaded machine must not make this reader look stalled.
    const fill = new Fill(digestOf(content), content.byteLength, join(root, 'paced', 'tmp', 'part'), join(root, 'paced', 'final'), undefined, 10_000)
    const body = controlledBody()
    const { stream, calls } = tracked(body)
    const running = fill.run(stream, never(), 5000)
    const source = fillSource(fill)
    let fromFile = 0
    const counted: ByteSource = { ...source, readInto: (p, t) => (fromFile++, source.readInto(p, t)) }
    for (let at = 0; at < content.byteLength; at += MiB) body.push(content.subarray(at, at + MiB))
    body.close()
    // A reader slower than the body (2 ms between reads) but far from stalled.
    const got = await collect(rangeStream(counted, 0, content.byteLength - 1), 2)
    await running
    assert.equal(got.error, undefined)
    assert.ok(got.bytes.equals(content))
    assert.equal(fill.state, 'committed')
    assert.ok(calls.includes('pause'), 'the upstream was paused for the reader')
    assert.equal(fromFile, 0, 'the reader never fell behind the memory window')
  })

  it('stops waiting for a reader that stalls, and completes without it', async () => {
    const { fill } = newFill(content)
    const body = controlledBody()
    const running = fill.run(body.stream, never(), 5000)
    const source = fillSource(fill)
    for (let at = 0; at < content.byteLength; at += MiB) body.push(content.subarray(at, at + MiB))
    body.close()
    // The reader takes nothing: the fill waits its patience out once, then runs to its end.
    await running
    assert.equal(fill.state, 'committed')
    const got = await collect(rangeStream(source, 0, content.byteLength - 1))
    assert.ok(got.bytes.equals(content))
  })
})
