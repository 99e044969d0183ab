// Loading the configuration: defaults, positioned errors, environment overrides, secrets,
// freezing and redaction, and the `config check` command built on them.

import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { parse as parseYaml } from 'yaml'
import { configCheck } from '../../../src/cli/config-check.js'
import type { CheckIo } from '../../../src/cli/config-check.js'
import {
  ConfigError,
  formatIssue,
  loadConfig,
  parseConfig,
  redactConfig,
  MAX_CONFIG_FILE_BYTES,
  MAX_SECRET_FILE_BYTES,
} from '../../../src/config/load.js'
import type { ConfigIssue, Env } from '../../../src/config/load.js'
import { configSchema } from '../../../src/config/schema.js'

const FILE = 'customs.yaml'
const SECRET = 'hunter2-Sup3rSecret'

/** The issues of the ConfigError that parsing throws; fails the test when nothing is thrown. */
function issuesOf(text: string, env: Env = {}): readonly ConfigIssue[] {
  try {
    parseConfig(text, { file: FILE, env })
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`)
    return err.issues
  }
  assert.fail('expected a ConfigError')
}

async function loadIssues(file: string, env: Env = {}): Promise<readonly ConfigIssue[]> {
  try {
    await loadConfig({ file, env })
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`)
    return err.issues
  }
  assert.fail('expected a ConfigError')
}

/** The one issue at path, with where it was found. */
function only(issues: readonly ConfigIssue[], path: string): ConfigIssue {
  const found = issues.filter((i) => i.path === path)
  assert.equal(found.length, 1, `one issue at ${path} in ${JSON.stringify(issues)}`)
  return found[0] as ConfigIssue
}

function upstreamsYaml(...entries: string[]): string {
  return `upstreams:\n${entries.join('')}`
}

describe('parseConfig', () => {
  describe('when the file is empty', () => {
    it('returns every default', () => {
      const config = parseConfig('', { file: FILE })
      assert.deepEqual(config, configSchema.parse({}))
      assert.equal(config.listen.port, 5000)
      assert.equal(config.storage.maxSize, 50 * 2 ** 30)
      assert.equal(config.storage.fillTimeout, 30 * 60_000)
      assert.deepEqual(
        config.upstreams.map((u) => u.name),
        ['docker.io', 'ghcr.io', 'quay.io', 'registry.k8s.io', 'gcr.io']
      )
      assert.deepEqual(
        config.upstreams.filter((u) => u.default).map((u) => u.name),
        ['docker.io']
      )
    })
    it('returns the defaults for a file of comments only', () => {
      assert.deepEqual(parseConfig('# nothing yet\n\n', { file: FILE }), parseConfig(''))
    })
  })

  describe('when a key has no value', () => {
    it('uses the default, as if the key were absent', () => {
      const config = parseConfig('storage:\n  # path: /var/lib/customs\nlog:\n  level:\n')
      assert.equal(config.storage.path, './data')
      assert.equal(config.log.level, 'info')
    })
  })

  describe('deploy/config.example.yaml', () => {
    it('parses, and states exactly the defaults', async () => {
      const text = await readFile('deploy/config.example.yaml', 'utf8')
      assert.deepEqual(parseConfig(text, { file: 'config.example.yaml' }), parseConfig(''))
    })
    it('documents every key with a comment', async () => {
      const lines = (await readFile('deploy/config.example.yaml', 'utf8')).split('\n')
      // Only the first upstream documents the upstream keys; the others repeat them.
      const firstUpstreamEnd = lines.findIndex((l) => l.startsWith('  - name: ghcr.io'))
      lines.slice(0, firstUpstreamEnd).forEach((line, i) => {
        if (!/^\s*(- )?[A-Za-z]+:/.test(line)) return
        const previous = lines[i - 1] ?? ''
        assert.match(previous, /^\s*#/, `line ${i + 1} (${line.trim()}) has no comment above it`)
      })
    })
  })

  describe('when a value is invalid', () => {
    it('points at a bad upstream URL', () => {
      const text = upstreamsYaml(
        '  - name: a.io\n',
        '    url: https://a.io\n',
        '  - name: b.io\n',
        '    url: ftp://b.io\n'
      )
      const issue = only(issuesOf(text), 'upstreams[1].url')
      assert.equal(issue.file, FILE)
      assert.equal(issue.line, 5)
      assert.equal(issue.column, 10)
      assert.equal(
        formatIssue(issue),
        'customs.yaml:5:10 upstreams[1].url: ' +
          'must be an http(s) URL without credentials, query or fragment'
      )
    })
    it('points at a bad duration', () => {
      const text = upstreamsYaml(
        '  - name: a.io\n',
        '    url: https://a.io\n',
        '    tagTtl: 5 minutes\n'
      )
      assert.equal(only(issuesOf(text), 'upstreams[0].tagTtl').line, 4)
    })
    it('points at a bad size', () => {
      const text = 'storage:\n  path: /data\n  maxSize: 50 parsecs\n'
      const issue = only(issuesOf(text), 'storage.maxSize')
      assert.deepEqual([issue.line, issue.column], [3, 12])
    })
    it('points at a value of the wrong type', () => {
      assert.equal(only(issuesOf('listen:\n  port: http\n'), 'listen.port').line, 2)
      assert.equal(only(issuesOf('listen: 5000\n'), 'listen').line, 1)
    })
    it('points at a missing key’s parent, the upstream it belongs to', () => {
      const text = upstreamsYaml('  - name: a.io\n', '    url: https://a.io\n', '  - name: b.io\n')
      const issue = only(issuesOf(text), 'upstreams[1].url')
      assert.deepEqual([issue.line, issue.column], [4, 5])
    })
    it('reports every issue, in file order', () => {
      const issues = issuesOf('log:\n  level: loud\nlisten:\n  port: -1\n')
      assert.deepEqual(
        issues.map((i) => [i.path, i.line]),
        [
          ['log.level', 2],
          ['listen.port', 4],
        ]
      )
    })
    it('points at a password reference that sets two sources', () => {
      const text = upstreamsYaml(
        '  - name: a.io\n',
        '    url: https://a.io\n',
        '    credentials:\n',
        '      username: me\n',
        '      password:\n',
        '        file: token\n',
        '        env: TOKEN\n'
      )
      assert.equal(only(issuesOf(text), 'upstreams[0].credentials.password').line, 7)
    })
  })

  describe('when a key is unknown', () => {
    it('points at an unknown top-level key itself', () => {
      const issue = only(issuesOf('listen:\n  port: 5000\ncache:\n  size: 1GiB\n'), 'cache')
      assert.deepEqual([issue.line, issue.column], [3, 1])
    })
    it('points at an unknown nested key itself', () => {
      const text = 'state:\n  redis:\n    url: redis://r:6379\n    db: 2\n'
      const issue = only(issuesOf(text), 'state.redis.db')
      assert.deepEqual([issue.line, issue.column], [4, 5])
    })
    it('points at each of several unknown keys in an upstream', () => {
      const text = upstreamsYaml(
        '  - name: a.io\n',
        '    url: https://a.io\n',
        '    ttl: 5m\n',
        '    mirror: true\n'
      )
      assert.equal(only(issuesOf(text), 'upstreams[0].ttl').line, 4)
      assert.equal(only(issuesOf(text), 'upstreams[0].mirror').line, 5)
    })
  })

  describe('when the YAML is malformed', () => {
    it('points at the syntax error', () => {
      const issues = issuesOf('listen:\n  host: 0.0.0.0\n port: 5000\n')
      assert.equal(issues.length, 1)
      assert.deepEqual([issues[0]?.file, issues[0]?.line], [FILE, 3])
    })
    it('points at a duplicate key', () => {
      const issues = issuesOf('listen:\n  port: 5000\n  host: h\n  port: 6000\n')
      assert.deepEqual([issues[0]?.line, issues[0]?.column], [4, 3])
    })
    it('refuses several documents', () => {
      assert.equal(issuesOf('log:\n  level: info\n---\nlog:\n  level: debug\n').length, 1)
    })
    it('refuses an alias to no anchor', () => {
      assert.equal(issuesOf('log:\n  level: *nope\n').length, 1)
    })
  })

  describe('when upstreams overlap', () => {
    it('points at a duplicate name', () => {
      const text = upstreamsYaml(
        '  - name: a.io\n',
        '    url: https://a.io\n',
        '  - name: a.io\n',
        '    url: https://b.io\n'
      )
      assert.equal(only(issuesOf(text), 'upstreams[1].name').line, 4)
    })
    it('points at an alias that another upstream already has', () => {
      const text = upstreamsYaml(
        '  - name: a.io\n',
        '    url: https://a.io\n',
        '    aliases: [a]\n',
        '  - name: b.io\n',
        '    url: https://b.io\n',
        '    aliases:\n',
        '      - b\n',
        '      - a\n'
      )
      const issue = only(issuesOf(text), 'upstreams[1].aliases[1]')
      assert.deepEqual([issue.line, issue.column], [9, 9])
    })
    it('points at the second of two defaults', () => {
      const text = upstreamsYaml(
        '  - name: a.io\n',
        '    url: https://a.io\n',
        '    default: true\n',
        '  - name: b.io\n',
        '    url: https://b.io\n',
        '    default: true\n'
      )
      assert.equal(only(issuesOf(text), 'upstreams[1].default').line, 7)
    })
  })
})

describe('upstreams[].tls', () => {
  const upstream = (url: string, tls: string) => upstreamsYaml('  - name: a.io\n', `    url: ${url}\n`, '    tls:\n', tls)

  it('is absent by default', () => {
    assert.equal(parseConfig(upstreamsYaml('  - name: a.io\n', '    url: https://a.io\n')).upstreams[0]?.tls, undefined)
  })
  it('keeps a CA, and a client certificate with its key, as the paths written', () => {
    const text = upstream('https://a.io', '      ca: tls/ca.pem\n      cert: tls/client.pem\n      key: /etc/customs/client.key\n')
    assert.deepEqual(parseConfig(text).upstreams[0]?.tls, { ca: 'tls/ca.pem', cert: 'tls/client.pem', key: '/etc/customs/client.key' })
  })
  it('points at a cert without its key', () => {
    const issue = only(issuesOf(upstream('https://a.io', '      ca: ca.pem\n      cert: client.pem\n')), 'upstreams[0].tls.cert')
    assert.deepEqual([issue.line, issue.column, issue.message], [6, 13, 'needs key, the private key of the client certificate'])
  })
  it('points at a key without its cert', () => {
    const issue = only(issuesOf(upstream('https://a.io', '      key: client.key\n')), 'upstreams[0].tls.key')
    assert.deepEqual([issue.line, issue.column, issue.message], [5, 12, 'needs cert, the client certificate of this key'])
  })
  it('points at tls on an http: upstream', () => {
    const issue = only(issuesOf(upstream('http://a.io:5000', '      ca: ca.pem\n')), 'upstreams[0].tls')
    assert.deepEqual([issue.line, issue.message], [5, 'applies to https: upstreams only; url is not https:'])
  })
  it('points at an unknown key and at an empty path', () => {
    const issues = issuesOf(upstream('https://a.io', '      cacert: ca.pem\n      ca: ""\n'))
    assert.match(only(issues, 'upstreams[0].tls.cacert').message, /unknown key \(expected one of ca, cert, key\)/)
    assert.equal(only(issues, 'upstreams[0].tls.ca').line, 6)
  })
})

describe('access', () => {
  const HASH = 'a'.repeat(64)
  it('defaults to anonymous pulls and no clients', () => {
    const config = parseConfig('', { env: {} })
    assert.deepEqual(config.access, { anonymous: true, clients: [] })
  })
  it('keeps clients with their hash in lower case', () => {
    const text = `access:\n  anonymous: false\n  clients:\n    - { name: ci, sha256: "${'AB'.repeat(32)}" }\n`
    assert.deepEqual(parseConfig(text, { env: {} }).access, { anonymous: false, clients: [{ name: 'ci', sha256: 'ab'.repeat(32) }] })
  })
  it('points at anonymous: false without any client', () => {
    const issue = only(issuesOf('access:\n  anonymous: false\n'), 'access.anonymous')
    assert.equal(formatIssue(issue), 'customs.yaml:2:14 access.anonymous: false needs at least one access.clients entry')
  })
  it('points at a hash that is not a SHA-256', () => {
    const text = 'access:\n  clients:\n    - name: ci\n      sha256: s3cret\n'
    const issue = only(issuesOf(text), 'access.clients[0].sha256')
    assert.deepEqual([issue.line, issue.column], [4, 15])
    assert.match(issue.message, /hex SHA-256 of the secret/)
  })
  it('points at a name that Basic credentials cannot carry', () => {
    const text = `access:\n  clients:\n    - { name: "team:a", sha256: "${HASH}" }\n`
    assert.match(only(issuesOf(text), 'access.clients[0].name').message, /without spaces or ":"/)
  })
  it('points at the second of two clients with one name', () => {
    const text = `access:\n  clients:\n    - { name: ci, sha256: "${HASH}" }\n    - { name: ci, sha256: "${HASH}" }\n`
    const issue = only(issuesOf(text), 'access.clients[1].name')
    assert.equal(issue.line, 4)
    assert.equal(issue.message, 'ci already names access.clients[0]')
  })
  it('takes anonymous from CUSTOMS_ACCESS_ANONYMOUS', () => {
    const text = `access:\n  clients:\n    - { name: ci, sha256: "${HASH}" }\n`
    assert.equal(parseConfig(text, { env: { CUSTOMS_ACCESS_ANONYMOUS: 'false' } }).access.anonymous, false)
  })
})

describe('environment overrides', () => {
  describe('when a CUSTOMS_ variable names a key', () => {
    it('sets numbers, sizes, enums and strings, over the file', () => {
      const config = parseConfig('listen:\n  port: 5000\n', {
        env: {
          CUSTOMS_LISTEN_PORT: '6000',
          CUSTOMS_STORAGE_MAXSIZE: '10GiB',
          CUSTOMS_STATE_BACKEND: 'redis',
          CUSTOMS_STATE_REDIS_URL: 'rediss://redis.internal:6380',
          CUSTOMS_LOG_LEVEL: 'debug',
          CUSTOMS_STATE_LOCKTTL: '1m',
        },
      })
      assert.equal(config.listen.port, 6000)
      assert.equal(config.listen.host, '0.0.0.0')
      assert.equal(config.storage.maxSize, 10 * 2 ** 30)
      assert.equal(config.state.backend, 'redis')
      assert.equal(config.state.redis.url, 'rediss://redis.internal:6380')
      assert.equal(config.log.level, 'debug')
      assert.equal(config.state.lockTtl, 60_000)
    })
    it('matches the key case-insensitively', () => {
      assert.equal(parseConfig('', { env: { customs_listen_port: '7000' } }).listen.port, 7000)
    })
    it('ignores an empty value', () => {
      assert.equal(parseConfig('', { env: { CUSTOMS_LISTEN_PORT: '' } }).listen.port, 5000)
    })
  })

  describe('when a value is invalid', () => {
    it('names the variable of a value that is not a number', () => {
      const issues = issuesOf('', { CUSTOMS_LISTEN_PORT: 'http' })
      assert.deepEqual(
        issues.map((i) => [i.env, i.path]),
        [['CUSTOMS_LISTEN_PORT', 'listen.port']]
      )
      assert.equal(formatIssue(issues[0] as ConfigIssue), 'CUSTOMS_LISTEN_PORT: expected number')
    })
    it('names the variable when the schema refuses its value', () => {
      const issues = issuesOf('log:\n  level: info\n', {
        CUSTOMS_LOG_LEVEL: 'loud',
        CUSTOMS_LISTEN_PORT: '70000',
      })
      assert.deepEqual(
        issues.map((i) => i.env),
        ['CUSTOMS_LISTEN_PORT', 'CUSTOMS_LOG_LEVEL']
      )
      assert.ok(issues.every((i) => i.line === undefined))
    })
    it('reports bad variables and file problems together', () => {
      const issues = issuesOf('listen:\n  host: ""\n', { CUSTOMS_LISTEN_PORT: 'x' })
      assert.deepEqual(
        issues.map((i) => i.env ?? i.path),
        ['listen.host', 'CUSTOMS_LISTEN_PORT']
      )
    })
  })

  describe('when a CUSTOMS_ variable is not a key', () => {
    it('is an error naming the variable', () => {
      const issues = issuesOf('', { CUSTOMS_STORAGE_MAX_SIZE: '10GiB', CUSTOMS_LISTEN: 'x' })
      assert.deepEqual(issues.map((i) => i.env), ['CUSTOMS_LISTEN', 'CUSTOMS_STORAGE_MAX_SIZE'])
    })
    it('refuses upstreams, which are set in the file only', () => {
      const issues = issuesOf('', { CUSTOMS_UPSTREAMS_0_URL: 'https://x' })
      assert.equal(issues[0]?.env, 'CUSTOMS_UPSTREAMS_0_URL')
    })
    it('ignores the variables that are not configuration', () => {
      const config = parseConfig('', {
        env: { CUSTOMS_CONFIG: '/etc/customs.yaml', CUSTOMS_TEST_CONCURRENCY: '4', HOME: '/root' },
      })
      assert.deepEqual(config, parseConfig(''))
    })
    it('ignores the variables Kubernetes injects for a Service named customs', () => {
      const env = {
        CUSTOMS_SERVICE_HOST: '10.0.0.7',
        CUSTOMS_SERVICE_PORT: '5000',
        CUSTOMS_SERVICE_PORT_HTTP: '5000',
        CUSTOMS_PORT: 'tcp://10.0.0.7:5000',
        CUSTOMS_PORT_5000_TCP: 'tcp://10.0.0.7:5000',
        CUSTOMS_PORT_5000_TCP_PROTO: 'tcp',
        CUSTOMS_PORT_5000_TCP_PORT: '5000',
        CUSTOMS_PORT_5000_TCP_ADDR: '10.0.0.7',
        CUSTOMS_REDIS_PORT: 'tcp://10.0.0.8:6379',
      }
      assert.deepEqual(parseConfig('', { env }), parseConfig(''))
    })
    it('still refuses a mistyped key that ends in PORT', () => {
      const issues = issuesOf('', { CUSTOMS_STATE_REDIS_PORT: '6379' })
      assert.equal(issues[0]?.env, 'CUSTOMS_STATE_REDIS_PORT')
    })
  })
})

describe('loadConfig', () => {
  let dir: string
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'customs-config-'))
  })
  after(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  async function write(name: string, text: string): Promise<string> {
    const path = join(dir, name)
    await writeFile(path, text)
    return path
  }

  function withPassword(password: string): string {
    return upstreamsYaml(
      '  - name: a.io\n',
      '    url: https://a.io\n',
      '    credentials:\n',
      '      username: me\n',
      `      password: ${password}\n`
    )
  }

  describe('when the file is missing', () => {
    it('is a ConfigError naming the file', async () => {
      const missing = join(dir, 'nope.yaml')
      const issues = await loadIssues(missing)
      assert.deepEqual(
        issues.map((i) => i.file),
        [missing]
      )
    })
  })

  describe('when there is no file', () => {
    it('returns the defaults with the environment applied', async () => {
      const config = await loadConfig({ env: { CUSTOMS_LISTEN_PORT: '6000' } })
      assert.equal(config.listen.port, 6000)
      assert.equal(config.upstreams.length, 5)
    })
  })

  describe('when a password is given', () => {
    it('keeps a plain string', async () => {
      const config = await loadConfig({ file: await write('plain.yaml', withPassword(SECRET)) })
      assert.equal(config.upstreams[0]?.credentials?.password, SECRET)
    })
    it('resolves { value }', async () => {
      const file = await write('value.yaml', withPassword(`{ value: ${SECRET} }`))
      const config = await loadConfig({ file })
      assert.equal(config.upstreams[0]?.credentials?.password, SECRET)
    })
    it('resolves { file } next to the configuration, without its trailing newline', async () => {
      await write('token', `${SECRET}\n`)
      const file = await write('file.yaml', withPassword('{ file: token }'))
      const config = await loadConfig({ file })
      assert.deepEqual(config.upstreams[0]?.credentials, { username: 'me', password: SECRET })
    })
    it('resolves { env } from the environment given', async () => {
      const file = await write('env.yaml', withPassword('{ env: A_IO_TOKEN }'))
      const config = await loadConfig({ file, env: { A_IO_TOKEN: SECRET } })
      assert.equal(config.upstreams[0]?.credentials?.password, SECRET)
    })
    it('leaves an upstream without credentials without them', async () => {
      const config = await loadConfig({ file: await write('anon.yaml', '') })
      assert.ok(config.upstreams.every((u) => !('credentials' in u)))
    })
  })

  describe('when a secret cannot be resolved', () => {
    it('points at the password whose file is missing', async () => {
      const file = await write('nofile.yaml', withPassword('{ file: missing-token }'))
      const issue = only(await loadIssues(file), 'upstreams[0].credentials.password')
      assert.deepEqual([issue.file, issue.line], [file, 6])
    })
    it('points at the password whose variable is not set', async () => {
      const file = await write('noenv.yaml', withPassword('{ env: A_IO_TOKEN }'))
      const issues = await loadIssues(file, { A_IO_TOKEN: '' })
      const issue = only(issues, 'upstreams[0].credentials.password')
      assert.equal(issue.line, 6)
    })
    it('refuses an empty secret file', async () => {
      await write('empty-token', '\n')
      const file = await write('emptyfile.yaml', withPassword('{ file: empty-token }'))
      only(await loadIssues(file), 'upstreams[0].credentials.password')
    })
    it('refuses a secret file over 64 KiB without reading it whole, and a config file over 4 MiB', async () => {
      await write('huge-token', 'x'.repeat(MAX_SECRET_FILE_BYTES + 1))
      const file = await write('hugefile.yaml', withPassword('{ file: huge-token }'))
      const issue = only(await loadIssues(file), 'upstreams[0].credentials.password')
      assert.match(issue.message, /cannot read secret file .*huge-token \(over the 64\.0 KiB limit\)/)
      const big = await write('big.yaml', `# ${'x'.repeat(MAX_CONFIG_FILE_BYTES)}\n`)
      const [refused] = await loadIssues(big)
      assert.equal(refused?.message, 'cannot read the file (over the 4.0 MiB limit)')
      // /dev/zero claims no size and never ends: it is refused at the bound too.
      const [zero] = await loadIssues('/dev/zero')
      assert.equal(zero?.message, 'cannot read the file (over the 4.0 MiB limit)')
    })
  })

  describe('when the configuration holds a secret and is refused', () => {
    const cases: [string, string, Env][] = [
      ['the reference sets two sources', withPassword(`{ value: ${SECRET}, env: X }`), {}],
      ['the reference has an unknown key', withPassword(`{ value: ${SECRET}, vault: x }`), {}],
      ['another key is wrong', `${withPassword(SECRET)}    timeout: soon\n`, {}],
      ['the password line is malformed YAML', withPassword(`${SECRET} x: y`), {}],
      ['the password is not a string', withPassword(`[${SECRET}]`), {}],
      ['the username is missing', withPassword(SECRET).replace('      username: me\n', ''), {}],
      ['a variable is refused', withPassword(SECRET), { CUSTOMS_LISTEN_PORT: SECRET }],
      ['a variable is unknown', withPassword(SECRET), { CUSTOMS_PASSWORD: SECRET }],
      [
        'a secret file is missing',
        withPassword('{ file: nope }'),
        { CUSTOMS_STATE_REDIS_URL: `redis://:${SECRET}@r` },
      ],
    ]
    for (const [when, text, env] of cases) {
      it(`never prints the secret when ${when}`, async () => {
        const file = await write('leak.yaml', text)
        let error: unknown
        await loadConfig({ file, env }).catch((err: unknown) => {
          error = err
        })
        assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`)
        assert.ok(!error.message.includes(SECRET), error.message)
        assert.ok(!JSON.stringify(error.issues).includes(SECRET))
      })
    }
  })

  describe('when the configuration is valid', () => {
    it('returns it deep-frozen', async () => {
      const file = await write('frozen.yaml', withPassword(SECRET))
      const config = await loadConfig({ file })
      assert.ok(Object.isFrozen(config))
      assert.ok(Object.isFrozen(config.listen))
      assert.ok(Object.isFrozen(config.upstreams))
      assert.ok(Object.isFrozen(config.upstreams[0]?.credentials))
      assert.ok(Object.isFrozen(config.upstreams[0]?.aliases))
      assert.throws(() => {
        ;(config.listen as { port: number }).port = 1
      }, TypeError)
    })
  })
})

describe('redactConfig', () => {
  it('hides passwords, also in the Redis URL, and leaves the original alone', async () => {
    const config = await loadConfig({
      env: { CUSTOMS_STATE_REDIS_URL: `rediss://default:${SECRET}@redis:6380/0` },
    })
    const withCredentials = {
      ...config,
      upstreams: config.upstreams.map((u) => ({
        ...u,
        credentials: { username: 'me', password: SECRET },
      })),
    }
    const redacted = redactConfig(withCredentials)
    assert.ok(!JSON.stringify(redacted).includes(SECRET))
    assert.equal(redacted.state.redis.url, 'rediss://default:***@redis:6380/0')
    assert.ok(redacted.upstreams.every((u) => u.credentials?.password === '***'))
    assert.equal(redacted.upstreams[0]?.credentials?.username, 'me')
    assert.equal(withCredentials.upstreams[0]?.credentials.password, SECRET)
    assert.equal(config.state.redis.url, `rediss://default:${SECRET}@redis:6380/0`)
  })
  it('leaves a Redis URL without a password as it is', async () => {
    const config = await loadConfig({ env: { CUSTOMS_STATE_REDIS_URL: 'redis://user@r:6379' } })
    assert.equal(redactConfig(config).state.redis.url, 'redis://user@r:6379')
  })
})

describe('configCheck', () => {
  let dir: string
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'customs-check-'))
  })
  after(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  function capture(): { io: CheckIo; out: () => string; err: () => string } {
    let out = ''
    let err = ''
    return {
      io: {
        stdout: { write: (text: string) => (out += text) },
        stderr: { write: (text: string) => (err += text) },
      },
      out: () => out,
      err: () => err,
    }
  }

  describe('when the file is valid', () => {
    it('returns 0 and prints a summary and the redacted effective configuration', async () => {
      const file = join(dir, 'ok.yaml')
      const text = upstreamsYaml(
        '  - name: a.io\n',
        '    url: https://a.io\n',
        '    default: true\n',
        '    credentials: { username: me, password: { env: TOKEN } }\n'
      )
      await writeFile(file, text)
      const { io, out, err } = capture()
      const env = { TOKEN: SECRET, CUSTOMS_LISTEN_PORT: '6000' }
      assert.equal(await configCheck(file, io, { env }), 0)
      assert.equal(err(), '')
      const [summary, ...rest] = out().split('\n')
      assert.match(summary ?? '', /valid/)
      assert.ok(!out().includes(SECRET))
      // The printed configuration reads back as the redacted one (durations and sizes as numbers).
      const printed: unknown = parseYaml(rest.join('\n'))
      const loaded = await loadConfig({ file, env })
      assert.deepEqual(printed, redactConfig(loaded))
      assert.deepEqual(parseConfig(rest.join('\n')), redactConfig(loaded))
    })
    it('checks the example configuration', async () => {
      const { io } = capture()
      assert.equal(await configCheck('deploy/config.example.yaml', io), 0)
    })
  })

  describe('when the file is invalid', () => {
    it('returns 1 with the positioned problems on stderr', async () => {
      const file = join(dir, 'bad.yaml')
      await writeFile(file, 'listen:\n  port: many\n')
      const { io, out, err } = capture()
      assert.equal(await configCheck(file, io), 1)
      assert.equal(out(), '')
      assert.ok(err().includes(`${file}:2:9 listen.port:`), err())
    })
    it('returns 1 when the file is missing', async () => {
      const { io, err } = capture()
      assert.equal(await configCheck(join(dir, 'missing.yaml'), io), 1)
      assert.ok(err().includes('missing.yaml'))
    })
  })
})

describe('when a timer-backed duration is longer than a Node timer can hold', () => {
  for (const [key, text] of [
    ['storage.fillTimeout', 'storage: { fillTimeout: 25d }\n'],
    ['state.lockTtl', 'state: { lockTtl: 4w }\n'],
    ['upstreams[0].timeout', 'upstreams: [{ name: a.io, url: "https://a.io", timeout: 30d }]\n'],
  ] as const) {
    it(`reports ${key}`, () => {
      assert.ok(issuesOf(text).some((i) => i.path === key), JSON.stringify(issuesOf(text)))
    })
  }

  it('accepts a long tag TTL, which is compared, not timed', () => {
    const config = parseConfig('upstreams: [{ name: a.io, url: "https://a.io", tagTtl: 60d }]\n')
    assert.equal(config.upstreams[0]?.tagTtl, 60 * 86_400_000)
  })
})
