// deploy/clients: the Docker daemon.json and the containers registries.conf snippets point at the
// same Customs as the containerd files, and registries.conf fails closed (Customs is the location,
// not a mirror) for registries that Customs is configured to route.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { z } from 'zod'
import { effectiveConfig, imageEnv, read, repoPath } from './files.js'
import { parseToml } from './toml.js'

const CUSTOMS_URL = String(
  parseToml(read(repoPath('deploy/kubernetes/node/certs.d/docker.io/hosts.toml'))).server
)
const customsHost = new URL(CUSTOMS_URL).host
const upstreamNames = (() => {
  const config = effectiveConfig(repoPath('deploy/kubernetes/customs.yaml'), {
    ...imageEnv(),
    CUSTOMS_STATE_REDIS_URL: 'redis://redis:6379',
  })
  return new Set(config.upstreams.map((u) => u.name))
})()

describe('deploy/clients/docker/daemon.json', () => {
  const daemon = z
    .strictObject({ 'registry-mirrors': z.array(z.string()).min(1) })
    .parse(JSON.parse(read(repoPath('deploy/clients/docker/daemon.json'))))

  it('lists Customs as the mirror in a form Docker accepts (scheme, no query or userinfo)', () => {
    assert.deepEqual(daemon['registry-mirrors'], [CUSTOMS_URL])
    const url = new URL(CUSTOMS_URL)
    assert.ok(url.protocol === 'https:' && url.search === '' && url.username === '')
  })
})

describe('deploy/clients/containers/registries.conf', () => {
  const text = read(repoPath('deploy/clients/containers/registries.conf'))
  const conf = z
    .strictObject({
      'unqualified-search-registries': z.array(z.string()).optional(),
      registry: z
        .array(
          z.strictObject({
            prefix: z.string(),
            location: z.string(),
            insecure: z.boolean().optional(),
            blocked: z.boolean().optional(),
          })
        )
        .min(1),
    })
    .parse(parseToml(text))

  it('has no mirror entries: a mirror falls back to the registry when Customs refuses', () => {
    assert.ok(conf.registry.every((r) => !('mirror' in r)))
  })

  it("makes Customs the location of each registry, under the registry's name", () => {
    for (const r of conf.registry) assert.equal(r.location, `${customsHost}/${r.prefix}`)
  })

  it('lists only registries Customs routes, and all of the default five', () => {
    const prefixes = conf.registry.map((r) => r.prefix)
    for (const p of prefixes) assert.ok(upstreamNames.has(p), p)
    assert.deepEqual([...upstreamNames].sort(), [...prefixes].sort())
  })

  it('never turns TLS verification off', () => {
    assert.ok(conf.registry.every((r) => r.insecure !== true))
  })

  it('shows the fail-open mirror variant in comments, and that variant parses', () => {
    const commented = text
      .split('\n')
      .filter((l) => /^# (\[\[registry|prefix|location) /.test(l) || /^# \[\[registry/.test(l))
      .map((l) => l.slice(2))
      .join('\n')
    const variant = z
      .strictObject({
        registry: z.tuple([
          z.strictObject({
            prefix: z.string(),
            location: z.string(),
            mirror: z.tuple([z.strictObject({ location: z.literal(`${customsHost}/docker.io`) })]),
          }),
        ]),
      })
      .parse(parseToml(commented))
    assert.equal(variant.registry[0].prefix, 'docker.io')
  })
})
