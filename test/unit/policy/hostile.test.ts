// Hostile input, generated: whatever the text or bytes, loading either returns a set or throws a
// PolicyError whose every issue is positioned in the file; nothing else is ever thrown.

import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { parsePolicyDocuments, PolicyError } from '../../../src/policy/load.js'
import type { PolicyFile } from '../../../src/policy/load.js'
import { OPTIONS } from './helpers.js'

const VALID = resolve(dirname(fileURLToPath(import.meta.url)), '../../fixtures/policies/valid')
const SEEDS = ['base.yaml', 'exceptions.yaml', 'teams/platform.yml'].map((f) =>
  readFileSync(join(VALID, f), 'utf8')
)

/** Loads, and checks that the only failure is a PolicyError with positioned issues. */
function survives(files: PolicyFile[]): void {
  try {
    parsePolicyDocuments(files, OPTIONS)
  } catch (err) {
    if (!(err instanceof PolicyError)) throw err
    const names = new Set(files.map((f) => f.path))
    for (const issue of err.issues) {
      assert.ok(names.has(issue.file), `issue in an unknown file: ${JSON.stringify(issue)}`)
      assert.ok(issue.line >= 1 && issue.column >= 1, `unpositioned: ${JSON.stringify(issue)}`)
    }
  }
}

/** Pieces of YAML and of policies, so that generated text gets past the parser often. */
const FRAGMENTS = [
  'apiVersion: customs.dev/v1\n',
  'kind: ImagePolicy\n',
  'kind: PolicyException\n',
  'kind: PolicySettings\n',
  'metadata: { name: p }\n',
  'spec:\n',
  '  match:\n',
  '    - repository: "**"\n',
  '  - { upstream: docker.io }\n',
  '  authorities:\n',
  '    - { name: a, static: pass }\n',
  '    - { name: k, key: { name: release } }\n',
  '  rules:\n',
  '    cel: "',
  'image.labels[',
  '    maxAge: 7d\n',
  '    tags: { allow: ["v*"] }\n',
  '  waives: [{ policy: p }]\n',
  '  expires: 2030-01-01\n',
  '---\n',
  '...\n',
  '&a ',
  '*a ',
  '<<: *a\n',
  '!!binary ',
  '!!str ',
  '!tag ',
  '? ',
  ': ',
  '- ',
  '  ',
  '\t',
  '\n',
  '"',
  "'",
  '[',
  ']',
  '{',
  '}',
  ',',
  '#',
  '|\n',
  '>-\n',
  '%YAML 1.2\n',
  '__proto__: ',
  'constructor: ',
  '~',
  'null',
  '1e999',
  '0x1F',
  '\u0000',
  '\uFEFF',
  '\uD800',
  'é',
  '😀',
]

const yamlish = fc
  .array(fc.oneof(fc.constantFrom(...FRAGMENTS), fc.string({ maxLength: 8 })), { maxLength: 60 })
  .map((parts) => parts.join(''))

/** A valid file with a slice replaced by generated text. */
const mutated = fc
  .tuple(fc.constantFrom(...SEEDS), fc.nat(), fc.nat(40), yamlish)
  .map(([seed, at, length, insert]) => {
    const start = at % (seed.length + 1)
    return seed.slice(0, start) + insert + seed.slice(start + length)
  })

describe('hostile policy input', () => {
  it('arbitrary strings never throw anything but a positioned PolicyError', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 300 }), (text) => {
        survives([{ path: 'x.yaml', text }])
      }),
      { numRuns: 300 }
    )
  })

  it('YAML-ish text never throws anything but a positioned PolicyError', () => {
    fc.assert(
      fc.property(yamlish, (text) => {
        survives([{ path: 'x.yaml', text }])
      }),
      { numRuns: 500 }
    )
  })

  it('mutated valid policies never throw anything but a positioned PolicyError', () => {
    fc.assert(
      fc.property(fc.array(mutated, { minLength: 1, maxLength: 3 }), (texts) => {
        survives(texts.map((text, i) => ({ path: `p${i}.yaml`, text })))
      }),
      { numRuns: 500 }
    )
  })

  it('arbitrary bytes never throw anything but a positioned PolicyError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        survives([{ path: 'x.yaml', text: bytes }])
      }),
      { numRuns: 300 }
    )
  })

  it('deep nesting of every kind is refused, and loading still works afterwards', () => {
    for (const text of [
      '['.repeat(50_000),
      '{a: '.repeat(20_000),
      '- '.repeat(5_000),
      Array.from({ length: 2_000 }, (_, i) => `${' '.repeat(i)}a:`).join('\n'),
      `rules: { cel: "${'('.repeat(3000)}" }`,
    ]) {
      survives([{ path: 'deep.yaml', text }])
    }
    survives([{ path: 'after.yaml', text: '? [a]\n: b\n? {c: d}\n: e\n' }])
    assert.equal(
      parsePolicyDocuments([{ path: 'ok.yaml', text: SEEDS[0] as string }], OPTIONS).policies
        .length,
      1
    )
  })
})
