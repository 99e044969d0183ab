// Names of the cross-replica locks the cache takes in state (state/keys.ts turns them into keys).

import type { Digest } from '../oci/digest.js'

export const lockName = Object.freeze({
  /** One upstream fill of a blob at a time, across every replica sharing the storage folder. */
  fill: (digest: Digest) => `fill:${digest}`,
})
