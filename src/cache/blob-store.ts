// The content-addressed blob store on local disk: committed reads, verified writes, fills that
// happen once however many clients (and replicas) ask, least-recently-used eviction that never
// removes a blob being read, and the start-up sweep of temp files left by dead processes.

import { mkdir, open, readFile, readdir, rename, rm, stat, unlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { BodyStream } from '../upstream/body.js'
import { hostname } from 'node:os'
import { CustomsError } from '../errors.js'
import type { Logger } from '../observability/logger.js'
import type { Metrics } from '../observability/metrics.js'
import { digestOf, isDigest, type Digest } from '../oci/digest.js'
import type { StateStore } from '../state/store.js'
import { lockName } from './locks.js'
import { Fill } from './fill.js'
import { CachePaths } from './paths.js'
import { fileSource, fillSource, type ByteSource } from './reader.js'

export interface BlobStoreOptions {
  readonly root: string
  readonly maxSize: number
  /** Bounds one whole fill, however slow the upstream. */
  readonly fillTimeout: number
  /** A fill whose upstream sends nothing for this long is abandoned. */
  readonly idleTimeout: number
  readonly lockTtl: number
  readonly state: StateStore
  readonly metrics: Metrics
  readonly logger: Logger
}

export type CacheResult = 'hit' | 'miss' | 'join'

/** One committed blob as the inventory lists it. */
export interface CachedBlob {
  readonly digest: Digest
  readonly size: number
  /** When this process last read or wrote it, ms since the epoch (the file's mtime until then). */
  readonly lastAccess: number
}

/** What an eviction did: blobs removed, being read or filled (kept), or not on disk. */
export interface EvictionResult {
  readonly removed: Array<{ digest: Digest; size: number }>
  bytes: number
  readonly busy: Digest[]
  readonly absent: Digest[]
}

/** Starts the upstream transfer of a blob; throws a typed error when the upstream refuses. */
export type BlobFetcher = (signal: AbortSignal) => Promise<BodyStream>

/** How often a replica waiting on another replica's fill looks for the committed blob. */
const FOLLOWER_POLL_MS = 100

export class BlobStore {
  readonly paths: CachePaths
  readonly #options: BlobStoreOptions
  /** Committed blobs in least-recently-used order (Map iteration order), with their sizes. */
  readonly #index = new Map<string, number>()
  /** When each indexed blob was last read or written here (ms since the epoch; file mtime at start). */
  readonly #accessed = new Map<string, number>()
  readonly #active = new Map<string, number>()
  readonly #fills = new Map<string, Promise<Fill | null>>()
  #total = 0

  private constructor(options: BlobStoreOptions) {
    this.#options = options
    this.paths = new CachePaths(options.root)
  }

  /** Prepares the folders, sweeps dead processes' temp files, and indexes committed blobs. */
  static async open(options: BlobStoreOptions): Promise<BlobStore> {
    const store = new BlobStore(options)
    await mkdir(store.paths.blobs, { recursive: true })
    await mkdir(store.paths.processTmp, { recursive: true })
    await writeFile(
      store.paths.ownerFile(),
      JSON.stringify({ host: hostname(), pid: process.pid, startedAt: new Date().toISOString() })
    )
    await store.#sweep()
    await store.#scan()
    return store
  }

  get totalBytes(): number {
    return this.#total
  }

  get blobCount(): number {
    return this.#index.size
  }

  /** A committed blob, or null when it is not on disk (never recorded, evicted, or lost). */
  async openCommitted(digest: Digest): Promise<ByteSource | null> {
    let handle
    try {
      handle = await open(this.paths.blob(digest), 'r')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        this.#forget(digest)
        return null
      }
      throw new CustomsError('STORAGE_FAILED', 'the cache could not open a blob', { cause: err })
    }
    const size = (await handle.stat()).size
    this.#touch(digest, size)
    this.#active.set(digest, (this.#active.get(digest) ?? 0) + 1)
    return fileSource(handle, size, () => this.#deactivate(digest))
  }

  /**
   * A source for the blob: committed on disk (hit), a fill already running in this process (join),
   * or a new fill from `fetch` (miss). Across replicas one fill runs at a time, through a lock in
   * state; the others wait for its commit. `size` is the size the referencing manifest declared.
   */
  async getOrFill(digest: Digest, size: number, fetch: BlobFetcher): Promise<{ source: ByteSource; result: CacheResult }> {
    const deadline = Date.now() + this.#options.fillTimeout
    for (;;) {
      let running = this.#fills.get(digest)
      let started = false
      if (running === undefined) {
        const committed = await this.openCommitted(digest)
        if (committed !== null) return { source: committed, result: 'hit' }
        // Checked again: another caller may have begun while we looked on disk.
        running = this.#fills.get(digest)
        if (running === undefined) {
          running = this.#begin(digest, size, fetch)
          started = true
        }
      }
      const fill = await running
      if (fill === null) {
        // Another replica holds the fill lock; its commit will show on disk.
        if (Date.now() > deadline) {
          throw new CustomsError('UPSTREAM_UNAVAILABLE', 'another replica is still fetching this blob')
        }
        await new Promise((resolve) => setTimeout(resolve, FOLLOWER_POLL_MS))
        continue
      }
      if (fill.state === 'filling') return { source: fillSource(fill), result: started ? 'miss' : 'join' }
      if (fill.state === 'failed') throw fill.error ?? new CustomsError('UPSTREAM_UNAVAILABLE', 'the blob fill failed')
      // Committed: its handle may be closed already, so read the committed file instead.
      const committed = await this.openCommitted(digest)
      if (committed !== null) return { source: committed, result: 'hit' }
      if (this.#fills.get(digest) === running) this.#fills.delete(digest)
    }
  }

  /** Reads a small committed blob whole (manifests), or null when absent. */
  async readSmall(digest: Digest): Promise<Buffer | null> {
    try {
      const bytes = await readFile(this.paths.blob(digest))
      if (digestOf(bytes, digest) !== digest) {
        // Cannot happen through this store; a disk that lies is still not served.
        this.#options.logger.error({ digest }, 'cached manifest does not match its digest')
        await unlink(this.paths.blob(digest)).catch(() => {})
        this.#forget(digest)
        return null
      }
      this.#touch(digest, bytes.byteLength)
      return bytes
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
      throw new CustomsError('STORAGE_FAILED', 'the cache could not read a manifest', { cause: err })
    }
  }

  /** Stores verified bytes under their digest: temp file, then an atomic rename. */
  async putVerified(digest: Digest, bytes: Uint8Array): Promise<void> {
    if (digestOf(bytes, digest) !== digest) {
      throw new CustomsError('DIGEST_INVALID', `refusing to store bytes under ${digest}: they hash otherwise`)
    }
    const part = this.paths.part(digest)
    try {
      await writeFile(part, bytes, { flag: 'wx' })
      await mkdir(this.paths.blobDir(digest), { recursive: true })
      await rename(part, this.paths.blob(digest))
    } catch (err) {
      await unlink(part).catch(() => {})
      throw new CustomsError('STORAGE_FAILED', 'the cache could not store a manifest', { cause: err })
    }
    this.#touch(digest, bytes.byteLength)
    await this.#enforceLimit()
  }

  /**
   * Removes a committed blob (a purge); false when it was not on disk. A reader that opened it
   * before keeps its handle to the end; a fill running for it is left to finish.
   */
  async remove(digest: Digest): Promise<boolean> {
    try {
      await unlink(this.paths.blob(digest))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        this.#forget(digest)
        return false
      }
      throw new CustomsError('STORAGE_FAILED', 'the cache could not remove a blob', { cause: err })
    }
    this.#forget(digest)
    return true
  }

  /**
   * The blobs this process knows of (found at start, served or fetched since), in digest order,
   * `limit` at a time after the digest `after`.
   */
  inventory(limit: number, after?: string): { blobs: CachedBlob[]; next?: string } {
    const digests = [...this.#index.keys()].filter((d) => after === undefined || d > after).sort()
    const page = digests.slice(0, limit).map((digest) => ({
      digest: digest as Digest,
      size: this.#index.get(digest) as number,
      lastAccess: this.#accessed.get(digest) as number,
    }))
    const last = page.at(-1)
    return digests.length > page.length && last !== undefined ? { blobs: page, next: last.digest } : { blobs: page }
  }

  /**
   * Removes committed blob files, as `storage.maxSize` eviction does: never one being read or
   * filled here (those are `busy`). Bytes only: verdicts and the blob gate stay in state, so a
   * later pull fetches the blob again and verifies it on the way in. `digests` undefined means
   * every blob this process knows of.
   */
  async evict(digests?: readonly Digest[]): Promise<EvictionResult> {
    const result: EvictionResult = { removed: [], bytes: 0, busy: [], absent: [] }
    for (const digest of digests ?? ([...this.#index.keys()] as Digest[])) {
      if (this.#active.has(digest) || this.#fills.has(digest)) {
        result.busy.push(digest)
        continue
      }
      const path = this.paths.blob(digest)
      // Also a file another replica committed and this one never indexed.
      const size = this.#index.get(digest) ?? (await stat(path).then((s) => s.size, () => undefined))
      try {
        await unlink(path)
      } catch (err) {
        this.#forget(digest)
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          result.absent.push(digest)
          continue
        }
        throw new CustomsError('STORAGE_FAILED', 'the cache could not remove a blob', { cause: err })
      }
      this.#forget(digest)
      result.removed.push({ digest, size: size ?? 0 })
      result.bytes += size ?? 0
      this.#options.metrics.evictions.inc({ cause: 'admin' })
    }
    return result
  }

  /** Removes this process's temp folder (on shutdown). */
  async close(): Promise<void> {
    await Promise.allSettled([...this.#fills.values()].map(async (f) => (await f)?.done))
    await rm(this.paths.processTmp, { recursive: true, force: true })
  }

  /**
   * Begins a fill, registering it before the first await so that concurrent callers join it.
   * Resolves to null when another replica holds the lock or committed meanwhile.
   */
  #begin(digest: Digest, size: number, fetch: BlobFetcher): Promise<Fill | null> {
    const starting = (async () => {
      const token = await this.#tryLock(digest)
      if (token === undefined) return null
      // Another replica may have committed between our look and our lock.
      if (await exists(this.paths.blob(digest))) {
        await this.#unlock(digest, token)
        return null
      }
      // The fill is bounded by its own timeout, never by the client that happened to start it.
      const signal = AbortSignal.timeout(this.#options.fillTimeout)
      try {
        const fill = new Fill(digest, size, this.paths.part(digest), this.paths.blob(digest))
        // The temp file is opened while the upstream answers, not after.
        fill.prepare()
        let body: BodyStream
        try {
          body = await fetch(signal)
        } catch (err) {
          await fill.discard()
          throw err
        }
        return this.#run(fill, body, signal, token)
      } catch (err) {
        await this.#unlock(digest, token)
        throw err
      }
    })()
    this.#fills.set(digest, starting)
    const forget = () => {
      if (this.#fills.get(digest) === starting) this.#fills.delete(digest)
    }
    starting.then((fill) => fill === null && forget(), forget)
    return starting
  }

  #run(fill: Fill, body: BodyStream, signal: AbortSignal, token: string): Fill {
    const renew = setInterval(() => {
      this.#options.state.renewLock(lockName.fill(fill.digest), token, this.#options.lockTtl).catch(() => {})
    }, Math.max(1000, Math.floor(this.#options.lockTtl / 3)))
    const entry = this.#fills.get(fill.digest)
    void fill.run(body, signal, this.#options.idleTimeout).then(async () => {
      clearInterval(renew)
      if (this.#fills.get(fill.digest) === entry) this.#fills.delete(fill.digest)
      await this.#unlock(fill.digest, token)
      const { metrics, logger } = this.#options
      if (fill.state === 'committed') {
        metrics.fills.inc({ result: 'committed' })
        this.#touch(fill.digest, fill.size)
        await this.#enforceLimit()
        return
      }
      const mismatch = fill.error instanceof CustomsError && fill.error.code === 'DIGEST_INVALID'
      metrics.fills.inc({ result: mismatch ? 'mismatch' : 'failed' })
      logger.warn({ digest: fill.digest, err: fill.error?.message }, 'failed to fill blob from upstream')
      if (fill.error instanceof CustomsError && fill.error.code === 'STORAGE_FAILED') {
        await this.#enforceLimit(Math.floor(this.#total * 0.9))
      }
    })
    return fill
  }

  async #tryLock(digest: Digest): Promise<string | undefined> {
    try {
      const token = await this.#options.state.acquireLock(lockName.fill(digest), this.#options.lockTtl)
      return token ?? undefined
    } catch (err) {
      // Without state the cross-replica lock is lost, not the cache's safety: every fill is
      // verified and committed atomically, so at worst two replicas fetch the same blob.
      this.#options.logger.warn({ digest, err: (err as Error).message }, 'failed to take fill lock; filling without it')
      return `unlocked:${digest}`
    }
  }

  async #unlock(digest: Digest, token: string): Promise<void> {
    if (token.startsWith('unlocked:')) return
    await this.#options.state.releaseLock(lockName.fill(digest), token).catch(() => {})
  }

  #touch(digest: Digest, size: number, at = Date.now()): void {
    const known = this.#index.get(digest)
    if (known === undefined) this.#total += size
    else this.#index.delete(digest)
    this.#index.set(digest, size)
    this.#accessed.set(digest, at)
    this.#options.metrics.cacheBytes.set(this.#total)
  }

  #forget(digest: Digest): void {
    const size = this.#index.get(digest)
    if (size === undefined) return
    this.#index.delete(digest)
    this.#accessed.delete(digest)
    this.#total -= size
    this.#options.metrics.cacheBytes.set(this.#total)
  }

  #deactivate(digest: Digest): void {
    const n = (this.#active.get(digest) ?? 1) - 1
    if (n <= 0) this.#active.delete(digest)
    else this.#active.set(digest, n)
  }

  /** Evicts least-recently-used blobs not being read until the total is under `target`. */
  async #enforceLimit(target = this.#options.maxSize): Promise<void> {
    if (this.#total <= target) return
    for (const [digest, size] of [...this.#index]) {
      if (this.#total <= target) break
      if (this.#active.has(digest) || this.#fills.has(digest)) continue
      await unlink(this.paths.blob(digest as Digest)).catch(() => {})
      this.#forget(digest as Digest)
      this.#options.metrics.evictions.inc({ cause: 'limit' })
      this.#options.logger.debug({ digest, size }, 'evicted blob')
    }
  }

  async #scan(): Promise<void> {
    const found: Array<{ digest: Digest; size: number; mtime: number }> = []
    for (const algorithm of ['sha256', 'sha512']) {
      const top = join(this.paths.blobs, algorithm)
      for (const prefix of await readdir(top).catch(() => [] as string[])) {
        for (const hex of await readdir(join(top, prefix)).catch(() => [] as string[])) {
          const digest = `${algorithm}:${hex}`
          if (!isDigest(digest) || !hex.startsWith(prefix)) continue
          const s = await stat(join(top, prefix, hex)).catch(() => undefined)
          if (s?.isFile()) found.push({ digest, size: s.size, mtime: s.mtimeMs })
        }
      }
    }
    found.sort((a, b) => a.mtime - b.mtime)
    for (const f of found) this.#touch(f.digest, f.size, Math.round(f.mtime))
    await this.#enforceLimit()
  }

  /** Deletes temp folders of processes that are gone (same host, dead pid; or long idle). */
  async #sweep(): Promise<void> {
    const me = hostname()
    for (const name of await readdir(this.paths.tmp).catch(() => [] as string[])) {
      const dir = join(this.paths.tmp, name)
      if (dir === this.paths.processTmp) continue
      let stale: boolean
      try {
        const owner = JSON.parse(await readFile(this.paths.ownerFile(dir), 'utf8')) as { host?: string; pid?: number }
        stale = owner.host === me ? !isAlive(owner.pid) || owner.pid === process.pid : await idleFor(dir, this.#options.fillTimeout)
      } catch {
        stale = await idleFor(dir, this.#options.fillTimeout)
      }
      if (stale) {
        await rm(dir, { recursive: true, force: true })
        this.#options.logger.info({ dir }, 'swept temp files of a stopped process')
      }
    }
  }
}


async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false
  )
}

function isAlive(pid: number | undefined): boolean {
  if (pid === undefined) return false
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Whether nothing in `dir` was written for `ms` (a folder of another host's live process is not). */
async function idleFor(dir: string, ms: number): Promise<boolean> {
  let newest = (await stat(dir).catch(() => undefined))?.mtimeMs ?? 0
  for (const f of await readdir(dir).catch(() => [] as string[])) {
    newest = Math.max(newest, (await stat(join(dir, f)).catch(() => undefined))?.mtimeMs ?? 0)
  }
  return Date.now() - newest > ms
}
