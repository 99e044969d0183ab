// Every file under deploy/ parses in its own format (YAML streams, JSON, the TOML subset), and the
// paths docs/operating.md names exist. (config.example.yaml is checked against the schema in
// test/unit/config/load.test.ts.)

import assert from 'node:assert/strict'
import { basename } from 'node:path'
import { describe, it } from 'node:test'
import { DEPLOY, exists, read, rel, repoPath, walk, yamlDocuments } from './files.js'
import { parseToml } from './toml.js'

const files = walk(DEPLOY)
const byFormat = (pattern: RegExp): string[] => files.filter((f) => pattern.test(basename(f)))

describe('deploy/ files', () => {
  it('holds YAML, TOML and JSON files to check', () => {
    assert.ok(byFormat(/\.ya?ml$/).length >= 10)
    assert.ok(byFormat(/\.(toml|conf)$/).length >= 6)
    assert.ok(byFormat(/\.json$/).length >= 1)
  })

  describe('when a file is YAML', () => {
    for (const file of byFormat(/\.ya?ml$/)) {
      it(`parses ${rel(file)} with no error, warning or duplicate key`, () => {
        const docs = yamlDocuments(file)
        assert.ok(docs.length >= 1)
      })
    }
  })

  describe('when a file is TOML (hosts.toml, registries.conf)', () => {
    for (const file of byFormat(/\.(toml|conf)$/)) {
      it(`parses ${rel(file)} within the checked subset`, () => {
        parseToml(read(file))
      })
    }
  })

  describe('when a file is JSON', () => {
    for (const file of byFormat(/\.json$/)) {
      it(`parses ${rel(file)}`, () => {
        JSON.parse(read(file))
      })
    }
  })
})

describe('docs/operating.md', () => {
  const doc = read(repoPath('docs/operating.md'))

  it('names only deploy/ paths that exist', () => {
    // `kubectl exec deploy/customs` names a Deployment, not a path.
    const named = [...doc.matchAll(/(?<!exec )\bdeploy\/[A-Za-z0-9._/-]*[A-Za-z0-9_]/g)].map(
      (m) => m[0]
    )
    assert.ok(named.length > 5)
    const missing = [...new Set(named)].filter((p) => !exists(repoPath(p)))
    assert.deepEqual(missing, [])
  })

  it('links only to files that exist', () => {
    const links = [...doc.matchAll(/\]\(((?:\.\.?\/)[^)#\s]+)(?:#[^)]*)?\)/g)].map(
      (m) => m[1] as string
    )
    const missing = links.filter((l) => !exists(repoPath('docs', l)))
    assert.deepEqual(missing, [])
  })
})
