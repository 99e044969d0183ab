// One upstream blob fill: bytes land in memory segments as they arrive, are hashed there and
// written to a temp file from there, and every reader (the client that started it and any that
// joined) reads at its own pace: from the segments near the fill's head, from the file behind
// them. The fill commits by rename only when size and digest match; otherwise every reader is
// aborted before its last byte, so no client ever receives a complete copy of bad bytes.

import { open, rename, unlink, mkdir, type FileHandle } from 'node:fs/promises'
import { dirname } from 'node:path'
import { CustomsError } from '../errors.js'
import { digestAlgorithm, type Digest } from '../oci/digest.js'
import { hashPool, type HashPool } from './hasher.js'
import { readBuffers, type Chunk } from './reader.js'
import { Segments } from './segments.js'
import type { BodyStream } from '../upstream/body.js'

export type FillState = 'filling' | 'committed' | 'failed'

/** How many received bytes may wait for the disk before the upstream is paused. */
const MAX_UNWRITTEN = 8 * 1024 * 1024
/**
 * How many received bytes may wait for the hasher before the upstream is paused: the segments it
 * has not read yet stay in memory. The fill cannot end before the hash does anyway.
 */
const MAX_UNHASHED = 8 * 1024 * 1024
/** How much of what was just written a fill keeps in memory for the readers near its head. */
const RECENT_BYTES = 8 * 1024 * 1024
/**
 * Pacing: a fill with readers runs at most this far ahead of the fastest one, and goes on once it
 * is within PACE_RESUME again, so that reader stays on memory views. Without it the upstream (about
 * 1 GB/s) outran a local client within 40-50 ms of a cold 200 MiB pull, and the client read
 * 150-185 MiB back from the file, one thread-pool round trip per MiB.
 */
const PACE_AHEAD = 6 * 1024 * 1024
const PACE_RESUME = 3 * 1024 * 1024
/**
 * A reader that does not take those bytes within this long is not worth waiting for: the fill stops
 * pacing for good and runs at the upstream's speed, so that no client holds it (a fill outlives
 * its clients, and a slow or stalled one reads the file behind it). Pacing thus never slows a fill
 * below about 60 MB/s, and costs a stalled client's fill one 50 ms wait.
 */
const PACE_PATIENCE_MS = 50

export class Fill {
  readonly digest: Digest
  readonly size: number
  #state: FillState = 'filling'
  #verified = false
  #error: Error | undefined
  #written = 0
  #handle: FileHandle | undefined
  /** The temp file being opened (see prepare), or undefined until something asks for it. */
  #opening: Promise<FileHandle> | undefined
  /** run() was called: from then on the temp file is run()'s to close or remove. */
  #started = false
  #readers = 0
  /** The furthest byte handed to any reader: the fastest reader's position. */
  #lead = 0
  /** Set while run() paces the upstream: called when a reader advances or leaves. */
  #onReaders: (() => void) | undefined
  readonly #segments = new Segments(readBuffers, RECENT_BYTES)
  #waiters: Array<() => void> = []
  readonly #part: string
  readonly #final: string
  readonly done: Promise<void>
  #resolveDone!: () => void

  readonly #hashes: HashPool

  readonly #pacePatience: number

  /** `pacePatienceMs` overrides PACE_PATIENCE_MS (tests on a loaded machine). */
  constructor(digest: Digest, size: number, part: string, final: string, hashes: HashPool = hashPool, pacePatienceMs = PACE_PATIENCE_MS) {
    this.#hashes = hashes
    this.#pacePatience = pacePatienceMs
    this.digest = digest
    this.size = size
    this.#part = part
    this.#final = final
    // Made before the upstream is asked: its hash worker starts meanwhile.
    hashes.prepare(size)
    // `done` never rejects: callers inspect `state` and `error` after it settles.
    this.done = new Promise((resolve) => (this.#resolveDone = resolve))
  }

  /**
   * Opens the temp file now, so a caller can have it ready while the upstream is still answering:
   * for a cold blob that took two to three ms off the time to the first byte. run() uses it; a
   * fill that will not run after all must be given back with discard(). Never rejects: an open
   * that failed fails run().
   */
  prepare(): void {
    this.#opening ??= openPart(this.#part)
    this.#opening.catch(() => {})
  }

  /** Closes and removes the temp file of a fill that was prepared but will never run. */
  async discard(): Promise<void> {
    const opening = this.#opening
    if (opening === undefined || this.#started) return
    this.#opening = undefined
    const handle = await opening.catch(() => undefined)
    if (handle === undefined) return
    await handle.close().catch(() => {})
    await unlink(this.#part).catch(() => {})
  }

  get state(): FillState {
    return this.#state
  }

  /**
   * Whether every byte arrived and matched the digest. Readers may then finish: the bytes are
   * proven, and the cache's own durability (datasync, rename) is no reason to keep clients waiting.
   */
  get verified(): boolean {
    return this.#verified
  }

  get error(): Error | undefined {
    return this.#error
  }

  get written(): number {
    return this.#written
  }

  /**
   * Bytes readers may have: received, in memory or on disk. Readers at the head are served from
   * memory before the disk write completes; those behind read the file.
   */
  get available(): number {
    return this.#segments.received
  }

  /**
   * Streams `body` into the temp file while hashing it, then commits or fails. Never throws; the
   * outcome is in `state`/`error`. `signal` bounds the whole fill (not any one client).
   */
  async run(body: BodyStream, signal: AbortSignal, idleTimeout: number): Promise<void> {
    this.#started = true
    const hash = this.#hashes.hasher(digestAlgorithm(this.digest), this.size)
    let idle: NodeJS.Timeout | undefined
    let patience: NodeJS.Timeout | undefined
    let lastData = Date.now()
    let settle!: (error?: Error) => void
    const ended = new Promise<void>((resolve, reject) => {
      settle = (error) => (error === undefined ? resolve() : reject(error))
    })
    ended.catch(() => {})
    // Remember why the body was stopped, so a stall or a timeout is not mistaken for a short
    // (mismatching) body or a broken connection.
    let stopped: Error | undefined
    const stop = (why: Error) => {
      stopped ??= why
      body.destroy()
      settle(stopped)
    }
    const onAbort = () =>
      stop(new CustomsError('UPSTREAM_UNAVAILABLE', 'the blob fill timed out', { cause: signal.reason }))
    signal.addEventListener('abort', onAbort, { once: true })
    try {
      const handle = await (this.#opening ??= openPart(this.#part))
      this.#handle = handle
      // One coarse timer rather than a new one per chunk: a stall is noticed within a quarter of
      // the idle timeout after it passes.
      idle = setInterval(() => {
        if (Date.now() - lastData >= idleTimeout) stop(new CustomsError('UPSTREAM_UNAVAILABLE', 'the upstream stalled'))
      }, Math.max(10, Math.floor(idleTimeout / 4)))
      // Upstream reads and disk writes overlap: bytes that arrive while a write is in flight are
      // gathered and written with one writev, so neither side waits on the other chunk by chunk.
      const segments = this.#segments
      let received = 0
      // The upstream is paused while too much waits for the disk, or while it is too far ahead of
      // the fastest reader (pacing); it goes on when neither holds.
      let bodyPaused = false
      let diskPaused = false
      let hashPaused = false
      let pacePaused = false
      let pacing = true
      const flow = (): void => {
        const pause = diskPaused || hashPaused || pacePaused
        if (pause === bodyPaused || stopped !== undefined) return
        bodyPaused = pause
        if (pause) body.pause()
        else body.resume()
      }
      const endPace = (): void => {
        clearTimeout(patience)
        pacePaused = false
        flow()
      }
      this.#onReaders = () => {
        if (pacePaused && (this.#readers === 0 || received - this.#lead <= PACE_RESUME)) endPace()
      }
      // Segments go to the hasher as they fill up (and the rest at the end), each held until hashed.
      let unhashed = 0
      const hashed = (n: number): void => {
        unhashed -= n
        if (hashPaused && unhashed <= MAX_UNHASHED / 2) {
          hashPaused = false
          flow()
        }
      }
      const feedHash = (all: boolean): void => {
        for (const { bytes, release } of segments.unhashed(all)) {
          const n = bytes.byteLength
          unhashed += n
          hash.update(bytes, () => {
            release()
            hashed(n)
          })
        }
        if (unhashed >= MAX_UNHASHED && !hashPaused) {
          hashPaused = true
          flow()
        }
      }
      let flushing: Promise<void> | undefined
      let writeError: unknown
      const flush = async () => {
        while (segments.unwritten > 0) {
          const { views, bytes, commit } = segments.unwrittenViews()
          // Backpressure: the upstream was paused while too much was unwritten.
          if (diskPaused) {
            diskPaused = false
            flow()
          }
          const { bytesWritten } = await handle.writev(views, this.#written)
          // A short write to a local file means the disk (or a quota) is full: a storage failure,
          // which makes room by eviction, not an upstream one.
          if (bytesWritten !== bytes) {
            throw new CustomsError('STORAGE_FAILED', `the cache could not store the blob (short write: ${bytesWritten} of ${bytes} bytes)`)
          }
          this.#written += bytes
          commit()
          this.#notify()
        }
      }
      const startFlush = (): void => {
        flushing ??= flush()
          .catch((err: unknown) => {
            writeError ??= err
            stop(err instanceof Error ? err : new Error(String(err)))
          })
          .finally(() => {
            flushing = undefined
            if (segments.unwritten > 0 && writeError === undefined) startFlush()
          })
      }
      // Started only now that the file is open: until then the body keeps what arrives.
      body.start({
        // The socket reads straight into the segments: append() then finds the bytes in place.
        target: () => segments.reserve(),
        data: (view) => {
          if (stopped !== undefined) return
          lastData = Date.now()
          if (received + view.byteLength > this.size) {
            stop(new CustomsError('DIGEST_INVALID', `upstream sent more than the ${this.size} bytes of ${this.digest}`))
            return
          }
          received += view.byteLength
          // Copied unless read in place: other views' memory is the producer's, reused afterwards.
          segments.append(view)
          feedHash(false)
          this.#notify()
          startFlush()
          if (segments.unwritten >= MAX_UNWRITTEN && !diskPaused) {
            diskPaused = true
            flow()
          }
          if (pacing && !pacePaused && this.#readers > 0 && received - this.#lead > PACE_AHEAD) {
            pacePaused = true
            flow()
            patience = setTimeout(() => {
              pacing = false
              endPace()
            }, this.#pacePatience)
          }
        },
        end: () => settle(),
        error: (err) => settle(stopped ?? new CustomsError('UPSTREAM_UNAVAILABLE', 'the upstream broke off the blob', { cause: err })),
      })
      await ended
      if (stopped !== undefined) throw stopped
      feedHash(true)
      while (flushing !== undefined) await flushing
      if (writeError !== undefined) throw writeError
      if (this.#written !== this.size) {
        throw new CustomsError('DIGEST_INVALID', `upstream sent ${this.#written} of the ${this.size} bytes of ${this.digest}`)
      }
      const actual = `${digestAlgorithm(this.digest)}:${await hash.digest()}`
      if (actual !== this.digest) {
        throw new CustomsError('DIGEST_INVALID', `upstream bytes hash to ${actual}, not ${this.digest}`)
      }
      this.#verified = true
      this.#notify()
      // The data must be on disk before the name that vouches for it is.
      await handle.datasync()
      await inFolder(this.#final, () => rename(this.#part, this.#final))
      this.#state = 'committed'
    } catch (err) {
      hash.abort()
      // An upstream that sends past the size (or anything else that fails the fill) must not keep
      // its connection: without this, an endless body held the socket until the fill timeout.
      body.destroy()
      // Removed before the failure is told: a reader cut short by it finds no partial file left.
      // Until then readers see a fill that has not verified, so none can have its last byte.
      await unlink(this.#part).catch(() => {})
      this.#error = toFillError(err, signal)
      this.#state = 'failed'
    } finally {
      clearInterval(idle)
      clearTimeout(patience)
      this.#onReaders = undefined
      signal.removeEventListener('abort', onAbort)
      this.#notify()
      this.#resolveDone()
      await this.#maybeClose()
    }
  }

  /** Registers a reader; the temp file stays open until the last one releases. */
  acquire(): void {
    this.#readers++
  }

  release(): void {
    this.#readers--
    this.#onReaders?.()
    void this.#maybeClose()
  }

  /**
   * Written bytes at `position` (at most `length`) still in memory, as views: readers at the head
   * of the fill (the usual case) are served without reading the file back.
   */
  peek(position: number, length: number): Chunk[] | undefined {
    const views = this.#segments.peek(position, length)
    if (views !== undefined) this.#advance(position + views.reduce((n, v) => n + v.bytes.byteLength, 0))
    return views
  }

  /** A reader was handed the bytes before `to`. */
  #advance(to: number): void {
    if (to <= this.#lead) return
    this.#lead = to
    this.#onReaders?.()
  }

  /** Reads bytes at `position`, within what has been written, into `target`. */
  async readInto(position: number, target: Uint8Array): Promise<number> {
    const handle = this.#handle
    if (handle === undefined) return 0
    const length = Math.min(target.byteLength, this.#written - position)
    if (length <= 0) return 0
    const { bytesRead } = await handle.read(target, 0, length, position)
    this.#advance(position + bytesRead)
    return bytesRead
  }

  /** Resolves at the next write or state change. */
  changed(): Promise<void> {
    if (this.#state !== 'filling') return Promise.resolve()
    return new Promise((resolve) => this.#waiters.push(resolve))
  }

  #notify(): void {
    const waiters = this.#waiters
    this.#waiters = []
    for (const w of waiters) w()
  }

  async #maybeClose(): Promise<void> {
    if (this.#state === 'filling' || this.#readers > 0 || this.#handle === undefined) return
    this.#segments.clear()
    const handle = this.#handle
    this.#handle = undefined
    await handle.close().catch(() => {})
  }
}

/** Creates the temp file, never one that exists already (`wx`); a failure is the cache's. */
async function openPart(part: string): Promise<FileHandle> {
  try {
    return await inFolder(part, () => open(part, 'wx+', 0o644))
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unknown error'
    throw new CustomsError('STORAGE_FAILED', `the cache could not create a temp file (${code})`, { cause: err })
  }
}

/**
 * Runs `create` (which makes `path`), and once more after creating path's folder when that is
 * missing: the folders nearly always exist, so checking first cost every fill two thread-pool
 * round trips on the way to its first byte.
 */
async function inFolder<T>(path: string, create: () => Promise<T>): Promise<T> {
  try {
    return await create()
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    await mkdir(dirname(path), { recursive: true })
    return create()
  }
}

function toFillError(err: unknown, signal: AbortSignal): Error {
  if (err instanceof CustomsError) return err
  if (signal.aborted) return new CustomsError('UPSTREAM_UNAVAILABLE', 'the blob fill timed out', { cause: err })
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'EROFS' || code === 'EIO') {
    return new CustomsError('STORAGE_FAILED', `the cache could not store the blob (${code})`, { cause: err })
  }
  return new CustomsError('UPSTREAM_UNAVAILABLE', 'the upstream broke off the blob', { cause: err })
}
