// SIGHUP for the signature trust (the `trust` section): every root and key file is read and checked
// again exactly as at start (loadTrust), and only when all pass does the new trust replace the one
// in force; one that fails leaves it as it was, as upstreams' TLS does (upstream/tls-reload.ts). A
// key file caught half-copied must not leave Customs trusting nothing, or something in between.
// The configuration itself is not read again: the roots' and keys' names and thresholds stay, so
// the policies' key names, checked against them at load, stay valid.

import type { TrustConfig } from '../config/trust-schema.js'
import type { Logger } from '../observability/logger.js'
import { oneAtATime } from '../concurrency.js'
import { loadTrust, TrustFileError, type TrustStore } from './trust.js'

/**
 * The trust in force. The verifier reads `current` at each verification and the inspector its
 * revision at each inspection; a reload swaps it whole, so a reader sees the old or the new trust,
 * never a mix.
 */
export class TrustHolder {
  #current: TrustStore

  constructor(initial: TrustStore) {
    this.#current = initial
  }

  get current(): TrustStore {
    return this.#current
  }

  replace(next: TrustStore): void {
    this.#current = next
  }
}

/** What one reload did: the revision in force after it, and why the files were refused. */
export interface TrustRenewal {
  readonly ok: boolean
  readonly revision: string
  readonly previous: string
  readonly error?: string
}

/**
 * A function that reads the trust files of `config` again and puts them in force in `holder`;
 * relative paths are from `base`, the configuration file's folder, as at start. `onChange` is told
 * when the revision moved (re-evaluation: verdicts reached under the old trust are judged again).
 * Never rejects: the outcome is logged, a failure as one error line naming the setting and the file.
 */
export function trustReloader(
  config: TrustConfig,
  holder: TrustHolder,
  options: { base: string; logger: Logger; onChange?: (revision: string) => void }
): () => Promise<TrustRenewal> {
  const { base, logger, onChange } = options
  async function renew(): Promise<TrustRenewal> {
    const previous = holder.current.revision
    let trust: TrustStore
    try {
      trust = await loadTrust(config, base)
    } catch (err) {
      // A TrustFileError's message names the setting and the file, never what the file holds.
      const reason = err instanceof TrustFileError ? err.message : String(err)
      logger.error({ reason, revision: previous }, 'trust reload failed; the previous trust stays in force')
      return { ok: false, revision: previous, previous, error: reason }
    }
    holder.replace(trust)
    logger.info({ revision: trust.revision, previous, roots: trust.roots.length, keys: trust.keys.length }, 'trust reloaded')
    if (trust.revision !== previous) onChange?.(trust.revision)
    return { ok: true, revision: trust.revision, previous }
  }
  return oneAtATime(renew)
}
