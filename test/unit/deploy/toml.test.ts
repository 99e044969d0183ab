// The TOML subset checker the deploy/ tests rely on: what it accepts, and that it refuses what
// it does not understand instead of guessing.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { parseToml, TomlError } from './toml.js'

describe('parseToml', () => {
  describe('when given a containerd hosts.toml', () => {
    it('returns the server, the top-level keys and the quoted host table', () => {
      const parsed = parseToml(
        [
          '# comment',
          'server = "https://customs.example"  # trailing comment',
          'ca = "/etc/ca.pem"',
          '',
          '[host."https://customs.example"]',
          '  capabilities = ["pull", "resolve"]',
          '  skip_verify = false',
          '  client = [["/c.pem", "/c.key"]]',
        ].join('\n')
      )
      assert.deepEqual(parsed, {
        server: 'https://customs.example',
        ca: '/etc/ca.pem',
        host: {
          'https://customs.example': {
            capabilities: ['pull', 'resolve'],
            skip_verify: false,
            client: [['/c.pem', '/c.key']],
          },
        },
      })
    })
  })

  describe('when given arrays of tables', () => {
    it('returns one table per [[header]], nested ones in the last element', () => {
      const parsed = parseToml(
        [
          '[[registry]]',
          'prefix = "docker.io"',
          '[[registry.mirror]]',
          'location = "m/docker.io"',
          '[[registry]]',
          'prefix = "ghcr.io"',
        ].join('\n')
      )
      assert.deepEqual(parsed, {
        registry: [
          { prefix: 'docker.io', mirror: [{ location: 'm/docker.io' }] },
          { prefix: 'ghcr.io' },
        ],
      })
    })
  })

  describe('when given strings with escapes and hashes', () => {
    it('returns the string as written', () => {
      assert.deepEqual(parseToml('a = "x # \\"y\\" \\\\ z"'), { a: 'x # "y" \\ z' })
    })
  })

  describe('when given input outside the subset or invalid', () => {
    const cases: Array<[string, string]> = [
      ['a duplicate key', 'a = "1"\na = "2"'],
      ['a table defined twice', '[t]\n[t]'],
      ['a missing value', 'a ='],
      ['an unquoted string', 'a = b'],
      ['a single-quoted string', "a = 'b'"],
      ['a multi-line array', 'a = [\n"b"]'],
      ['a dotted key', 'a.b = "c"'],
      ['an inline table', 'a = { b = "c" }'],
      ['an unterminated string', 'a = "b'],
      ['an unknown escape', 'a = "\\q"'],
      ['text after a value', 'a = "b" c'],
      ['an unclosed header', '[host."x"'],
      ['a key redefined as a table', 'a = "1"\n[a]'],
      ['a float', 'a = 1.5'],
    ]
    for (const [what, text] of cases) {
      it(`throws a TomlError for ${what}`, () => {
        assert.throws(() => parseToml(text), TomlError)
      })
    }

    it('names the line of the problem', () => {
      assert.throws(
        () => parseToml('a = "1"\n\nb = nope'),
        (err: unknown) => err instanceof TomlError && err.line === 3
      )
    })
  })
})
