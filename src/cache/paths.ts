// Every on-disk path of the cache is computed here, and nowhere else.
//
//   <storage.path>/
//   ├── blobs/
//   │   ├── sha256/<first two hex>/<hex>     committed, digest-verified content (layers, configs,
//   │   └── sha512/<first two hex>/<hex>     manifests): nothing else is ever stored under a digest name
//   └── tmp/
//       └── <host>-<pid>-<random>/           one folder per running process, holding its fills
//           ├── owner                        JSON {host, pid, startedAt}: lets a restart tell dead folders from live ones
//           └── <hex>.<random>.part          a fill being written and hashed; renamed into blobs/ on a match
//
// A rename within one filesystem is atomic, so a reader sees either no blob or the whole verified
// one. tmp/ and blobs/ must therefore live on the same filesystem, which this layout guarantees.

import { hostname } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { digestAlgorithm, digestHex, type Digest } from '../oci/digest.js'

export class CachePaths {
  readonly root: string
  readonly blobs: string
  readonly tmp: string
  /** This process's own temp folder. */
  readonly processTmp: string

  constructor(root: string) {
    this.root = root
    this.blobs = join(root, 'blobs')
    this.tmp = join(root, 'tmp')
    this.processTmp = join(this.tmp, `${hostname().replace(/[^a-zA-Z0-9.-]/g, '_')}-${process.pid}-${randomBytes(4).toString('hex')}`)
  }

  blob(digest: Digest): string {
    const hex = digestHex(digest)
    return join(this.blobs, digestAlgorithm(digest), hex.slice(0, 2), hex)
  }

  blobDir(digest: Digest): string {
    const hex = digestHex(digest)
    return join(this.blobs, digestAlgorithm(digest), hex.slice(0, 2))
  }

  /** A fresh temp file name for a fill of this digest, in this process's folder. */
  part(digest: Digest): string {
    return join(this.processTmp, `${digestHex(digest).slice(0, 16)}.${randomBytes(6).toString('hex')}.part`)
  }

  ownerFile(dir: string = this.processTmp): string {
    return join(dir, 'owner')
  }
}
