// A bounded in-memory cache of manifest bytes by digest, so that warm manifest answers need no
// disk read. Keyed by digest alone: the bytes of a digest are the same in every repository.

import type { Digest } from '../oci/digest.js'

export class ManifestMemory {
  readonly #limit: number
  readonly #entries = new Map<string, Buffer>()
  #bytes = 0

  constructor(limitBytes: number) {
    this.#limit = limitBytes
  }

  get(digest: Digest): Buffer | undefined {
    const bytes = this.#entries.get(digest)
    if (bytes !== undefined) {
      this.#entries.delete(digest)
      this.#entries.set(digest, bytes)
    }
    return bytes
  }

  delete(digest: Digest): void {
    const old = this.#entries.get(digest)
    if (old === undefined) return
    this.#entries.delete(digest)
    this.#bytes -= old.byteLength
  }

  set(digest: Digest, bytes: Buffer): void {
    if (bytes.byteLength > this.#limit) return
    const old = this.#entries.get(digest)
    if (old !== undefined) {
      this.#bytes -= old.byteLength
      this.#entries.delete(digest)
    }
    this.#entries.set(digest, bytes)
    this.#bytes += bytes.byteLength
    for (const [key, value] of this.#entries) {
      if (this.#bytes <= this.#limit) break
      this.#entries.delete(key)
      this.#bytes -= value.byteLength
    }
  }
}
