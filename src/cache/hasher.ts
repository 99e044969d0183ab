// Hashing a blob as it streams in, off the main thread for large blobs. On the main thread,
// SHA-256 (about 1 GiB/s) competes with receiving the upstream's bytes and serving every reader;
// in a worker it runs beside them on another core, and the main thread only copies each batch.
//
// The copy is needed: the chunks the upstream gave are still written to disk and served from
// memory to readers at the head of the fill, so they cannot be transferred away. Batches are
// bounded in flight (the worker acknowledges each), so a worker that falls behind slows the
// upstream read instead of growing memory.

import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'
import { createDigester, type DigestAlgorithm } from '../oci/digest.js'

/** A running hash of one blob. */
export interface StreamHasher {
  /** Adds bytes; resolves at once unless too many are still in flight to the worker. */
  update(chunk: Uint8Array): Promise<void> | undefined
  /** The hex digest of everything added. */
  digest(): Promise<string>
  /** Drops the hash without a result (the fill failed). */
  abort(): void
}

/** Blobs smaller than this are hashed inline: posting them costs more than it saves. */
export const WORKER_HASH_MIN_BYTES = 4 * 1024 * 1024
/** Bytes gathered before one post to the worker. */
const BATCH_BYTES = 1024 * 1024
/** Bytes posted but not yet hashed, at most, before update() makes the caller wait. */
const MAX_IN_FLIGHT = 16 * 1024 * 1024

/** The worker: one Hash per job id; acknowledges each batch so the sender can bound its queue. */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads')
const { createHash } = require('node:crypto')
const jobs = new Map()
parentPort.on('message', (m) => {
  if (m.op === 'start') jobs.set(m.id, createHash(m.algorithm))
  else if (m.op === 'data') {
    const hash = jobs.get(m.id)
    if (hash !== undefined) hash.update(new Uint8Array(m.buffer, 0, m.length))
    parentPort.postMessage({ id: m.id, op: 'ack', length: m.length })
  } else if (m.op === 'end') {
    const hash = jobs.get(m.id)
    jobs.delete(m.id)
    parentPort.postMessage({ id: m.id, op: 'digest', hex: hash === undefined ? '' : hash.digest('hex') })
  } else if (m.op === 'abort') jobs.delete(m.id)
})
`

interface Job {
  inFlight: number
  /** Why the job ended without a digest (its worker died or the pool closed). */
  failed?: Error
  drained: Array<() => void>
  result?: { resolve: (hex: string) => void; reject: (err: Error) => void }
}

/** A small pool of hashing workers, started on first use and unref'd so they never hold exit. */
export class HashPool {
  readonly #size: number
  readonly #workers: Array<Worker | undefined> = []
  readonly #jobs = new Map<number, Job>()
  #next = 0
  #closed = false

  constructor(size: number) {
    this.#size = Math.max(1, size)
  }

  /** A hasher for a blob of `size` bytes: in a worker when large enough, else inline. */
  hasher(algorithm: DigestAlgorithm, size: number): StreamHasher {
    if (size < WORKER_HASH_MIN_BYTES || this.#closed) return inlineHasher(algorithm)
    return this.#workerHasher(algorithm)
  }

  async close(): Promise<void> {
    this.#closed = true
    const workers = this.#workers.splice(0)
    await Promise.all(workers.map((w) => w?.terminate()))
    const closed = new Error('the hash worker pool is closed')
    for (const [id, job] of this.#jobs) {
      this.#jobs.delete(id)
      job.failed = closed
      job.result?.reject(closed)
      for (const wake of job.drained.splice(0)) wake()
    }
  }

  #workerHasher(algorithm: DigestAlgorithm): StreamHasher {
    const id = ++this.#next
    const worker = this.#worker(id)
    const job: Job = { inFlight: 0, drained: [] }
    this.#jobs.set(id, job)
    this.#holdWhileBusy(id % this.#size)
    worker.postMessage({ op: 'start', id, algorithm })
    let batch: Uint8Array[] = []
    let batchBytes = 0
    const post = (): void => {
      if (batchBytes === 0) return
      const joined = Buffer.concat(batch, batchBytes)
      // A fresh buffer from concat owns its memory only when it is not from the shared pool.
      const owned = joined.byteOffset === 0 && joined.buffer.byteLength === batchBytes
      const buffer = owned ? joined.buffer : joined.buffer.slice(joined.byteOffset, joined.byteOffset + batchBytes)
      job.inFlight += batchBytes
      worker.postMessage({ op: 'data', id, buffer, length: batchBytes }, [buffer as ArrayBuffer])
      batch = []
      batchBytes = 0
    }
    return {
      update: (chunk) => {
        if (job.failed !== undefined) return undefined
        batch.push(chunk)
        batchBytes += chunk.byteLength
        if (batchBytes >= BATCH_BYTES) post()
        if (job.inFlight < MAX_IN_FLIGHT) return undefined
        return new Promise<void>((resolve) => job.drained.push(resolve))
      },
      digest: () => {
        if (job.failed !== undefined) return Promise.reject(job.failed)
        post()
        return new Promise<string>((resolve, reject) => {
          job.result = { resolve, reject }
          worker.postMessage({ op: 'end', id })
        })
      },
      abort: () => {
        if (!this.#jobs.delete(id)) return
        this.#holdWhileBusy(id % this.#size)
        worker.postMessage({ op: 'abort', id })
        for (const wake of job.drained.splice(0)) wake()
      },
    }
  }

  /** Jobs are spread over the workers by id; a worker is started when first needed. */
  #worker(id: number): Worker {
    const index = id % this.#size
    let worker = this.#workers[index]
    if (worker === undefined) {
      worker = new Worker(WORKER_SOURCE, { eval: true })
      worker.on('message', (m: { id: number; op: string; length?: number; hex?: string }) => this.#onMessage(m))
      // A dead worker fails its jobs (their fills fail closed) and is replaced at the next use.
      const dead = worker
      const fail = (err: Error): void => {
        if (this.#workers[index] === dead) this.#workers[index] = undefined
        for (const [jobId, job] of this.#jobs) {
          if (jobId % this.#size !== index) continue
          this.#jobs.delete(jobId)
          job.failed = err
          job.result?.reject(err)
          for (const wake of job.drained.splice(0)) wake()
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
   * a test from exiting, and a pending digest must not let it exit either.
   */
  #holdWhileBusy(index: number): void {
    const worker = this.#workers[index]
    if (worker === undefined) return
    let busy = false
    for (const id of this.#jobs.keys()) if (id % this.#size === index) busy = true
    if (busy) worker.ref()
    else worker.unref()
  }

  #onMessage(m: { id: number; op: string; length?: number; hex?: string }): void {
    const job = this.#jobs.get(m.id)
    if (job === undefined) return
    if (m.op === 'ack') {
      job.inFlight -= m.length ?? 0
      if (job.inFlight < MAX_IN_FLIGHT) for (const wake of job.drained.splice(0)) wake()
    } else if (m.op === 'digest') {
      this.#jobs.delete(m.id)
      this.#holdWhileBusy(m.id % this.#size)
      job.result?.resolve(m.hex ?? '')
    }
  }
}

function inlineHasher(algorithm: DigestAlgorithm): StreamHasher {
  const hash = createDigester(algorithm)
  return {
    update: (chunk) => {
      hash.update(chunk)
      return undefined
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
