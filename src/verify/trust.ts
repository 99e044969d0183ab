// Trust material, loaded once at start: Sigstore trusted roots (a trusted_root.json file, or the
// public root shipped in @sigstore/tuf's seeds) with their thresholds, and named public keys.
// Its revision is a hash of everything it trusts; a verdict reached under another revision is
// stale. Nothing here touches the network.

import { createHash, createPublicKey, type KeyObject } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { resolve } from 'node:path'
import { TrustedRoot } from '@sigstore/protobuf-specs'
import { toTrustMaterial, type TrustMaterial } from '@sigstore/verify'
import type { TrustConfig } from '../config/trust-schema.js'

export interface TrustRoot {
  readonly name: string
  readonly material: TrustMaterial
  readonly tlogThreshold: number
  readonly ctlogThreshold: number
  readonly timestampThreshold: number
}

export interface TrustedKey {
  readonly name: string
  readonly key: KeyObject
  /** ed25519 keys are verified by hand: sigstore-js hashes with sha256, which Ed25519 refuses. */
  readonly type: string
}

export interface TrustStore {
  readonly roots: readonly TrustRoot[]
  readonly keys: readonly TrustedKey[]
  /** A hash of every root, key and threshold: part of every verdict's revision. */
  readonly revision: string
}

const PUBLIC_ROOT_URL = 'https://tuf-repo-cdn.sigstore.dev'

/** The public Sigstore trusted root as shipped (base64) in @sigstore/tuf's seeds.json. */
export function publicTrustedRootJson(): string {
  const require = createRequire(import.meta.url)
  const seeds = require('@sigstore/tuf/seeds.json') as Record<string, { targets?: Record<string, string> }>
  const encoded = seeds[PUBLIC_ROOT_URL]?.targets?.['trusted_root.json']
  if (encoded === undefined) throw new Error('@sigstore/tuf seeds.json has no trusted_root.json')
  return Buffer.from(encoded, 'base64').toString('utf8')
}

/**
 * Loads the configured trust. Paths are relative to `baseDir` (the configuration file's folder).
 * Throws with the root or key named when a file is missing or does not parse.
 */
export async function loadTrust(config: TrustConfig, baseDir: string = process.cwd()): Promise<TrustStore> {
  const revision = createHash('sha256')
  const keys: TrustedKey[] = []
  for (const k of config.keys) {
    const pem = k.pem ?? (await readText(resolve(baseDir, k.file as string), `trust key ${k.name}`))
    let key: KeyObject
    try {
      key = createPublicKey(pem)
    } catch (cause) {
      throw new Error(`trust key ${k.name}: not a PEM public key`, { cause })
    }
    keys.push({ name: k.name, key, type: key.asymmetricKeyType ?? 'unknown' })
    revision.update(`key ${k.name} ${key.export({ type: 'spki', format: 'der' }).toString('base64')}\n`)
  }
  const roots: TrustRoot[] = []
  for (const r of config.roots) {
    const text =
      r.trustedRoot === undefined ? publicTrustedRootJson() : await readText(resolve(baseDir, r.trustedRoot), `trust root ${r.name}`)
    let material: TrustMaterial
    try {
      material = toTrustMaterial(TrustedRoot.fromJSON(JSON.parse(text)), keyFinder(keys))
    } catch (cause) {
      throw new Error(`trust root ${r.name}: not a valid trusted_root.json`, { cause })
    }
    roots.push({ name: r.name, material, tlogThreshold: r.tlogThreshold, ctlogThreshold: r.ctlogThreshold, timestampThreshold: r.timestampThreshold })
    revision.update(`root ${r.name} ${r.tlogThreshold} ${r.ctlogThreshold} ${r.timestampThreshold} ${createHash('sha256').update(text).digest('hex')}\n`)
  }
  return { roots, keys, revision: revision.digest('hex').slice(0, 16) }
}

/** Resolves a bundle's public-key hint to a configured key by name. */
function keyFinder(keys: readonly TrustedKey[]) {
  return (hint: string) => {
    const found = keys.find((k) => k.name === hint)
    if (found === undefined) throw new Error(`no trusted key named ${hint}`)
    return { publicKey: found.key, validFor: () => true }
  }
}

async function readText(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8')
  } catch (cause) {
    throw new Error(`${what}: cannot read ${path}`, { cause })
  }
}

