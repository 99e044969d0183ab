// The policy set in force. Evaluation reads `current()` on every decision, so a reload swaps the
// whole set at once; a set that failed to load never replaces a good one (policy/reload.ts).

import type { PolicySet } from './types.js'

/** No policies, every image cleared: the state before any set is loaded, and for tests. */
export const EMPTY_POLICY_SET: PolicySet = Object.freeze({
  policies: [],
  exceptions: [],
  unmatched: 'allow',
  revision: 'none',
})

export class PolicyEngine {
  #set: PolicySet

  constructor(initial: PolicySet = EMPTY_POLICY_SET) {
    this.#set = initial
  }

  current(): PolicySet {
    return this.#set
  }

  replace(set: PolicySet): void {
    this.#set = set
  }
}
