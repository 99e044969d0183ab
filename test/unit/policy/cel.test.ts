// CEL rules: compiled once, evaluated over the facts, runtime failures catchable, and compile
// errors refused at load with the position of the `cel` key in the document.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import {
  CelCompileError,
  CelEvaluationError,
  compileCel,
  MAX_CEL_LENGTH,
} from '../../../src/policy/cel.js'
import { issuesOf, load, only, policyDoc } from './helpers.js'

const FACTS = {
  image: {
    upstream: 'docker.io',
    repository: 'library/nginx',
    tag: '1.27',
    digest: `sha256:${'a'.repeat(64)}`,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    created: '2024-05-01T12:00:00Z',
    labels: {
      team: 'web',
      'org.opencontainers.image.source': 'https://github.com/nginx/docker-nginx',
    },
    platforms: ['linux/amd64', 'linux/arm64'],
    layers: 7,
    size: 70_000_000,
    user: '101',
  },
  signatures: [
    {
      verified: false,
      kind: 'keyless',
      subject: 'mallory@example.com',
      issuer: 'https://accounts.google.com',
    },
    { verified: true, kind: 'keyed', key: 'release' },
  ],
  attestations: [{ verified: true, predicateType: 'https://slsa.dev/provenance/v1' }],
}

function evaluate(source: string, facts: Record<string, unknown> = FACTS): unknown {
  return compileCel(source).evaluate(facts)
}

function compileError(source: string): CelCompileError {
  try {
    compileCel(source)
  } catch (err) {
    assert.ok(err instanceof CelCompileError, `expected a CelCompileError, got ${String(err)}`)
    return err
  }
  assert.fail(`expected ${JSON.stringify(source.slice(0, 40))} not to compile`)
}

describe('compileCel', () => {
  describe('evaluates over the facts', () => {
    const cases: Array<[string, unknown]> = [
      ["image.labels['team'] != ''", true],
      ["image.upstream == 'docker.io' && image.repository.startsWith('library/')", true],
      ['image.layers <= 10 && image.size < 100 * 1024 * 1024', true],
      ['image.layers + 1 == 8', true],
      ["'linux/arm64' in image.platforms", true],
      ['size(image.platforms) == 2', true],
      ["image.user != '' && image.user != '0' && image.user != 'root'", true],
      ["image.created > timestamp('2024-01-01T00:00:00Z')", true],
      ['image.created.getFullYear() == 2024', true],
      ['signatures.exists(s, s.verified)', true],
      ['signatures.all(s, s.verified)', false],
      ["signatures.exists(s, s.verified && s.kind == 'keyless')", false],
      [
        "attestations.exists(a, a.verified && a.predicateType.startsWith('https://slsa.dev/provenance/'))",
        true,
      ],
      [
        "image.labels['org.opencontainers.image.source'].matches('^https://github\\\\.com/nginx/')",
        true,
      ],
      ["image.repository.split('/')[0] == 'library'", true],
      ['has(image.tag) && !has(image.missing)', true],
      ["image.mediaType.endsWith('+json') ? 'json' : 'other'", 'json'],
    ]
    for (const [source, expected] of cases) {
      it(source, () => {
        assert.equal(evaluate(source), expected)
      })
    }
  })

  it('returns plain data that JSON can print, whatever the expression yields', () => {
    assert.equal(evaluate('image.layers'), 7)
    assert.deepEqual(evaluate('[image.layers, image.created]'), [7, '2024-05-01T12:00:00Z'])
    assert.deepEqual(evaluate("image.labels.filter(k, k == 'team')"), ['team'])
    assert.deepEqual(evaluate("{'a': 1u, 'b': duration('90s')}"), { a: 1, b: '90s' })
    assert.equal(evaluate('9223372036854775807'), '9223372036854775807')
  })

  it('compiles once and evaluates many times', () => {
    const program = compileCel('image.layers > 5')
    assert.equal(program.source, 'image.layers > 5')
    assert.equal(program.evaluate({ image: { layers: 6 } }), true)
    assert.equal(program.evaluate({ image: { layers: 5 } }), false)
  })

  it('takes a Date as a timestamp, and leaves a created that is not RFC 3339 a string', () => {
    const after2020 = "image.created > timestamp('2020-01-01T00:00:00Z')"
    assert.equal(
      evaluate(after2020, { image: { created: new Date('2024-01-01T00:00:00Z') } }),
      true
    )
    assert.equal(
      evaluate('image.created == "yesterday"', { image: { created: 'yesterday' } }),
      true
    )
    assert.throws(
      () => evaluate(after2020, { image: { created: 'yesterday' } }),
      CelEvaluationError
    )
  })

  it('treats label names as map keys, never as protobuf message fields', () => {
    const facts = { image: { labels: { $typeName: 'google.protobuf.Timestamp', seconds: '1' } } }
    assert.equal(evaluate("image.labels['$typeName'] == 'google.protobuf.Timestamp'", facts), true)
  })

  describe('throws CelEvaluationError when evaluation fails', () => {
    for (const [source, facts] of [
      ["image.labels['absent'] == 'x'", FACTS],
      ['image.layers / 0 == 1', FACTS],
      ['image.layers > 1', {}],
      ["image.repository + 1 == 'x'", FACTS],
    ] as const) {
      it(source, () => {
        assert.throws(() => evaluate(source, facts), CelEvaluationError)
      })
    }
  })

  describe('refuses at compile time', () => {
    it('a syntax error, with its position in the expression', () => {
      const err = compileError("image.labels['team'] !=")
      assert.deepEqual([err.line, err.column], [1, 22])
      const multi = compileError('image.layers > 1 &&\n  image.labels[')
      assert.equal(multi.line, 2)
    })

    it('an unknown variable, at the variable', () => {
      const err = compileError('signatures.exists(s, s.verified) && imgae.layers > 1')
      assert.deepEqual([err.line, err.column], [1, 37])
      // A comprehension's variable is known inside it only.
      compileError('signatures.exists(s, s.verified) && s.verified')
      compileCel('signatures.map(s, s.subject).exists(x, x == "a") && type(image) == map')
    })

    it('an unknown function', () => {
      assert.equal(compileError('image.created < now()').column, 17)
      compileError("image.repository.beginsWith('library/')")
    })

    it('brackets nested too deeply, and trees too deep, before they exhaust the stack', () => {
      compileError(`${'('.repeat(2000)}1${')'.repeat(2000)}`)
      compileError(`${'['.repeat(100)}${']'.repeat(100)}`)
      compileError(Array.from({ length: 1000 }, () => '1').join(' + '))
      compileCel(`${'('.repeat(20)}1${')'.repeat(20)} == 1`)
      compileCel("'(((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((' != ''")
    })

    it('an expression longer than the limit', () => {
      compileError(`image.user == '${'x'.repeat(MAX_CEL_LENGTH)}'`)
    })
  })
})

describe('cel rules in policies', () => {
  it('compile at load and evaluate through the compiled set', () => {
    const set = load(policyDoc('p', "match: [{}]\nrules:\n  cel: \"image.labels['team'] != ''\""))
    const cel = set.policies[0]?.rules.cel
    assert.equal(cel?.evaluate({ image: { labels: { team: 'web' } } }), true)
    assert.throws(() => cel?.evaluate({ image: { labels: {} } }), CelEvaluationError)
  })

  it('report a syntax error at the cel key of the document', () => {
    const text = policyDoc(
      'p',
      'match: [{}]\nrules:\n  maxLayers: 10\n  cel: "image.labels[\'team\'] !="'
    )
    const issue = only(issuesOf(text), 'INVALID_CEL', 'spec.rules.cel')
    assert.deepEqual([issue.file, issue.line, issue.column], ['policy.yaml', 8, 10])
  })

  it('report an error in a block scalar at the line of its key', () => {
    const text = policyDoc(
      'p',
      'match: [{}]\nrules:\n  cel: |\n    image.layers > 1 &&\n      imgae.user != ""'
    )
    const issue = only(issuesOf(text), 'INVALID_CEL', 'spec.rules.cel')
    assert.equal(issue.line, 7)
  })

  it('report an unknown variable as a compile error', () => {
    only(
      issuesOf(policyDoc('p', 'match: [{}]\nrules: { cel: "request.user == 1" }')),
      'INVALID_CEL',
      'spec.rules.cel'
    )
  })
})
