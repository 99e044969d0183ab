// The blob store on a temp folder: verified writes, single-flight fills (miss, join, hit), fetch
// failures, LRU eviction that spares open readers, and re-opening (re-index and temp sweep).

import { Readable } from 'node:stream'
import { readableBody, type BodyStream } from '../../../src/upstream/body.js'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises'
import { hostname, tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, beforeEach, describe, it } from 'node:test'
import {
  BlobStore,
  type BlobFetcher,
  type BlobStoreOptions,
} from '../../../src/cache/blob-store.js'
import { rangeStream, type ByteSource } from '../../../src/cache/reader.js'
import { CustomsError, type ErrorCode } from '../../../src/errors.js'
import { createLogger } from '../../../src/observability/logger.js'
import { Metrics } from '../../../src/observability/metrics.js'
import { digestOf, type Digest } from '../../../src/oci/digest.js'
import { MemoryStateStore } from '../../../src/state/memory.js'

const logger = createLogger({ level: 'silent' })

let base: string
let root: string
let metrics: Metrics
let state: MemoryStateStore
let n = 0

before(async () => {
  base = await mkdtemp(join(tmpdir(), 'customs-blobstore-'))
})
after(async () => {
  await rm(base, { recursive: true, force: true })
})
beforeEach(() => {
  root = join(base, `r${++n}`)
  metrics = new Metrics()
  state = new MemoryStateStore()
})

function openStore(extra: Partial<BlobStoreOptions> = {}): Promise<BlobStore> {
  return BlobStore.open({
    root,
    maxSize: 1024 * 1024,
    fillTimeout: 10_000,
    idleTimeout: 5_000,
    lockTtl: 30_000,
    state,
    metrics,
    logger,
    ...extra,
  })
}

function assertCode(err: unknown, code: ErrorCode): true {
  assert.ok(err instanceof CustomsError, `expected a CustomsError, got ${String(err)}`)
  assert.equal(err.code, code)
  return true
}

async function readAll(
  source: ByteSource,
  size: number
): Promise<{ bytes: Buffer; error: unknown }> {
  const reader = rangeStream(source, 0, size - 1).getReader()
  const chunks: Buffer[] = []
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) return { bytes: Buffer.concat(chunks), error: undefined }
      chunks.push(Buffer.from(value))
    }
  } catch (error) {
    return { bytes: Buffer.concat(chunks), error }
  }
}

function fromWeb(stream: ReadableStream<Uint8Array>): BodyStream {
  return readableBody(Readable.fromWeb(stream as import('node:stream/web').ReadableStream<Uint8Array>))
}

/** A fetcher whose body the test feeds, counting its calls. */
function controlledFetcher() {
  let controller: ReadableStreamDefaultController<Uint8Array> | undefined
  let calls = 0
  const fetcher: BlobFetcher = async () => {
    calls++
    return fromWeb(
      new ReadableStream<Uint8Array>({
        start(c) {
          controller = c
        },
      })
    )
  }
  return {
    fetcher,
    calls: () => calls,
    push: (bytes: Uint8Array) => controller?.enqueue(bytes),
    close: () => controller?.close(),
  }
}

/** A fetcher that answers `content` at once. */
function fetcherOf(content: Uint8Array, counter?: { calls: number }): BlobFetcher {
  return async () => {
    if (counter !== undefined) counter.calls++
    return readableBody(Readable.from([content], { objectMode: false }))
  }
}

async function fillCount(result: string): Promise<number> {
  return (await metrics.fills.get()).values.find((v) => v.labels.result === result)?.value ?? 0
}

async function evictionCount(): Promise<number> {
  return (await metrics.evictions.get()).values[0]?.value ?? 0
}

async function until(
  check: () => boolean | Promise<boolean>,
  what: string,
  ms = 3000
): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`)
    await sleep(2)
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** A pid that no process has on this host now. */
function deadPid(): number {
  for (let pid = 2 ** 22 - 1; pid > 100_000; pid--) if (!isAlive(pid)) return pid
  throw new Error('no free pid found')
}

const blob = (size: number, fill?: number): Buffer =>
  fill === undefined ? randomBytes(size) : Buffer.alloc(size, fill)

describe('BlobStore', () => {
  describe('putVerified', () => {
    describe('when the bytes hash to another digest', () => {
      it('throws DIGEST_INVALID and stores nothing', async () => {
        const store = await openStore()
        const good = Buffer.from('manifest')
        const digest = digestOf(good)
        await assert.rejects(store.putVerified(digest, Buffer.from('tampered')), (e) =>
          assertCode(e, 'DIGEST_INVALID')
        )
        assert.equal(existsSync(store.paths.blob(digest)), false)
        assert.equal(store.totalBytes, 0)
        assert.equal(store.blobCount, 0)
        assert.equal(await store.readSmall(digest), null)
      })
    })

    describe('when the bytes match', () => {
      it('stores them under their digest, readable with readSmall', async () => {
        const store = await openStore()
        const bytes = Buffer.from('{"schemaVersion":2}')
        const digest = digestOf(bytes)
        await store.putVerified(digest, bytes)
        assert.equal(existsSync(store.paths.blob(digest)), true)
        assert.deepEqual(await store.readSmall(digest), bytes)
        assert.equal(store.totalBytes, bytes.byteLength)
        assert.equal(store.blobCount, 1)
        assert.deepEqual(
          (await readdir(store.paths.processTmp)).filter((f) => f !== 'owner'),
          []
        )
      })

      it('stores a sha512 blob', async () => {
        const bytes = Buffer.from('sha512 blob')
        const digest = `sha512:${createHash('sha512').update(bytes).digest('hex')}` as Digest
        const store = await openStore()
        await store.putVerified(digest, bytes)
        assert.deepEqual(await store.readSmall(digest), bytes)
      })

      it('counts a blob stored twice once', async () => {
        const store = await openStore()
        const bytes = Buffer.from('twice')
        await store.putVerified(digestOf(bytes), bytes)
        await store.putVerified(digestOf(bytes), bytes)
        assert.equal(store.totalBytes, 5)
        assert.equal(store.blobCount, 1)
      })
    })
  })

  describe('readSmall', () => {
    describe('when the blob is absent', () => {
      it('returns null', async () => {
        const store = await openStore()
        assert.equal(await store.readSmall(digestOf(Buffer.from('never stored'))), null)
      })
    })

    describe('when the file on disk no longer matches its digest', () => {
      it('returns null, removes the file and forgets it', async () => {
        const store = await openStore()
        const bytes = Buffer.from('original')
        const digest = digestOf(bytes)
        await store.putVerified(digest, bytes)
        await writeFile(store.paths.blob(digest), 'corrupted')
        assert.equal(await store.readSmall(digest), null)
        assert.equal(existsSync(store.paths.blob(digest)), false)
        assert.equal(store.totalBytes, 0)
      })
    })
  })

  describe('getOrFill', () => {
    describe('when the blob is asked twice in turn', () => {
      it('returns miss with the upstream bytes, then hit from disk without fetching', async () => {
        const store = await openStore()
        const content = blob(5000)
        const digest = digestOf(content)
        const counter = { calls: 0 }
        const first = await store.getOrFill(digest, content.byteLength, fetcherOf(content, counter))
        assert.equal(first.result, 'miss')
        assert.deepEqual((await readAll(first.source, content.byteLength)).bytes, content)
        await until(async () => (await fillCount('committed')) === 1, 'the commit')
        const second = await store.getOrFill(
          digest,
          content.byteLength,
          fetcherOf(content, counter)
        )
        assert.equal(second.result, 'hit')
        assert.deepEqual((await readAll(second.source, content.byteLength)).bytes, content)
        assert.equal(counter.calls, 1)
        assert.equal(store.totalBytes, content.byteLength)
      })
    })

    describe('when many callers ask for one cold blob at once', () => {
      it('fetches once: one miss, the rest join, and everyone gets the bytes', async () => {
        const store = await openStore()
        const content = blob(300_000)
        const digest = digestOf(content)
        const upstream = controlledFetcher()
        const answers = await Promise.all(
          Array.from({ length: 6 }, () =>
            store.getOrFill(digest, content.byteLength, upstream.fetcher)
          )
        )
        assert.deepEqual(answers.map((a) => a.result).sort(), [
          'join',
          'join',
          'join',
          'join',
          'join',
          'miss',
        ])
        assert.equal(upstream.calls(), 1)
        const reads = answers.map((a) => readAll(a.source, content.byteLength))
        upstream.push(content.subarray(0, 100_000))
        await sleep(5)
        upstream.push(content.subarray(100_000))
        upstream.close()
        for (const r of await Promise.all(reads)) {
          assert.equal(r.error, undefined)
          assert.ok(r.bytes.equals(content))
        }
        assert.equal(upstream.calls(), 1)
      })
    })

    describe('when the fetcher throws', () => {
      it('propagates the error, releases the lock, and a later call fetches again', async () => {
        const store = await openStore()
        const content = blob(100)
        const digest = digestOf(content)
        let calls = 0
        const failing: BlobFetcher = async () => {
          calls++
          throw new CustomsError('UPSTREAM_UNAVAILABLE', 'upstream down')
        }
        await assert.rejects(store.getOrFill(digest, 100, failing), (e) =>
          assertCode(e, 'UPSTREAM_UNAVAILABLE')
        )
        await assert.rejects(store.getOrFill(digest, 100, failing), (e) =>
          assertCode(e, 'UPSTREAM_UNAVAILABLE')
        )
        assert.equal(calls, 2)
        // The temp files opened while the upstream was asked were removed with the refusals.
        assert.deepEqual(await readdir(store.paths.processTmp), ['owner'])
        const started = Date.now()
        const retry = await store.getOrFill(digest, 100, fetcherOf(content))
        assert.ok(Date.now() - started < 90, 'the retry waited for a lock that should be free')
        assert.equal(retry.result, 'miss')
        assert.deepEqual((await readAll(retry.source, 100)).bytes, content)
      })
    })

    describe('when the upstream bytes do not match the digest', () => {
      it('errors the reader short, stores nothing, counts a mismatch, refetches', async () => {
        const store = await openStore()
        const content = blob(4000, 7)
        const digest = digestOf(content)
        const counter = { calls: 0 }
        const bad = await store.getOrFill(
          digest,
          content.byteLength,
          fetcherOf(blob(4000, 8), counter)
        )
        const { bytes, error } = await readAll(bad.source, content.byteLength)
        assertCode(error, 'DIGEST_INVALID')
        assert.ok(bytes.byteLength < content.byteLength)
        await until(async () => (await fillCount('mismatch')) === 1, 'the mismatch to be counted')
        assert.equal(existsSync(store.paths.blob(digest)), false)
        assert.equal(store.totalBytes, 0)
        const good = await store.getOrFill(digest, content.byteLength, fetcherOf(content, counter))
        assert.equal(good.result, 'miss')
        assert.deepEqual((await readAll(good.source, content.byteLength)).bytes, content)
        assert.equal(counter.calls, 2)
      })
    })
  })

  describe('eviction', () => {
    async function put(store: BlobStore, bytes: Buffer): Promise<Digest> {
      const digest = digestOf(bytes)
      await store.putVerified(digest, bytes)
      return digest
    }

    describe('when the total goes over maxSize', () => {
      it('evicts the least recently used blobs until under it', async () => {
        const store = await openStore({ maxSize: 100 })
        const a = await put(store, blob(40, 1))
        const b = await put(store, blob(40, 2))
        // Reading a makes b the least recently used.
        await store.readSmall(a)
        const c = await put(store, blob(40, 3))
        assert.ok(store.totalBytes <= 100)
        assert.equal(store.totalBytes, 80)
        assert.equal(existsSync(store.paths.blob(b)), false)
        assert.equal(existsSync(store.paths.blob(a)), true)
        assert.equal(existsSync(store.paths.blob(c)), true)
        assert.equal(await evictionCount(), 1)
      })

      it('keeps the total under maxSize across many writes', async () => {
        const store = await openStore({ maxSize: 1000 })
        for (let i = 0; i < 30; i++) {
          await put(store, blob(90 + i))
          assert.ok(store.totalBytes <= 1000, `total ${store.totalBytes} after ${i + 1} writes`)
        }
        const files = await readdir(join(store.paths.blobs, 'sha256'), { recursive: true })
        assert.equal(store.blobCount, files.filter((f) => f.length > 3).length)
      })
    })

    describe('when the least recently used blob has an open reader', () => {
      it('evicts others instead, and evicts it once released', async () => {
        const store = await openStore({ maxSize: 100 })
        const a = await put(store, blob(40, 1))
        const source = await store.openCommitted(a)
        assert.ok(source !== null)
        const b = await put(store, blob(40, 2))
        const c = await put(store, blob(40, 3))
        assert.equal(existsSync(store.paths.blob(a)), true, 'a blob being read was evicted')
        assert.equal(existsSync(store.paths.blob(b)), false)
        assert.equal(existsSync(store.paths.blob(c)), true)
        assert.equal(store.totalBytes, 80)
        source.release()
        source.release()
        const d = await put(store, blob(40, 4))
        assert.equal(existsSync(store.paths.blob(a)), false)
        assert.equal(existsSync(store.paths.blob(c)), true)
        assert.equal(existsSync(store.paths.blob(d)), true)
        assert.equal(store.totalBytes, 80)
      })

      it('leaves the total over maxSize rather than evict a blob being read', async () => {
        const store = await openStore({ maxSize: 50 })
        const a = await put(store, blob(40, 1))
        const reading = await store.openCommitted(a)
        assert.ok(reading !== null)
        const b = await put(store, blob(40, 2))
        assert.equal(existsSync(store.paths.blob(a)), true)
        assert.equal(existsSync(store.paths.blob(b)), false)
        assert.equal(store.totalBytes, 40)
        reading.release()
      })
    })

    describe('when a committed blob disappears from disk', () => {
      it('returns null from openCommitted and forgets it', async () => {
        const store = await openStore()
        const a = await put(store, blob(40, 1))
        await rm(store.paths.blob(a))
        assert.equal(await store.openCommitted(a), null)
        assert.equal(store.totalBytes, 0)
      })
    })
  })

  describe('open', () => {
    describe('when the root already holds committed blobs', () => {
      it('re-indexes them: totalBytes, blobCount and reads', async () => {
        const first = await openStore()
        const x = Buffer.from('blob x')
        const y = blob(1000)
        await first.putVerified(digestOf(x), x)
        await first.putVerified(digestOf(y), y)
        // Files that are not blobs are not counted.
        await writeFile(join(first.paths.blobs, 'sha256', 'not-a-digest'), 'junk')
        const misplaced = digestOf(Buffer.from('misplaced')).slice('sha256:'.length)
        await mkdir(join(first.paths.blobs, 'sha256', 'zz'), { recursive: true })
        await writeFile(join(first.paths.blobs, 'sha256', 'zz', misplaced), 'misplaced')

        const second = await openStore()
        assert.equal(second.totalBytes, x.byteLength + y.byteLength)
        assert.equal(second.blobCount, 2)
        assert.deepEqual(await second.readSmall(digestOf(x)), x)
        const hit = await second.getOrFill(digestOf(y), y.byteLength, async () =>
          assert.fail('fetched a cached blob')
        )
        assert.equal(hit.result, 'hit')
        hit.source.release()
      })

      it('evicts the oldest blobs by mtime when they exceed a smaller maxSize', async () => {
        const first = await openStore()
        const old = blob(60, 1)
        const recent = blob(60, 2)
        await first.putVerified(digestOf(old), old)
        await first.putVerified(digestOf(recent), recent)
        await utimes(first.paths.blob(digestOf(old)), new Date(1_000_000), new Date(1_000_000))
        const second = await openStore({ maxSize: 100 })
        assert.equal(second.totalBytes, 60)
        assert.equal(existsSync(second.paths.blob(digestOf(old))), false)
        assert.equal(existsSync(second.paths.blob(digestOf(recent))), true)
      })
    })

    describe('when tmp holds folders of other processes', () => {
      async function tmpFolder(name: string, owner: unknown, ageMs = 0): Promise<string> {
        const dir = join(root, 'tmp', name)
        await mkdir(dir, { recursive: true })
        if (owner !== undefined) await writeFile(join(dir, 'owner'), JSON.stringify(owner))
        await writeFile(join(dir, 'abc.part'), 'partial')
        if (ageMs > 0) {
          const then = new Date(Date.now() - ageMs)
          for (const f of await readdir(dir)) await utimes(join(dir, f), then, then)
          await utimes(dir, then, then)
        }
        return dir
      }

      it('sweeps a folder of a dead pid on this host and keeps a live one', async () => {
        assert.ok(isAlive(process.ppid))
        const dead = await tmpFolder('dead', {
          host: hostname(),
          pid: deadPid(),
          startedAt: new Date().toISOString(),
        })
        const live = await tmpFolder('live', {
          host: hostname(),
          pid: process.ppid,
          startedAt: new Date().toISOString(),
        })
        const store = await openStore()
        assert.equal(existsSync(dead), false)
        assert.equal(existsSync(live), true)
        assert.equal(existsSync(join(live, 'abc.part')), true)
        assert.equal(existsSync(store.paths.ownerFile()), true)
      })

      it('sweeps a folder owned by this pid (a previous run that had the same pid)', async () => {
        const previous = await tmpFolder('previous', { host: hostname(), pid: process.pid })
        await openStore()
        assert.equal(existsSync(previous), false)
      })

      it('keeps a recent folder of another host, sweeps one idle past fillTimeout', async () => {
        const recent = await tmpFolder('other-recent', { host: 'another-host', pid: 1 })
        const idle = await tmpFolder('other-idle', { host: 'another-host', pid: 1 }, 60_000)
        await openStore({ fillTimeout: 10_000 })
        assert.equal(existsSync(recent), true)
        assert.equal(existsSync(idle), false)
      })

      it('judges a folder without a readable owner file by its age', async () => {
        const recent = await tmpFolder('no-owner-recent', undefined)
        const idle = await tmpFolder('no-owner-idle', undefined, 60_000)
        const garbled = await tmpFolder('garbled', undefined)
        await writeFile(join(garbled, 'owner'), '{not json')
        await openStore({ fillTimeout: 10_000 })
        assert.equal(existsSync(recent), true)
        assert.equal(existsSync(idle), false)
        assert.equal(existsSync(garbled), true)
      })
    })
  })

  describe('close', () => {
    it('removes this process temp folder', async () => {
      const store = await openStore()
      assert.equal(existsSync(store.paths.processTmp), true)
      await store.close()
      assert.equal(existsSync(store.paths.processTmp), false)
    })
  })
})

describe('admin eviction and inventory', () => {
  it('removes a committed blob a reader has open only after the reader is done, and counts it as admin', async () => {
    const store = await openStore()
    const bytes = randomBytes(4096)
    const digest = digestOf(bytes)
    await store.putVerified(digest, bytes)
    const source = await store.openCommitted(digest)
    assert.ok(source !== null)
    assert.deepEqual(await store.evict([digest]), { removed: [], bytes: 0, busy: [digest], absent: [] })
    const { bytes: read } = await readAll(source, bytes.byteLength)
    assert.deepEqual(read, bytes)
    assert.deepEqual(await store.evict([digest]), { removed: [{ digest, size: 4096 }], bytes: 4096, busy: [], absent: [] })
    assert.equal(existsSync(store.paths.blob(digest)), false)
    assert.equal(store.blobCount, 0)
    assert.equal(store.totalBytes, 0)
    assert.equal((await metrics.evictions.get()).values.find((v) => v.labels.cause === 'admin')?.value, 1)
  })

  it('removes a file another process committed that this one never indexed', async () => {
    const store = await openStore()
    const bytes = randomBytes(100)
    const digest = digestOf(bytes)
    await mkdir(store.paths.blobDir(digest), { recursive: true })
    await writeFile(store.paths.blob(digest), bytes)
    assert.deepEqual(await store.evict([digest]), { removed: [{ digest, size: 100 }], bytes: 100, busy: [], absent: [] })
    assert.equal(existsSync(store.paths.blob(digest)), false)
  })

  it('lists blobs in digest order with sizes and last access, a page at a time', async () => {
    const store = await openStore()
    const digests: Digest[] = []
    for (let i = 0; i < 5; i++) {
      const bytes = randomBytes(10 + i)
      digests.push(digestOf(bytes))
      await store.putVerified(digestOf(bytes), bytes)
    }
    digests.sort()
    const first = store.inventory(2)
    assert.deepEqual(first.blobs.map((b) => b.digest), digests.slice(0, 2))
    assert.equal(first.next, digests[1])
    const rest = store.inventory(10, first.next)
    assert.deepEqual(rest.blobs.map((b) => b.digest), digests.slice(2))
    assert.equal(rest.next, undefined)
    assert.ok(rest.blobs.every((b) => b.size >= 10 && b.lastAccess > 0))
  })
})
