// A recorded manifest judged by the policies from what its inspection recorded (its image facts
// and, when verification ran, its verification facts): as a pull by `tag` would be, or by its
// digest alone. The pull path's tag-scoped decisions and the re-evaluation walk judge alike here.

import { evaluate, type Decision } from '../policy/evaluate.js'
import type { PolicySet } from '../policy/types.js'
import type { ImageFacts } from './facts.js'
import type { ManifestRecord, RepoKey } from '../state/store.js'

/** Judges `record`, whose image facts are `image`, under `set`: by `tag` when given. */
export function judgeRecord(set: PolicySet, repo: RepoKey, record: Pick<ManifestRecord, 'digest' | 'facts'>, image: ImageFacts, tag?: string): Decision {
  return evaluate(set, {
    upstream: repo.upstream,
    repository: repo.repository,
    ...(tag !== undefined ? { tag } : {}),
    digest: record.digest,
    image,
    // Absent when nothing was verified (verification not configured): judged without, as pulled.
    ...(record.facts !== undefined ? { verification: record.facts } : {}),
  })
}
