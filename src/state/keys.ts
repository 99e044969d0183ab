// Every Redis key Customs uses, built from the configured prefix and the schema version; no other
// file spells a key. The layout, with <u> the upstream, <r> the repository, <d> a digest:
//
//   <prefix>:schema                    string  schema version of everything under <prefix>:v<N>:
//   <prefix>:v1:
//   |-- tag:<u>:<r>:<tag>              string  JSON TagRecord {digest, checkedAt}
//   |-- tag-history:<u>:<r>:<tag>      list    JSON TagMove {from, to, at}, newest first, bounded
//   |-- manifest:<u>:<r>:<d>           string  JSON ManifestRecord, verdict included
//   |-- manifest-blobs:<u>:<r>:<d>     set     the blob digests manifest <d> references
//   |-- blob:<u>:<r>:<d>               string  JSON BlobLink {digest, size}: the blob gate
//   |-- blob-refs:<u>:<r>:<d>          set     admitted manifests of <u>/<r> referencing blob <d>
//   |-- holders:<d>                    set     `<u>:<r>` (encoded) of every repository where <d>
//   |                                          is a linked blob or an admitted manifest
//   |-- parent:<u>:<r>:<d>             string  digest of the index that listed manifest <d>
//   |-- quarantine:<u>:<r>:<d>         string  JSON QuarantineRecord of a refused detained <d>
//   |-- quarantine-index               zset    quarantine record keys, scored by lastSeen (ms)
//   |-- quarantine-index:<u>           zset    the same, for upstream <u> only
//   |-- release-expiry                 zset    quarantine record keys of releases, scored by expires (ms)
//   |-- lock:<name>                    string  random holder token, with a PX expiry
//   |-- console-session:<h>            string  JSON StoredSession of the console session whose id
//   |                                          hashes (SHA-256, hex) to <h>; PX of its lifetime
//   |-- audit                          stream  audit entries, id <seq>-0, field e = entry JSON
//   `-- audit-head                     string  "<seq> <hash>" of the newest audit entry
//
// Every variable component goes through encodeURIComponent, so ':' and '/' in it (upstream
// `host:5000`, repository `library/alpine`, digest `sha256:...`) cannot shift the key's fields:
// `a:b` + `c` and `a` + `b:c` stay distinct. The schema key sits outside the versioned namespace
// so that a reader of any version can find out which version it is looking at.

import type { Digest } from '../oci/digest.js'
import type { RepoKey } from './store.js'

/** The layout version of everything under `<prefix>:v<N>:`; bump it with a migration. */
export const SCHEMA_VERSION = 1

export interface StateKeys {
  readonly schemaVersionKey: string
  tag(repo: RepoKey, tag: string): string
  tagHistory(repo: RepoKey, tag: string): string
  manifest(repo: RepoKey, digest: Digest): string
  blob(repo: RepoKey, digest: Digest): string
  /** The admitted manifests of a repository that reference a blob: its link lives while any do. */
  blobRefs(repo: RepoKey, digest: Digest): string
  /** The blobs a manifest references, recorded whatever its verdict. */
  manifestBlobs(repo: RepoKey, digest: Digest): string
  /** The repositories holding a digest (linked blob or admitted manifest); members holderMember(). */
  holders(digest: Digest): string
  holderMember(repo: RepoKey): string
  /** A SCAN MATCH pattern for every manifest() key; parse matches with parseManifest(). */
  manifestPattern(): string
  /** A SCAN MATCH pattern for every tag() key; parse matches with parseTag(). */
  tagPattern(): string
  parseManifest(key: string): { repo: RepoKey; digest: Digest } | null
  parseTag(key: string): { repo: RepoKey; tag: string } | null
  parent(repo: RepoKey, digest: Digest): string
  quarantine(repo: RepoKey, digest: Digest): string
  /** All quarantine records, by lastSeen; members are quarantine() keys. */
  quarantineIndex(): string
  /** One upstream's quarantine records, by lastSeen; members are quarantine() keys. */
  quarantineUpstreamIndex(upstream: string): string
  /** Quarantine records with a release, by the release's expiry; members are quarantine() keys. */
  releaseExpiry(): string
  lock(name: string): string
  /** A console session, by the SHA-256 of its id (src/console/redis-sessions.ts). */
  consoleSession(idHash: string): string
  /** The audit chain (src/audit/redis-store.ts). */
  auditStream(): string
  /** The audit chain's head, moved only together with an append. */
  auditHead(): string
}

const enc = encodeURIComponent

/** The key builders for one prefix (config `state.redis.prefix`). */
export function stateKeys(prefix: string): StateKeys {
  // Config already restricts the prefix to [a-zA-Z0-9_-]; this guards callers that bypass it.
  if (prefix === '' || prefix !== enc(prefix) || prefix.includes(':')) {
    throw new Error(`invalid redis key prefix ${JSON.stringify(prefix)}`)
  }
  const ns = `${prefix}:v${SCHEMA_VERSION}`
  const inRepo = (kind: string, repo: RepoKey, last: string): string =>
    `${ns}:${kind}:${enc(repo.upstream)}:${enc(repo.repository)}:${enc(last)}`
  // The inverse of inRepo, for keys found by SCAN: exactly three encoded fields after the kind.
  const parseInRepo = (kind: string, key: string): { repo: RepoKey; last: string } | null => {
    const head = `${ns}:${kind}:`
    if (!key.startsWith(head)) return null
    const fields = key.slice(head.length).split(':')
    if (fields.length !== 3) return null
    try {
      const [upstream, repository, last] = fields.map((f) => decodeURIComponent(f)) as [string, string, string]
      return { repo: { upstream, repository }, last }
    } catch {
      return null
    }
  }
  return Object.freeze({
    schemaVersionKey: `${prefix}:schema`,
    tag: (repo: RepoKey, tag: string) => inRepo('tag', repo, tag),
    tagHistory: (repo: RepoKey, tag: string) => inRepo('tag-history', repo, tag),
    manifest: (repo: RepoKey, digest: Digest) => inRepo('manifest', repo, digest),
    blob: (repo: RepoKey, digest: Digest) => inRepo('blob', repo, digest),
    parent: (repo: RepoKey, digest: Digest) => inRepo('parent', repo, digest),
    blobRefs: (repo: RepoKey, digest: Digest) => inRepo('blob-refs', repo, digest),
    manifestBlobs: (repo: RepoKey, digest: Digest) => inRepo('manifest-blobs', repo, digest),
    holders: (digest: Digest) => `${ns}:holders:${enc(digest)}`,
    holderMember: (repo: RepoKey) => `${enc(repo.upstream)}:${enc(repo.repository)}`,
    manifestPattern: () => `${ns}:manifest:*`,
    tagPattern: () => `${ns}:tag:*`,
    parseManifest: (key: string) => {
      const parsed = parseInRepo('manifest', key)
      return parsed === null ? null : { repo: parsed.repo, digest: parsed.last as Digest }
    },
    parseTag: (key: string) => {
      const parsed = parseInRepo('tag', key)
      return parsed === null ? null : { repo: parsed.repo, tag: parsed.last }
    },
    quarantine: (repo: RepoKey, digest: Digest) => inRepo('quarantine', repo, digest),
    quarantineIndex: () => `${ns}:quarantine-index`,
    quarantineUpstreamIndex: (upstream: string) => `${ns}:quarantine-index:${enc(upstream)}`,
    releaseExpiry: () => `${ns}:release-expiry`,
    lock: (name: string) => `${ns}:lock:${enc(name)}`,
    consoleSession: (idHash: string) => `${ns}:console-session:${enc(idHash)}`,
    auditStream: () => `${ns}:audit`,
    auditHead: () => `${ns}:audit-head`,
  })
}
