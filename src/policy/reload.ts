// Hot reload of the policy set: on a change in the policy folder (debounced) or on SIGHUP, the
// whole set is loaded and validated again; a set that fails is rejected whole and logged, and
// the previous one stays in force. Fail closed applies to the *new* set, not to pulls.

import { watch, type FSWatcher } from 'node:fs'
import type { Logger } from '../observability/logger.js'
import { oneAtATime } from '../concurrency.js'
import type { PolicyEngine } from './engine.js'
import type { PolicySet } from './types.js'

export interface ReloadResult {
  readonly ok: boolean
  readonly revision: string
  readonly error?: string
}

export class PolicyReloader {
  readonly #engine: PolicyEngine
  readonly #load: () => Promise<PolicySet>
  readonly #logger: Logger
  #watcher: FSWatcher | undefined
  #timer: NodeJS.Timeout | undefined
  /** Every reload attempt, newest last (bounded), for operators and the admin API. */
  readonly history: Array<ReloadResult & { readonly at: string }> = []

  readonly #onChange: ((revision: string) => void) | undefined

  /** `onChange` is told of every successful reload that changed the revision (re-evaluation). */
  constructor(engine: PolicyEngine, load: () => Promise<PolicySet>, logger: Logger, onChange?: (revision: string) => void) {
    this.#engine = engine
    this.#load = load
    this.#logger = logger
    this.#onChange = onChange
  }

  /** Loads the set again; the previous set stays when the new one does not validate. */
  reload(): Promise<ReloadResult> {
    return this.#inOrder()
  }

  /**
   * One load at a time, each after the last: joining a load under way would lose a SIGHUP sent
   * after it had read the folder (watch catches a change only when watching is on).
   */
  readonly #inOrder = oneAtATime(() => this.#reload())

  async #reload(): Promise<ReloadResult> {
    let result: ReloadResult
    try {
      const set = await this.#load()
      const previous = this.#engine.current().revision
      this.#engine.replace(set)
      result = { ok: true, revision: set.revision }
      if (previous !== set.revision) {
        this.#logger.info({ revision: set.revision, previous, policies: set.policies.length, exceptions: set.exceptions.length }, 'policy set reloaded')
        this.#onChange?.(set.revision)
      }
    } catch (err) {
      result = { ok: false, revision: this.#engine.current().revision, error: err instanceof Error ? err.message : String(err) }
      this.#logger.error({ err: result.error, revision: result.revision }, 'failed to reload policies; the previous set stays in force')
    }
    this.history.push({ ...result, at: new Date().toISOString() })
    if (this.history.length > 50) this.history.shift()
    return result
  }

  /** Watches `dir` (recursively) and reloads 300 ms after the last change. */
  watch(dir: string): void {
    try {
      this.#watcher = watch(dir, { recursive: true }, () => {
        clearTimeout(this.#timer)
        this.#timer = setTimeout(() => void this.reload(), 300)
      })
      this.#watcher.on('error', (err) => this.#logger.warn({ err: err.message, dir }, 'failed to watch the policy folder'))
    } catch (err) {
      this.#logger.warn({ err: (err as Error).message, dir }, 'failed to watch the policy folder; reload with SIGHUP')
    }
  }

  close(): void {
    clearTimeout(this.#timer)
    this.#watcher?.close()
  }
}
