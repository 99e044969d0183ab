// deploy/Dockerfile: a multi-stage build whose runtime stage holds only what runs, as a numeric
// non-root user, with the cache volume, port, health check, entry point and environment that
// compose.yaml, the Kubernetes manifests and Customs' own configuration expect.

import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { describe, it } from 'node:test'
import { promisify } from 'node:util'
import { CUSTOMS_NODE_FLAGS } from '../../../bench/services.js'
import { parseConfig } from '../../../src/config/load.js'
import { copyArgs, envOf, execForm, parseDockerfile } from './dockerfile.js'
import type { Stage } from './dockerfile.js'
import { defaultPort, exists, read, repoPath } from './files.js'

const run = promisify(execFile)
const dockerfile = parseDockerfile(read(repoPath('deploy/Dockerfile')))
const runtime = dockerfile.stages[dockerfile.stages.length - 1] as Stage
const all = (stage: Stage, keyword: string): string[] =>
  stage.instructions.filter((i) => i.keyword === keyword).map((i) => i.args)
const one = (stage: Stage, keyword: string): string => {
  const found = all(stage, keyword)
  assert.equal(found.length, 1, `one ${keyword} in the runtime stage`)
  return found[0] as string
}

/** The command of the HEALTHCHECK: the exec form after its options. */
function healthcheckCommand(): string[] {
  const args = one(runtime, 'HEALTHCHECK')
  const match = /^(?:--[a-z-]+=\S+\s+)*CMD\s+(\[.*\])$/.exec(args)
  assert.ok(match !== null, `HEALTHCHECK uses CMD in exec form: ${args}`)
  return execForm(match[1] as string) as string[]
}

describe('deploy/Dockerfile', () => {
  it('has a build stage and a runtime stage on a tagged Node LTS base', () => {
    assert.ok(dockerfile.stages.length >= 2)
    for (const stage of dockerfile.stages) {
      assert.match(stage.base, /^node:(22|24)[.\w-]*(@sha256:[0-9a-f]{64})?$/, stage.base)
    }
    const names = dockerfile.stages.map((s) => s.name)
    assert.equal(new Set(names).size, names.length, 'stage names are unique')
  })

  it('installs with npm ci and builds in the build stage', () => {
    const build = dockerfile.stages[0] as Stage
    const runs = all(build, 'RUN').join('\n')
    assert.match(runs, /npm ci\b/)
    assert.match(runs, /npm run build\b/)
    assert.match(runs, /npm prune --omit=dev\b|npm ci [^\n]*--omit=dev/)
  })

  it('never downloads with ADD', () => {
    const adds = dockerfile.stages.flatMap((s) => all(s, 'ADD'))
    assert.deepEqual(
      adds.filter((a) => /\bhttps?:\/\/|git@/.test(a)),
      []
    )
  })

  it('copies only files that exist in the repository, or that a stage built', () => {
    const stageNames = new Set<string>()
    for (const stage of dockerfile.stages) {
      for (const args of all(stage, 'COPY')) {
        const { flags, sources } = copyArgs(args)
        const from = flags.get('from')
        if (from !== undefined) {
          assert.ok(stageNames.has(from), `COPY --from=${from} names an earlier stage`)
          continue
        }
        for (const source of sources) {
          assert.ok(source === 'dist' || exists(repoPath(source)), `${source} exists`)
        }
      }
      if (stage.name !== undefined) stageNames.add(stage.name)
    }
  })

  it('gives the runtime stage only package.json, production node_modules, dist, bin and the shipped policies', () => {
    const copied = all(runtime, 'COPY').map((a) => copyArgs(a).dest.replace(/^\.\//, ''))
    assert.deepEqual(copied.sort(), ['bin', 'dist', 'node_modules', 'package.json', 'policies'])
    assert.doesNotMatch(all(runtime, 'RUN').join('\n'), /npm (ci|install)/)
  })

  it('runs as a numeric user that is not root', () => {
    const user = one(runtime, 'USER')
    const match = /^(\d+)(?::(\d+))?$/.exec(user)
    assert.ok(match !== null, `USER is numeric: ${user}`)
    assert.notEqual(Number(match[1]), 0)
    if (match[2] !== undefined) assert.notEqual(Number(match[2]), 0)
  })

  it('works in /app and starts node dist/main.js serve with a configuration file', () => {
    assert.equal(one(runtime, 'WORKDIR'), '/app')
    // The bench starts Customs with the image's node flags, so that it measures what is deployed.
    assert.deepEqual(execForm(one(runtime, 'ENTRYPOINT')), ['node', ...CUSTOMS_NODE_FLAGS, 'dist/main.js'])
    assert.deepEqual(execForm(one(runtime, 'CMD')), [
      'serve',
      '--config',
      '/etc/customs/customs.yaml',
    ])
  })

  it('gives `npm start` and the installed `customs` command the same node flags as the image', () => {
    const flags = CUSTOMS_NODE_FLAGS.join(' ')
    const start = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts.start
    assert.ok(start?.includes(`node ${flags} dist/main.js serve`), `npm start: ${start}`)
    assert.equal(read('bin/customs.js').split('\n')[0], `#!/usr/bin/env -S node ${flags}`)
  })

  it('exposes the port Customs listens on by default', () => {
    assert.deepEqual(all(runtime, 'EXPOSE'), [String(defaultPort())])
  })

  it('keeps the cache and temporary files on the /var/lib/customs volume', () => {
    const env = envOf(runtime)
    assert.equal(env.get('CUSTOMS_STORAGE_PATH'), '/var/lib/customs')
    assert.match(env.get('TMPDIR') ?? '', /^\/var\/lib\/customs\//)
    assert.match(all(runtime, 'VOLUME').join(' '), /\/var\/lib\/customs/)
    assert.match(all(runtime, 'RUN').join('\n'), /chown 10001:10001 \/var\/lib\/customs/)
  })

  it('sets only environment variables that Customs accepts, and runs on the defaults alone', () => {
    const env = Object.fromEntries(envOf(runtime))
    // The image's own /etc/customs/customs.yaml is a comment: the configuration is the defaults.
    const config = parseConfig('# defaults\n', { env })
    assert.equal(config.storage.path, '/var/lib/customs')
  })

  describe('HEALTHCHECK', () => {
    it('uses node itself (no curl in slim images) against /healthz', () => {
      const command = healthcheckCommand()
      assert.equal(command[0], 'node')
      assert.match(command.join(' '), /\/healthz/)
    })

    const probe = async (port: number): Promise<number> => {
      const [node, ...args] = healthcheckCommand()
      const env = { ...process.env, CUSTOMS_LISTEN_PORT: String(port) }
      try {
        await run(node === 'node' ? process.execPath : (node as string), args, {
          env,
          timeout: 15_000,
        })
        return 0
      } catch (err) {
        return (err as { code?: number }).code ?? -1
      }
    }

    const serving = async (
      status: number,
      check: (port: number) => Promise<void>
    ): Promise<void> => {
      const server = createServer((req, res) => {
        res.statusCode = req.url === '/healthz' ? status : 404
        res.end()
      })
      await new Promise<void>((done) => server.listen(0, '127.0.0.1', done))
      try {
        await check((server.address() as AddressInfo).port)
      } finally {
        await new Promise((done) => server.close(done))
      }
    }

    it('exits 0 when /healthz answers 200', async () => {
      await serving(200, async (port) => assert.equal(await probe(port), 0))
    })

    it('exits 1 when /healthz answers an error', async () => {
      await serving(500, async (port) => assert.equal(await probe(port), 1))
    })

    it('exits 1 when nothing listens', async () => {
      let free = 0
      await serving(200, async (port) => {
        free = port
      })
      assert.equal(await probe(free), 1)
    })
  })
})
