// deploy/compose.yaml: the services, volumes, mounts and dependencies fit together, the image is
// built from deploy/Dockerfile, and the mounted configuration passes Customs' own validation with
// the service's environment applied.

import assert from 'node:assert/strict'
import { dirname, join, resolve } from 'node:path'
import { describe, it } from 'node:test'
import { z } from 'zod'
import { defaultPort, effectiveConfig, exists, imageEnv, repoPath, yamlDocuments } from './files.js'

const COMPOSE = repoPath('deploy/compose.yaml')

const stringList = z.array(z.string().min(1))
const service = z.looseObject({
  image: z.string().optional(),
  build: z.strictObject({ context: z.string(), dockerfile: z.string() }).optional(),
  command: stringList.optional(),
  environment: z.record(z.string(), z.union([z.string(), z.number()])).optional(),
  volumes: stringList.optional(),
  ports: stringList.optional(),
  tmpfs: stringList.optional(),
  read_only: z.boolean().optional(),
  depends_on: z.record(z.string(), z.strictObject({ condition: z.string() })).optional(),
  healthcheck: z
    .looseObject({
      test: stringList,
      interval: z.string(),
      timeout: z.string(),
      retries: z.number(),
    })
    .optional(),
  cap_drop: stringList.optional(),
})
const composeSchema = z.strictObject({
  name: z.string(),
  services: z.record(z.string(), service),
  volumes: z.record(z.string(), z.null()).optional(),
})

const [doc] = yamlDocuments(COMPOSE)
const compose = composeSchema.parse(doc)
const base = dirname(COMPOSE)
const customs = compose.services.customs
const redis = compose.services.redis

/** `source:target[:mode]` split; a source with a slash or dot is a bind mount of a host path. */
function mounts(
  volumes: readonly string[] = []
): Array<{ source: string; target: string; bind: boolean }> {
  return volumes.map((v) => {
    const [source = '', target = ''] = v.split(':')
    return { source, target, bind: /^[./~]/.test(source) }
  })
}

describe('deploy/compose.yaml', () => {
  it('has a customs and a redis service', () => {
    assert.ok(customs !== undefined)
    assert.ok(redis !== undefined)
  })

  it('builds customs from deploy/Dockerfile with the repository root as context', () => {
    const build = customs?.build
    assert.ok(build !== undefined)
    const context = resolve(base, build.context)
    assert.equal(context, repoPath())
    assert.ok(exists(join(context, build.dockerfile)), build.dockerfile)
    assert.equal(build.dockerfile, 'deploy/Dockerfile')
  })

  it('declares every named volume it uses, and uses every one it declares', () => {
    const named = Object.values(compose.services).flatMap((s) =>
      mounts(s.volumes)
        .filter((m) => !m.bind)
        .map((m) => m.source)
    )
    assert.deepEqual([...new Set(named)].sort(), Object.keys(compose.volumes ?? {}).sort())
  })

  it('mounts files that exist', () => {
    for (const s of Object.values(compose.services)) {
      for (const m of mounts(s.volumes).filter((v) => v.bind)) {
        assert.ok(exists(resolve(base, m.source)), m.source)
      }
    }
  })

  it('depends only on services that exist, and waits for health only where one is checked', () => {
    for (const s of Object.values(compose.services)) {
      for (const [target, { condition }] of Object.entries(s.depends_on ?? {})) {
        const other = compose.services[target]
        assert.ok(other !== undefined, `depends_on ${target}`)
        if (condition === 'service_healthy') assert.ok(other.healthcheck !== undefined, target)
      }
    }
    assert.equal(customs?.depends_on?.redis?.condition, 'service_healthy')
  })

  it('runs redis with append-only persistence on a volume at /data', () => {
    assert.match((redis?.command ?? []).join(' '), /--appendonly yes/)
    assert.ok(mounts(redis?.volumes).some((m) => !m.bind && m.target === '/data'))
  })

  it('runs customs on a read-only root with a volume for the cache and a tmpfs /tmp', () => {
    assert.equal(customs?.read_only, true)
    assert.ok(mounts(customs?.volumes).some((m) => !m.bind && m.target === '/var/lib/customs'))
    assert.ok((customs?.tmpfs ?? []).some((t) => t.split(':')[0] === '/tmp'))
    assert.deepEqual(customs?.cap_drop, ['ALL'])
  })

  describe('the customs configuration', () => {
    const command = customs?.command ?? []
    const configPath = command[command.indexOf('--config') + 1] as string
    const bind = mounts(customs?.volumes).find((m) => m.bind && m.target === configPath)
    const file = resolve(base, bind?.source ?? '')
    const env = { ...imageEnv(), ...customs?.environment }
    const stringEnv = Object.fromEntries(Object.entries(env).map(([k, v]) => [k, String(v)]))

    it('is mounted where the command reads it', () => {
      assert.ok(command.includes('--config'))
      assert.ok(bind !== undefined, `a file is mounted at ${configPath}`)
    })

    it("passes Customs' validation with the image's and the service's environment", () => {
      const config = effectiveConfig(file, stringEnv)
      assert.equal(config.state.backend, 'redis')
      assert.equal(config.storage.path, '/var/lib/customs')
    })

    it('points at the redis service', () => {
      const config = effectiveConfig(file, stringEnv)
      assert.equal(new URL(config.state.redis.url).hostname, 'redis')
    })

    it('publishes and health-checks the port Customs listens on', () => {
      const port = effectiveConfig(file, stringEnv).listen.port
      assert.equal(port, defaultPort())
      assert.deepEqual(customs?.ports, [`${port}:${port}`])
      assert.match(
        (customs?.healthcheck?.test ?? []).join(' '),
        new RegExp(`127\\.0\\.0\\.1:${port}/`)
      )
    })
  })
})
