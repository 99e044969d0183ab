// Hashing a blob as it is written, off the main thread for large blobs. On the main thread,
// SHA-256 (about 1.3 GiB/s here) competes with receiving the upstream's bytes and serving every
// reader; in a worker it runs beside them on another core.
//
// The worker reads the bytes back from the temp file the fill writes, rather than being sent
// them: the file is already in the page cache, so this costs the worker one memcpy per byte and
// the main thread nothing but a small message per MiB. (Posting copies of each batch, as this did
// before, spent more of the main thread's time on the copies than hashing inline would have.) It
// also means the digest vouches for exactly the bytes on disk.

import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'
import { createDigester, type DigestAlgorithm } from '../oci/digest.js'

/** A running hash of one blob, fed in the order its bytes are written to its file. */
export interface StreamHasher {
  /** The bytes up to offset `upTo` are written; `batch` holds those since the previous call. */
  written(batch: readonly Uint8Array[], upTo: number): void
  /** The hex digest of the first `upTo` bytes of the last written() call. */
  digest(): Promise<string>
  /** Drops the hash without a result (the fill failed). */
  abort(): void
}

/** Blobs smaller than this are hashed inline: a worker round trip costs more than it saves. */
export const WORKER_HASH_MIN_BYTES = 4 * 1024 * 1024
/** Progress is posted to the worker once this much more is written (and at the end). */
const POST_EVERY = 1024 * 1024

/**
 * The worker: one job per fill, each with its own descriptor on the temp file and hash; one read
 * buffer for all. Messages are handled in order, so `end` finds every earlier `upto` done.
 */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads')
const { createHash } = require('node:crypto')
const { openSync, readSync, closeSync } = require('node:fs')
const buffer = Buffer.allocUnsafe(1024 * 1024)
const jobs = new Map()
function catchUp(job, upTo) {
  if (job.fd === undefined) job.fd = openSync(job.path, 'r')
  while (job.hashed < upTo) {
    const n = readSync(job.fd, buffer, 0, Math.min(buffer.length, upTo - job.hashed), job.hashed)
    if (n === 0) throw new Error('the temp file is shorter than what was written')
    job.hash.update(buffer.subarray(0, n))
    job.hashed += n
  }
}
function close(job) {
  if (job.fd !== undefined) closeSync(job.fd)
  job.fd = undefined
}
parentPort.on('message', (m) => {
  const job = jobs.get(m.id)
  if (m.op === 'start') {
    jobs.set(m.id, { path: m.path, hash: createHash(m.algorithm), hashed: 0, fd: undefined })
    return
  }
  if (job === undefined) return
  try {
    if (m.op === 'upto') catchUp(job, m.upTo)
    else if (m.op === 'end') {
      catchUp(job, m.upTo)
      jobs.delete(m.id)
      close(job)
      parentPort.postMessage({ id: m.id, op: 'digest', hex: job.hash.digest('hex') })
    } else if (m.op === 'abort') {
      jobs.delete(m.id)
      close(job)
    }
  } catch (err) {
    jobs.delete(m.id)
    try { close(job) } catch {}
    parentPort.postMessage({ id: m.id, op: 'error', message: String(err && err.message || err) })
  }
})
`

interface Job {
  /** Why the job ended without a digest (its worker died, failed to read, or the pool closed). */
  failed?: Error
  result?: { resolve: (hex: string) => void; reject: (err: Error) => void }
}

type WorkerMessage = { id: number; op: 'digest'; hex: string } | { id: number; op: 'error'; message: string }

/**
 * An idle worker is stopped after this long. A worker is a whole V8 isolate and node environment:
 * about 11 MiB resident while it lives, most of it returned when it stops (measured with one
 * hashing worker: 41.6 MiB before, 53.2 running, 44.8 after terminate). Starting one again costs
 * a few tens of milliseconds, once per burst of large fills.
 */
export const WORKER_IDLE_MS = 10_000

/** A small pool of hashing workers, started on first use, holding the process open only while busy. */
export class HashPool {
  readonly #size: number
  readonly #idleMs: number
  readonly #workers: Array<Worker | undefined> = []
  readonly #idleTimers: Array<NodeJS.Timeout | undefined> = []
  readonly #jobs = new Map<number, Job>()
  #next = 0
  #closed = false

  constructor(size: number, idleMs = WORKER_IDLE_MS) {
    this.#size = Math.max(1, size)
    this.#idleMs = idleMs
  }

  /** Workers running now (for tests). */
  get running(): number {
    return this.#workers.filter((w) => w !== undefined).length
  }

  /**
   * A hasher for a blob of `size` bytes being written to the file at `path`: in a worker when
   * large enough, else inline from the written batches.
   */
  hasher(algorithm: DigestAlgorithm, size: number, path: string): StreamHasher {
    if (size < WORKER_HASH_MIN_BYTES || this.#closed) return inlineHasher(algorithm)
    return this.#workerHasher(algorithm, path)
  }

  async close(): Promise<void> {
    this.#closed = true
    for (const timer of this.#idleTimers.splice(0)) clearTimeout(timer)
    const workers = this.#workers.splice(0)
    await Promise.all(workers.map((w) => w?.terminate()))
    const closed = new Error('the hash worker pool is closed')
    for (const [id, job] of this.#jobs) {
      this.#jobs.delete(id)
      this.#fail(job, closed)
    }
  }

  #workerHasher(algorithm: DigestAlgorithm, path: string): StreamHasher {
    const id = ++this.#next
    const worker = this.#worker(id)
    const job: Job = {}
    this.#jobs.set(id, job)
    this.#holdWhileBusy(id % this.#size)
    worker.postMessage({ op: 'start', id, algorithm, path })
    let posted = 0
    let upTo = 0
    return {
      written: (_batch, at) => {
        upTo = at
        if (job.failed !== undefined || upTo - posted < POST_EVERY) return
        posted = upTo
        worker.postMessage({ op: 'upto', id, upTo })
      },
      digest: () => {
        if (job.failed !== undefined) return Promise.reject(job.failed)
        return new Promise<string>((resolve, reject) => {
          job.result = { resolve, reject }
          worker.postMessage({ op: 'end', id, upTo })
        })
      },
      abort: () => {
        if (!this.#jobs.delete(id)) return
        this.#holdWhileBusy(id % this.#size)
        worker.postMessage({ op: 'abort', id })
      },
    }
  }

  #fail(job: Job, err: Error): void {
    job.failed = err
    job.result?.reject(err)
  }

  /** Jobs are spread over the workers by id; a worker is started when first needed. */
  #worker(id: number): Worker {
    const index = id % this.#size
    let worker = this.#workers[index]
    if (worker === undefined) {
      worker = new Worker(WORKER_SOURCE, { eval: true })
      worker.on('message', (m: WorkerMessage) => this.#onMessage(m))
      // A dead worker fails its jobs (their fills fail closed) and is replaced at the next use.
      // A worker stopped for idleness was replaced (or not) already and had no jobs.
      const dead = worker
      const fail = (err: Error): void => {
        if (this.#workers[index] !== dead) return
        this.#workers[index] = undefined
        for (const [jobId, job] of this.#jobs) {
          if (jobId % this.#size !== index) continue
          this.#jobs.delete(jobId)
          this.#fail(job, err)
        }
      }
      worker.on('error', fail)
      worker.on('exit', (code) => fail(new Error(`hash worker exited (${code})`)))
      this.#workers[index] = worker
    }
    return worker
  }

  /**
   * A worker holds the process open only while it has jobs: an idle pool must not keep a CLI or
   * a test from exiting, and a pending digest must not let it exit either. One idle for
   * {@link WORKER_IDLE_MS} is stopped; the next job starts another.
   */
  #holdWhileBusy(index: number): void {
    const worker = this.#workers[index]
    if (worker === undefined) return
    let busy = false
    for (const id of this.#jobs.keys()) if (id % this.#size === index) busy = true
    clearTimeout(this.#idleTimers[index])
    this.#idleTimers[index] = undefined
    if (busy) {
      worker.ref()
      return
    }
    worker.unref()
    const timer = setTimeout(() => {
      this.#idleTimers[index] = undefined
      if (this.#workers[index] !== worker) return
      this.#workers[index] = undefined
      void worker.terminate()
    }, this.#idleMs)
    timer.unref()
    this.#idleTimers[index] = timer
  }

  #onMessage(m: WorkerMessage): void {
    const job = this.#jobs.get(m.id)
    if (job === undefined) return
    this.#jobs.delete(m.id)
    this.#holdWhileBusy(m.id % this.#size)
    if (m.op === 'digest') job.result?.resolve(m.hex)
    else this.#fail(job, new Error(`hash worker could not read the blob: ${m.message}`))
  }
}

function inlineHasher(algorithm: DigestAlgorithm): StreamHasher {
  const hash = createDigester(algorithm)
  return {
    written: (batch) => {
      for (const chunk of batch) hash.update(chunk)
    },
    digest: () => Promise.resolve(hash.digest('hex')),
    abort: () => undefined,
  }
}

/**
 * The process's pool: one worker per core beyond the first (at least one, at most four), since
 * the main thread keeps a core busy receiving and serving.
 */
export const hashPool = new HashPool(Math.min(4, Math.max(1, availableParallelism() - 1)))
