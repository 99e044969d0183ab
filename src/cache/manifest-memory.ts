// A bounded in-memory cache of manifest bytes by digest, so that warm manifest answers need no
// disk read. Keyed by digest alone: the bytes of a digest are the same in every repository.

import type { Digest } from '../oci/digest.js'

interface Entry {
  readonly bytes: Buffer
  /** Read since it was stored or last spared: spared once by the next eviction that reaches it. */
  used: boolean
}

/**
 * Eviction is second chance (CLOCK) rather than strict LRU: a hit only marks its entry, where
 * moving it to the back of the Map (a delete and a set) cost every warm manifest answer; the
 * eviction that reaches a marked entry moves it back instead, once.
 */
export class ManifestMemory {
  readonly #limit: number
  readonly #entries = new Map<string, Entry>()
  #bytes = 0

  constructor(limitBytes: number) {
    this.#limit = limitBytes
  }

  get(digest: Digest): Buffer | undefined {
    const entry = this.#entries.get(digest)
    if (entry === undefined) return undefined
    entry.used = true
    return entry.bytes
  }

  delete(digest: Digest): void {
    const old = this.#entries.get(digest)
    if (old === undefined) return
    this.#entries.delete(digest)
    this.#bytes -= old.bytes.byteLength
  }

  set(digest: Digest, bytes: Buffer): void {
    if (bytes.byteLength > this.#limit) return
    this.delete(digest)
    // Room is made before the new entry goes in, so it is never the one evicted. Oldest first; a
    // spared entry goes to the back unmarked, so the loop ends within two passes.
    for (const [key, entry] of this.#entries) {
      if (this.#bytes + bytes.byteLength <= this.#limit) break
      this.#entries.delete(key)
      if (entry.used) {
        entry.used = false
        this.#entries.set(key, entry)
      } else {
        this.#bytes -= entry.bytes.byteLength
      }
    }
    this.#entries.set(digest, { bytes, used: false })
    this.#bytes += bytes.byteLength
  }
}
