// What policies see of one manifest besides its signatures: the image config's creation time,
// labels, platform and user, and the layer count and total size; for an index, its platforms.
// Pure: built from the parsed manifest and the config blob's bytes.

import type { Manifest } from '../oci/manifest.js'

export interface ImageFacts {
  readonly mediaType: string
  readonly kind: 'image' | 'index'
  /** The config's `created`, as written (RFC 3339). */
  readonly created?: string
  readonly labels: Readonly<Record<string, string>>
  /** `os/arch[/variant]`: the image's own, or every platform an index lists. */
  readonly platforms: readonly string[]
  readonly layers?: number
  /** Config plus layers, in bytes, as the manifest declares them. */
  readonly size?: number
  /** The config's `User`, '' when unset (which runs as root). */
  readonly user?: string
  /** The manifest's annotations. */
  readonly annotations: Readonly<Record<string, string>>
}

/** The largest image config Customs reads for facts. */
export const MAX_CONFIG_BYTES = 4 * 1024 * 1024

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function platformOf(os: unknown, arch: unknown, variant: unknown): string | undefined {
  if (typeof os !== 'string' || typeof arch !== 'string') return undefined
  return typeof variant === 'string' && variant !== '' ? `${os}/${arch}/${variant}` : `${os}/${arch}`
}

/**
 * Facts of a manifest. `config` is the image config's bytes (verified by digest) for an image
 * manifest; a config that is not an image config (artifacts) yields no created/user/platform.
 */
export function imageFacts(manifest: Manifest, config: Buffer | undefined): ImageFacts {
  if (manifest.kind === 'index') {
    const platforms = manifest.manifests
      .map((d) => (d.platform ? platformOf(d.platform.os, d.platform.architecture, d.platform.variant) : undefined))
      // BuildKit lists its attestation manifests as unknown/unknown: not a platform.
      .filter((p): p is string => p !== undefined && p !== 'unknown/unknown')
    return { mediaType: manifest.mediaType, kind: 'index', labels: {}, platforms, annotations: manifest.annotations }
  }
  const size = manifest.config.size + manifest.layers.reduce((n, l) => n + l.size, 0)
  let parsed: unknown
  try {
    parsed = config === undefined ? undefined : JSON.parse(config.toString('utf8'))
  } catch {
    parsed = undefined
  }
  const c = isObject(parsed) ? parsed : {}
  const inner = isObject(c.config) ? c.config : {}
  const labels: Record<string, string> = {}
  if (isObject(inner.Labels)) {
    for (const [k, v] of Object.entries(inner.Labels)) if (typeof v === 'string') labels[k] = v
  }
  const platform = platformOf(c.os, c.architecture, c.variant)
  return {
    mediaType: manifest.mediaType,
    kind: 'image',
    ...(typeof c.created === 'string' ? { created: c.created } : {}),
    labels,
    platforms: platform === undefined ? [] : [platform],
    layers: manifest.layers.length,
    size,
    user: typeof inner.User === 'string' ? inner.User : '',
    annotations: manifest.annotations,
  }
}
