// Trust material, loaded at start and again on SIGHUP (trust-reload.ts): Sigstore trusted roots
// (a trusted_root.json file, or the public root shipped in @sigstore/tuf's seeds) with their
// thresholds, and named public keys. Its revision is a hash of everything it trusts; a verdict
// reached under another revision is stale. Nothing here touches the network.

import { createHash, createPublicKey, type KeyObject } from 'node:crypto'
import { createRequire } from 'node:module'
import { resolve } from 'node:path'
import { TrustedRoot } from '@sigstore/protobuf-specs'
import { toTrustMaterial, type TrustMaterial } from '@sigstore/verify'
import type { TrustConfig } from '../config/trust-schema.js'
import { readSetting } from '../tls/files.js'

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

/** A trust file that cannot be used; the message names the setting and the file, fit to print as it is. */
export class TrustFileError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'TrustFileError'
  }
}

type KeyConfig = TrustConfig['keys'][number]
type RootConfig = TrustConfig['roots'][number]

/**
 * Loads the configured trust. Paths are relative to `baseDir` (the configuration file's folder).
 * Throws TrustFileError naming the setting and the file when a file is missing or does not parse.
 */
export async function loadTrust(config: TrustConfig, baseDir: string = process.cwd()): Promise<TrustStore> {
  const revision = createHash('sha256')
  const keys: TrustedKey[] = []
  for (const [i, k] of config.keys.entries()) {
    const key = await loadTrustKey(k, i, baseDir)
    keys.push(key)
    revision.update(`key ${k.name} ${key.key.export({ type: 'spki', format: 'der' }).toString('base64')}\n`)
  }
  const roots: TrustRoot[] = []
  for (const [i, r] of config.roots.entries()) {
    const { root, text } = await loadTrustRoot(r, i, baseDir, keys)
    roots.push(root)
    revision.update(`root ${r.name} ${r.tlogThreshold} ${r.ctlogThreshold} ${r.timestampThreshold} ${createHash('sha256').update(text).digest('hex')}\n`)
  }
  return { roots, keys, revision: revision.digest('hex').slice(0, 16) }
}

/** The key `trust.keys[i]`: inline or from its file; TrustFileError otherwise. */
export async function loadTrustKey(k: KeyConfig, i: number, baseDir: string): Promise<TrustedKey> {
  const file = k.file === undefined ? undefined : resolve(baseDir, k.file)
  const setting = `trust.keys[${i}].${file === undefined ? 'pem' : 'file'}`
  const pem = k.pem ?? (await readText(file as string, setting))
  try {
    const key = createPublicKey(pem)
    return { name: k.name, key, type: key.asymmetricKeyType ?? 'unknown' }
  } catch (cause) {
    throw new TrustFileError(`${setting}: ${file ?? `key ${k.name}`} is not a PEM public key`, { cause })
  }
}

/**
 * The root `trust.roots[i]`: its trusted_root.json, or the public one shipped; TrustFileError
 * otherwise. `keys` are the trusted keys a root's public-key hints resolve to.
 */
export async function loadTrustRoot(r: RootConfig, i: number, baseDir: string, keys: readonly TrustedKey[] = []): Promise<{ root: TrustRoot; text: string }> {
  const setting = `trust.roots[${i}].trustedRoot`
  const file = r.trustedRoot === undefined ? undefined : resolve(baseDir, r.trustedRoot)
  const text = file === undefined ? publicTrustedRootJson() : await readText(file, setting)
  let material: TrustMaterial
  try {
    material = toTrustMaterial(TrustedRoot.fromJSON(JSON.parse(text)), keyFinder(keys))
  } catch (cause) {
    throw new TrustFileError(`${setting}: ${file ?? 'the public Sigstore root'} is not a valid trusted_root.json`, { cause })
  }
  const root = { name: r.name, material, tlogThreshold: r.tlogThreshold, ctlogThreshold: r.ctlogThreshold, timestampThreshold: r.timestampThreshold }
  return { root, text }
}

/** Resolves a bundle's public-key hint to a configured key by name. */
function keyFinder(keys: readonly TrustedKey[]) {
  return (hint: string) => {
    const found = keys.find((k) => k.name === hint)
    if (found === undefined) throw new Error(`no trusted key named ${hint}`)
    return { publicKey: found.key, validFor: () => true }
  }
}

/** A trust file's text; TrustFileError naming the setting, the file and the reason otherwise. */
function readText(path: string, setting: string): Promise<string> {
  return readSetting(setting, path, (message, cause) => new TrustFileError(message, { cause }))
}

