// Read buffers that are used again instead of garbage. Serving a blob allocates nothing per chunk:
// a 200 MiB pull through fresh 1 MiB buffers made 200 MiB of external garbage, and the collections
// that followed cost more CPU than moving the bytes (measured: 1.4 s of GC over six 200 MiB pulls).
//
// While buffers are being taken, the pool keeps as many free ones as a burst gives back (up to
// `busyKeep`): 32 clients reading one blob from disk hold about two each, and with only `keep`
// kept, each round of their reads became garbage again (15 mark-compacts in three 32-client pulls
// of 64 MiB, 6 with the burst's buffers kept). After `idleMs` without a take, it shrinks back to
// `keep`, so a burst does not stay resident once a collection frees what it let go.

export interface BufferPoolOptions {
  /** Free buffers kept while the pool is in use. */
  readonly busyKeep?: number
  /** How long after the last take the pool shrinks back to `keep`. */
  readonly idleMs?: number
  /** Buffers readers may hold at once before they wait for one (see {@link BufferPool.acquire}). */
  readonly lendLimit?: number
  /** How long a reader waits for a buffer before it is given a new one anyway. */
  readonly lendWaitMs?: number
  /**
   * Allocate in SharedArrayBuffers, which a worker thread can read without a copy (a fill's
   * segments are hashed in place, cache/hasher.ts). Node's fs and sockets take such buffers alike.
   */
  readonly shared?: boolean
}

/** A pool of equal-sized buffers; beyond the free ones it keeps, returned buffers are left to the GC. */
export class BufferPool {
  readonly size: number
  readonly #keep: number
  readonly #busyKeep: number
  readonly #idleMs: number
  readonly #free: Buffer[] = []
  #lastTake = 0
  #trim: NodeJS.Timeout | undefined
  readonly #lendLimit: number
  readonly #lendWaitMs: number
  readonly #shared: boolean
  /** Buffers lent to readers (acquire) and not yet released. */
  #lent = 0
  /** Readers waiting for a buffer to come back, oldest first. */
  readonly #waiters: Array<(buffer: Buffer) => void> = []

  constructor(size: number, keep: number, options: BufferPoolOptions = {}) {
    this.size = size
    this.#keep = keep
    this.#busyKeep = Math.max(keep, options.busyKeep ?? keep)
    this.#idleMs = options.idleMs ?? 2000
    this.#lendLimit = options.lendLimit ?? Number.POSITIVE_INFINITY
    this.#lendWaitMs = options.lendWaitMs ?? 20
    this.#shared = options.shared ?? false
  }

  /** A buffer of `size` bytes with unspecified contents. */
  take(): Buffer {
    this.#lastTake = Date.now()
    return this.#free.pop() ?? (this.#shared ? Buffer.from(new SharedArrayBuffer(this.size)) : Buffer.allocUnsafeSlow(this.size))
  }

  /**
   * Gives a buffer back once nothing refers to its memory any more (a socket write has completed).
   * A buffer never given back is simply collected.
   */
  give(buffer: Buffer): void {
    if (buffer.byteLength !== this.size) return
    const waiter = this.#waiters.shift()
    if (waiter !== undefined) {
      this.#lastTake = Date.now()
      this.#lent++
      waiter(buffer)
      return
    }
    if (this.#free.length >= this.#busyKeep) return
    this.#free.push(buffer)
    if (this.#free.length > this.#keep) this.#scheduleTrim(this.#idleMs)
  }

  /**
   * A buffer for a reader, given back with {@link release}: now while readers hold fewer than
   * `lendLimit`, else the next one given back, or a new one after `lendWaitMs`. The wait is short
   * and then gives way: a client that stops reading keeps its buffers, and must not stall the
   * pulls of everyone else.
   */
  acquire(): Buffer | Promise<Buffer> {
    if (this.#lent < this.#lendLimit) {
      this.#lent++
      return this.take()
    }
    return new Promise<Buffer>((resolve) => {
      const waiter = (buffer: Buffer): void => {
        clearTimeout(timer)
        resolve(buffer)
      }
      const timer = setTimeout(() => {
        const at = this.#waiters.indexOf(waiter)
        if (at >= 0) this.#waiters.splice(at, 1)
        this.#lent++
        resolve(this.take())
      }, this.#lendWaitMs)
      this.#waiters.push(waiter)
    })
  }

  /** Gives back a buffer from {@link acquire}, once nothing refers to its memory any more. */
  release(buffer: Buffer): void {
    this.#lent--
    this.give(buffer)
  }

  /** Buffers lent to readers now (for tests). */
  get lent(): number {
    return this.#lent
  }

  /** Free buffers held now (for tests and metrics). */
  get free(): number {
    return this.#free.length
  }

  #scheduleTrim(ms: number): void {
    if (this.#trim !== undefined) return
    this.#trim = setTimeout(() => {
      this.#trim = undefined
      const idle = Date.now() - this.#lastTake
      if (idle < this.#idleMs) return this.#scheduleTrim(this.#idleMs - idle)
      this.#free.length = Math.min(this.#free.length, this.#keep)
    }, ms)
    // A pending trim never keeps the process alive.
    this.#trim.unref()
  }
}
