// Hashing a blob as it arrives, off the main thread for large blobs. On the main thread, SHA-256
// (1.3-1.7 GiB/s on the machines measured) competes with receiving the upstream's bytes and
// serving every reader; in a worker it runs beside them on another core.
//
// The worker hashes the fill's segments in place: they are allocated in SharedArrayBuffers
// (cache/buffers.ts), so a message per MiB carries only where the bytes are, and the segment is
// held until the worker says it is done with it. Before, the worker read each MiB back from the
// temp file once it was written (a pread per MiB), so the hash could only start after the disk
// write: on a cold 200 MiB pull it ended 14-50 ms after the last byte arrived, and the client's
// last byte waits for it; hashing the segments, 1-13 ms. The bytes hashed are the very memory the
// file is written from.

import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'
import { createDigester, type DigestAlgorithm } from '../oci/digest.js'

/** A running hash of one blob, fed its bytes in order. */
export interface StreamHasher {
  /**
   * Hashes the blob's next bytes. Their memory must not change until `done` is called: at once
   * when hashed inline or copied, else when the worker has read them.
   */
  update(bytes: Uint8Array, done: () => void): void
  /** The hex digest of every byte given to update(). */
  digest(): Promise<string>
  /** Drops the hash without a result (the fill failed); every pending `done` is called. */
  abort(): void
}

/** Blobs smaller than this are hashed inline: a worker round trip costs more than it saves. */
export const WORKER_HASH_MIN_BYTES = 4 * 1024 * 1024

/**
 * The worker: one hash per job. Messages are handled in order, so `end` finds every earlier
 * `update` done. Each update is answered once its bytes were read, which frees their memory.
 *
 * The segment is hashed where it is. Copying each 256 KiB into a buffer that stays in the core's
 * cache and hashing the copy won on one machine (a 200 MiB blob: 143 ms against 175 straight from
 * memory), and lost on the next (AMD EPYC, SHA extensions): the worker spent 156 ms per cold
 * 200 MiB pull with the copy and 137 without, and Customs' threads 391 ms against 348 in all
 * (twelve pulls each). A segment is hashed as soon as it fills, while the socket's copy into it is
 * still in the caches.
 */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads')
const { createHash } = require('node:crypto')
const jobs = new Map()
function update(hash, memory, offset, length) {
  hash.update(new Uint8Array(memory, offset, length))
}
parentPort.on('message', (m) => {
  if (m.op === 'start') {
    jobs.set(m.id, createHash(m.algorithm))
    return
  }
  const hash = jobs.get(m.id)
  try {
    if (m.op === 'update') {
      if (hash !== undefined) update(hash, m.memory, m.offset, m.length)
      parentPort.postMessage({ id: m.id, op: 'hashed' })
    } else if (m.op === 'end') {
      jobs.delete(m.id)
      if (hash !== undefined) parentPort.postMessage({ id: m.id, op: 'digest', hex: hash.digest('hex') })
    } else if (m.op === 'abort') {
      jobs.delete(m.id)
    }
  } catch (err) {
    jobs.delete(m.id)
    parentPort.postMessage({ id: m.id, op: 'error', message: String(err && err.message || err) })
  }
})
`

interface Job {
  /** Why the job ended without a digest (its worker died or failed, or the pool closed). */
  failed?: Error
  result?: { resolve: (hex: string) => void; reject: (err: Error) => void }
  /** The `done` callbacks of updates the worker has not answered yet, oldest first. */
  pending: Array<() => void>
}

type WorkerMessage =
  | { id: number; op: 'hashed' }
  | { id: number; op: 'digest'; hex: string }
  | { id: number; op: 'error'; message: string }

/**
 * An idle worker is stopped after this long. A worker is a whole V8 isolate and node environment:
 * about 11 MiB resident while it lives, most of it returned when it stops (measured with one
 * hashing worker: 41.6 MiB before, 53.2 running, 44.8 after terminate). Starting one again cost
 * 70-100 ms of CPU here, on a core the fill that asked for it needs too. A minute, as the read
 * buffers' pool (reader.ts) is kept: nodes pull in bursts (a rollout, a CI job's images), and with
 * 10 s many bursts paid for a new worker.
 */
export const WORKER_IDLE_MS = 60_000

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
   * Starts the worker the next large blob's hasher will use, if it is not running: a fill calls
   * this before it asks the upstream, so the worker's start (a few tens of milliseconds: a new
   * isolate) overlaps the upstream's answer instead of holding the first bytes. Unused, it stops
   * again after the idle time.
   */
  prepare(size: number): void {
    if (size < WORKER_HASH_MIN_BYTES || this.#closed) return
    const id = this.#next + 1
    if (this.#workers[id % this.#size] !== undefined) return
    this.#worker(id)
    this.#holdWhileBusy(id % this.#size)
  }

  /** A hasher for a blob of `size` bytes: in a worker when large enough, else inline. */
  hasher(algorithm: DigestAlgorithm, size: number): StreamHasher {
    if (size < WORKER_HASH_MIN_BYTES || this.#closed) return inlineHasher(algorithm)
    return this.#workerHasher(algorithm)
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

  #workerHasher(algorithm: DigestAlgorithm): StreamHasher {
    const id = ++this.#next
    const worker = this.#worker(id)
    const job: Job = { pending: [] }
    this.#jobs.set(id, job)
    this.#holdWhileBusy(id % this.#size)
    worker.postMessage({ op: 'start', id, algorithm })
    return {
      update: (bytes, done) => {
        if (job.failed !== undefined) return done()
        if (bytes.buffer instanceof SharedArrayBuffer) {
          job.pending.push(done)
          worker.postMessage({ op: 'update', id, memory: bytes.buffer, offset: bytes.byteOffset, length: bytes.byteLength })
          return
        }
        // Memory the worker cannot share is copied into the message; the caller's is free at once.
        const copy = new Uint8Array(bytes)
        job.pending.push(() => undefined)
        worker.postMessage({ op: 'update', id, memory: copy.buffer, offset: 0, length: copy.byteLength }, [copy.buffer])
        done()
      },
      digest: () => {
        if (job.failed !== undefined) return Promise.reject(job.failed)
        return new Promise<string>((resolve, reject) => {
          job.result = { resolve, reject }
          worker.postMessage({ op: 'end', id })
        })
      },
      abort: () => {
        if (!this.#jobs.delete(id)) return
        // The worker may still be reading memory given to it, but only for a hash nobody will ask
        // for: the memory may be used again.
        releaseAll(job)
        this.#holdWhileBusy(id % this.#size)
        worker.postMessage({ op: 'abort', id })
      },
    }
  }

  #fail(job: Job, err: Error): void {
    job.failed = err
    releaseAll(job)
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
    if (m.op === 'hashed') {
      job.pending.shift()?.()
      return
    }
    this.#jobs.delete(m.id)
    this.#holdWhileBusy(m.id % this.#size)
    if (m.op === 'digest') job.result?.resolve(m.hex)
    else this.#fail(job, new Error(`hash worker failed: ${m.message}`))
  }
}

function releaseAll(job: Job): void {
  for (const done of job.pending.splice(0)) done()
}

function inlineHasher(algorithm: DigestAlgorithm): StreamHasher {
  const hash = createDigester(algorithm)
  return {
    update: (bytes, done) => {
      hash.update(bytes)
      done()
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
