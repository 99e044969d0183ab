// Loading policy sets: the fixtures, every kind of bad input as a positioned issue, compiled
// globs and values, exceptions' expiry, warnings, and the set's revision.

import assert from 'node:assert/strict'
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises'
import { execFileSync } from 'node:child_process'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'
import {
  loadPolicies,
  MAX_POLICY_FILE_BYTES,
  parsePolicyDocuments,
  PolicyError,
} from '../../../src/policy/load.js'
import type { PolicyIssue } from '../../../src/policy/load.js'
import { compileGlobs, parseExpiry } from '../../../src/policy/schema.js'
import type { CompiledPolicy, PolicySet } from '../../../src/policy/types.js'
import {
  assertPositioned,
  exceptionDoc,
  issuesOf,
  KEYS,
  load,
  minimalPolicy,
  only,
  OPTIONS,
  policyDoc,
  yaml,
} from './helpers.js'

const FIXTURES = resolve(dirname(fileURLToPath(import.meta.url)), '../../fixtures/policies')
const DIGEST_1 = `sha256:${'1'.repeat(64)}`

async function loadIssues(dir: string): Promise<readonly PolicyIssue[]> {
  try {
    await loadPolicies(dir, OPTIONS)
  } catch (err) {
    assert.ok(err instanceof PolicyError, `expected a PolicyError, got ${String(err)}`)
    assertPositioned(err.issues)
    return err.issues
  }
  assert.fail('expected a PolicyError')
}

function pick(issue: PolicyIssue): [number, number] {
  return [issue.line, issue.column]
}

function policyNamed(set: PolicySet, name: string): CompiledPolicy {
  const policy = set.policies.find((p) => p.name === name)
  assert.ok(policy, `policy ${name}`)
  return policy
}

describe('loadPolicies', () => {
  describe('with the valid fixture set', () => {
    let set: PolicySet
    before(async () => {
      set = await loadPolicies(join(FIXTURES, 'valid'), OPTIONS)
    })

    it('loads every policy and exception in path order, skipping dot files and other files', () => {
      assert.deepEqual(
        set.policies.map((p) => p.name),
        ['baseline', 'platform-provenance']
      )
      assert.deepEqual(
        set.exceptions.map((e) => e.name),
        ['legacy-app', 'platform-debug']
      )
      assert.equal(set.unmatched, 'audit')
      assert.match(set.revision, /^[0-9a-f]{16}$/)
      assert.equal(set.warnings, undefined)
    })

    it('records where each was defined', () => {
      assert.equal(policyNamed(set, 'baseline').source, join(FIXTURES, 'valid', 'base.yaml:8'))
      assert.equal(
        policyNamed(set, 'platform-provenance').source,
        join(FIXTURES, 'valid', 'teams/platform.yml:2')
      )
    })

    it('compiles the baseline policy', () => {
      const p = policyNamed(set, 'baseline')
      assert.equal(p.mode, 'enforce')
      assert.equal(p.onVerifierUnavailable, 'deny')
      assert.equal(p.match.length, 2)
      const [library, acme] = p.match
      assert.equal(library?.upstream, 'docker.io')
      assert.equal(library?.repository('library/nginx'), true)
      assert.equal(library?.repository('library/a/b'), true)
      assert.equal(library?.repository('acme/app'), false)
      assert.equal(library?.tags, undefined)
      assert.equal(acme?.repository('acme/app'), true)
      assert.equal(acme?.repository('acme/app/sub'), false)
      assert.equal(acme?.tags?.('v1.2.3'), true)
      assert.equal(acme?.tags?.('1.25'), true)
      assert.equal(acme?.tags?.('latest'), false)

      assert.deepEqual(p.authorities, [
        {
          kind: 'keyless',
          name: 'ci',
          issuer: 'https://token.actions.githubusercontent.com',
          subjectRegExp:
            'https://github\\.com/acme/.+/\\.github/workflows/release\\.yml@refs/tags/v.*',
          extensions: { sourceRepositoryUri: 'https://github.com/acme/app', buildTrigger: 'push' },
        },
        { kind: 'key', name: 'release-key', key: 'release' },
      ])
      assert.equal(p.authoritiesRequired, 1)
      assert.deepEqual(p.attestations, [])

      const r = p.rules
      assert.equal(r.tags?.allow?.('v2'), true)
      assert.equal(r.tags?.allow?.('stable'), true)
      assert.equal(r.tags?.allow?.('edge'), false)
      assert.equal(r.tags?.deny?.('latest'), true)
      assert.equal(r.tags?.deny?.('v1'), false)
      assert.deepEqual([...(r.digests?.deny ?? [])], [`sha256:${'0'.repeat(64)}`])
      assert.equal(r.digests?.allow, undefined)
      assert.equal(r.maxAgeMs, 365 * 86_400_000)
      assert.equal(r.labels?.length, 1)
      assert.equal(r.labels?.[0]?.name, 'org.opencontainers.image.source')
      assert.equal(r.labels?.[0]?.pattern, '*')
      assert.equal(r.labels?.[0]?.value('https://github.com/acme/app'), true)
      assert.equal(r.labels?.[0]?.value(''), true, '* means present with any value')
      assert.deepEqual([...(r.platforms ?? [])], ['linux/amd64', 'linux/arm64'])
      assert.equal(r.maxLayers, 100)
      assert.equal(r.maxSizeBytes, 4 * 2 ** 30)
      assert.equal(r.nonRoot, true)
      assert.equal(r.cel?.source, "image.labels['team'] != ''")
      assert.equal(r.cel?.evaluate({ image: { labels: { team: 'core' } } }), true)
      assert.equal(r.cel?.evaluate({ image: { labels: { team: '' } } }), false)
    })

    it('compiles attestations, static authorities and the audit mode', () => {
      const p = policyNamed(set, 'platform-provenance')
      assert.equal(p.mode, 'audit')
      assert.equal(p.onVerifierUnavailable, 'allow')
      assert.deepEqual(p.authorities, [{ kind: 'static', name: 'allow-all', action: 'pass' }])
      assert.deepEqual(p.attestations, [
        {
          name: 'provenance',
          predicateType: 'https://slsa.dev/provenance/v1',
          authorities: [
            {
              kind: 'keyless',
              name: 'ci',
              issuer: 'https://token.actions.githubusercontent.com',
              subject:
                'https://github.com/acme/platform/.github/workflows/build.yml@refs/heads/main',
            },
          ],
          slsa: {
            builderId: 'https://github.com/actions/runner',
            sourceUri: 'git+https://github.com/acme/platform',
          },
        },
        {
          name: 'scan',
          predicateType: 'https://cosign.sigstore.dev/attestation/vuln/v1',
          vulnerabilities: { maxAgeMs: 7 * 86_400_000 },
        },
      ])
      const facts = {
        image: { created: '2024-05-01T00:00:00Z' },
        signatures: [{ verified: false }, { verified: true }],
      }
      assert.equal(p.rules.cel?.evaluate(facts), true)
    })

    it('compiles exceptions, with their expiry', () => {
      const [legacy, debug] = set.exceptions
      assert.equal(legacy?.reason, 'migration in progress, JIRA-123')
      assert.equal(legacy?.owner, 'platform-team@example.com')
      // A date is the whole of that day, in UTC.
      assert.equal(legacy?.expires, Date.UTC(2099, 0, 31, 23, 59, 59, 999))
      assert.deepEqual(legacy?.waives, [{ policy: 'baseline', rules: ['tags', 'maxAge'] }])
      assert.equal(legacy?.images[0]?.digest, DIGEST_1)
      assert.equal(legacy?.images[0]?.upstream, 'docker.io')
      assert.equal(legacy?.images[0]?.repository('acme/legacy'), true)
      assert.equal(debug?.expires, Date.UTC(2099, 5, 30, 18))
      assert.deepEqual(debug?.waives, [{ policy: 'platform-provenance' }])
      assert.equal(debug?.images[0]?.digest, undefined)
      assert.equal(debug?.images[0]?.repository('acme/platform/debug-tools'), true)
    })

    it('returns a frozen set', () => {
      assert.ok(Object.isFrozen(set))
      assert.ok(Object.isFrozen(set.policies))
      assert.ok(Object.isFrozen(set.policies[0]?.rules))
      assert.throws(() =>
        (set.policies as CompiledPolicy[]).push(set.policies[0] as CompiledPolicy)
      )
    })

    it('gives the same revision on every load', async () => {
      const again = await loadPolicies(join(FIXTURES, 'valid'), OPTIONS)
      assert.equal(again.revision, set.revision)
    })
  })

  describe('with the invalid fixture sets', () => {
    it('positions a YAML syntax error', async () => {
      const issues = await loadIssues(join(FIXTURES, 'invalid', 'syntax'))
      const issue = only(issues, 'YAML_SYNTAX')
      assert.equal(issue.file, join(FIXTURES, 'invalid', 'syntax', 'broken.yaml'))
      assert.equal(issue.line, 4)
    })

    it('reports every schema problem of a document at once', async () => {
      const issues = await loadIssues(join(FIXTURES, 'invalid', 'schema'))
      const file = join(FIXTURES, 'invalid', 'schema', 'policy.yaml')
      assert.ok(issues.every((i) => i.file === file))
      const at = (code: PolicyIssue['code'], path: string): [number, number] => {
        const i = only(issues, code, path)
        return [i.line, i.column]
      }
      assert.deepEqual(at('INVALID', 'metadata.name'), [3, 19])
      assert.deepEqual(at('INVALID', 'spec.mode'), [5, 9])
      assert.deepEqual(at('INVALID_GLOB', 'spec.match[0].repository'), [7, 42])
      assert.deepEqual(at('INVALID_REGEX', 'spec.authorities[0].keyless.subjectRegExp'), [10, 86])
      assert.deepEqual(at('DUPLICATE_NAME', 'spec.authorities[1].name'), [11, 15])
      assert.deepEqual(at('INVALID', 'spec.rules.maxLayers'), [13, 16])
      assert.deepEqual(at('INVALID_CEL', 'spec.rules.cel'), [14, 10])
      assert.deepEqual(at('UNKNOWN_FIELD', 'spec.rules.sizeLimit'), [15, 5])
      assert.equal(issues.length, 8)
    })

    it('checks names and references across files', async () => {
      const issues = await loadIssues(join(FIXTURES, 'invalid', 'references'))
      const b = join(FIXTURES, 'invalid', 'references', 'b.yaml')
      const dup = only(issues, 'DUPLICATE_NAME', 'metadata.name')
      assert.deepEqual([dup.file, dup.line], [b, 3])
      const unknown = only(issues, 'UNKNOWN_POLICY', 'spec.waives[0].policy')
      assert.deepEqual([unknown.file, unknown.line], [b, 13])
      const rule = only(issues, 'UNKNOWN_RULE', 'spec.waives[1].rules[0]')
      assert.deepEqual([rule.file, rule.line], [b, 14])
      const settings = only(issues, 'DUPLICATE_SETTINGS', 'kind')
      assert.deepEqual([settings.file, settings.line], [b, 20])
    })
  })

  describe('with folders made for the test', () => {
    let root: string
    before(async () => {
      root = await mkdtemp(join(tmpdir(), 'customs-policies-'))
    })
    after(async () => {
      await rm(root, { recursive: true, force: true })
    })
    let n = 0
    async function folder(files: Record<string, string | Buffer> = {}): Promise<string> {
      const dir = join(root, `case-${n++}`)
      await mkdir(dir, { recursive: true })
      for (const [path, text] of Object.entries(files)) {
        await mkdir(dirname(join(dir, path)), { recursive: true })
        await writeFile(join(dir, path), text)
      }
      return dir
    }

    it('loads an empty folder as an empty set', async () => {
      const set = await loadPolicies(await folder({ 'notes.txt': 'nothing here' }), OPTIONS)
      assert.deepEqual(set.policies, [])
      assert.deepEqual(set.exceptions, [])
      assert.equal(set.unmatched, 'allow')
      assert.match(set.revision, /^[0-9a-f]{16}$/)
    })

    it('refuses a folder that does not exist, naming it', async () => {
      const dir = join(root, 'missing')
      const issue = only(await loadIssues(dir), 'UNREADABLE')
      assert.equal(issue.file, dir)
    })

    it('refuses a file given as the folder', async () => {
      const dir = await folder({ 'a.yaml': minimalPolicy() })
      const issue = only(await loadIssues(join(dir, 'a.yaml')), 'UNREADABLE')
      assert.equal(issue.file, join(dir, 'a.yaml'))
    })

    it('reads *.yaml and *.yml recursively, in path order', async () => {
      const dir = await folder({
        'b.yml': minimalPolicy('b'),
        'a/z.yaml': minimalPolicy('az'),
        'a.yaml': minimalPolicy('a'),
        'c.json': '{}',
        'deep/er/still/d.yaml': minimalPolicy('d'),
      })
      const set = await loadPolicies(dir, OPTIONS)
      assert.deepEqual(
        set.policies.map((p) => p.name),
        ['a', 'az', 'b', 'd']
      )
    })

    it('refuses a file over the size limit unread, naming it', async () => {
      const big = Buffer.alloc(10 * 1024 * 1024, 0x61)
      const dir = await folder({ 'big.yaml': big, 'ok.yaml': minimalPolicy() })
      const issues = await loadIssues(dir)
      const issue = only(issues, 'TOO_LARGE')
      assert.deepEqual([issue.file, issue.line, issue.column], [join(dir, 'big.yaml'), 1, 1])
      assert.equal(issues.length, 1)
    })

    it('refuses a file that is not UTF-8, at the first bad byte', async () => {
      const bytes = Buffer.concat([
        Buffer.from('# ok\nname: ab'),
        Buffer.from([0xff, 0xfe]),
        Buffer.from('\n'),
      ])
      const dir = await folder({ 'latin.yaml': bytes })
      const issue = only(await loadIssues(dir), 'NOT_UTF8')
      assert.deepEqual([issue.file, issue.line, issue.column], [join(dir, 'latin.yaml'), 2, 9])
    })

    it('follows links to files and folders, and ignores loops', async () => {
      const outside = await folder({
        'shared.yaml': minimalPolicy('shared'),
        'sub/inner.yaml': minimalPolicy('inner'),
      })
      const dir = await folder({ 'own.yaml': minimalPolicy('own') })
      await symlink(join(outside, 'shared.yaml'), join(dir, 'linked.yaml'))
      await symlink(join(outside, 'sub'), join(dir, 'linked-dir'))
      await symlink(dir, join(dir, 'loop'))
      const set = await loadPolicies(dir, OPTIONS)
      assert.deepEqual(
        set.policies.map((p) => p.name),
        ['inner', 'shared', 'own']
      )
    })

    it('reads a Kubernetes ConfigMap mount once, through its links', async () => {
      const dir = await folder({
        '..2026_01_01_00_00_00.000/base.yaml': minimalPolicy('base'),
        '..2026_01_01_00_00_00.000/extra.yaml': minimalPolicy('extra'),
      })
      await symlink('..2026_01_01_00_00_00.000', join(dir, '..data'))
      await symlink('..data/base.yaml', join(dir, 'base.yaml'))
      await symlink('..data/extra.yaml', join(dir, 'extra.yaml'))
      const set = await loadPolicies(dir, OPTIONS)
      assert.deepEqual(
        set.policies.map((p) => p.name),
        ['base', 'extra']
      )
    })

    it('reports a link to nothing', async () => {
      const dir = await folder({ 'ok.yaml': minimalPolicy() })
      await symlink(join(dir, 'gone.yaml'), join(dir, 'dangling.yaml'))
      const issue = only(await loadIssues(dir), 'UNREADABLE')
      assert.equal(issue.file, join(dir, 'dangling.yaml'))
    })

    it('refuses a FIFO rather than blocking on it', async (t) => {
      const dir = await folder()
      try {
        execFileSync('mkfifo', [join(dir, 'pipe.yaml')])
      } catch {
        t.skip('mkfifo is not available')
        return
      }
      const issue = only(await loadIssues(dir), 'UNREADABLE')
      assert.equal(issue.file, join(dir, 'pipe.yaml'))
    })

    it('reports problems of every file together, in file order', async () => {
      const dir = await folder({
        'b.yaml': 'kind: Nope\n',
        'a.yaml': minimalPolicy().replace('nonRoot: true', 'nonRoot: yes'),
      })
      const issues = await loadIssues(dir)
      assert.deepEqual(
        issues.map((i) => [i.file, i.code]),
        [
          [join(dir, 'a.yaml'), 'INVALID'],
          // The missing apiVersion is reported where the document starts, before the kind.
          [join(dir, 'b.yaml'), 'INVALID'],
          [join(dir, 'b.yaml'), 'UNKNOWN_KIND'],
        ]
      )
    })
  })
})

describe('parsePolicyDocuments', () => {
  describe('when the text is not YAML', () => {
    it('positions a syntax error', () => {
      const issue = only(
        issuesOf('apiVersion: customs.dev/v1\nkind: @ImagePolicy\n'),
        'YAML_SYNTAX'
      )
      assert.deepEqual(
        [issue.file, issue.line, issue.column, issue.path],
        ['policy.yaml', 2, 7, '']
      )
    })

    it('refuses duplicate keys at the second', () => {
      const issue = only(
        issuesOf(minimalPolicy().replace('spec:', 'kind: ImagePolicy\nspec:')),
        'YAML_SYNTAX'
      )
      assert.deepEqual([issue.line, issue.column], [4, 1])
    })

    it('refuses tabs as indentation', () => {
      const issues = issuesOf('apiVersion: customs.dev/v1\nspec:\n\tmode: audit\n')
      assert.ok(issues.some((i) => i.code === 'YAML_SYNTAX' && i.line === 3))
    })

    it('refuses unknown tags rather than dropping them', () => {
      const issue = only(
        issuesOf(minimalPolicy().replace('nonRoot: true', 'nonRoot: !maybe true')),
        'YAML_SYNTAX'
      )
      assert.equal(issue.line, 6)
    })

    it('refuses keys that are not strings', () => {
      const issues = issuesOf('? [a, b]\n: c\n')
      assert.equal(only(issues, 'YAML_SYNTAX').line, 1)
    })

    it('refuses an alias bomb at its first alias', () => {
      const bomb = yaml`
        apiVersion: customs.dev/v1
        kind: ImagePolicy
        metadata: { name: laughs }
        a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
        b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
        c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
        d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
        e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
        f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
        g: [*f, *f, *f, *f, *f, *f, *f, *f, *f]
      `
      const issue = only(issuesOf(bomb), 'YAML_ALIAS')
      assert.deepEqual([issue.line, issue.column], [5, 8])
    })

    it('refuses an alias to no anchor, at the alias', () => {
      const issue = only(
        issuesOf(minimalPolicy().replace('nonRoot: true', 'nonRoot: *nowhere')),
        'YAML_ALIAS'
      )
      assert.deepEqual([issue.line, issue.column], [6, 21])
    })

    it('accepts a few aliases, as authors reuse lists', () => {
      const text = yaml`
        apiVersion: customs.dev/v1
        kind: ImagePolicy
        metadata: { name: a }
        spec:
          match: &everything [{ repository: "**" }]
          authorities: &static [{ name: pass, static: pass }]
        ---
        apiVersion: customs.dev/v1
        kind: ImagePolicy
        metadata: { name: b }
        spec:
          match: [{ repository: "library/**" }]
          authorities: [{ name: pass, static: pass }]
      `
      assert.equal(load(text).policies.length, 2)
    })

    it('refuses collections nested too deeply, before composing them', () => {
      const deep = `${'['.repeat(20_000)}${']'.repeat(20_000)}`
      const issue = only(issuesOf({ 'deep.yaml': deep }), 'YAML_TOO_DEEP')
      assert.deepEqual([issue.file, issue.line], ['deep.yaml', 1])
      // Nesting the rough scan lets through is measured exactly on the parsed tokens.
      const quoted = `a: "${'['.repeat(500)}"\nb: [${'['.repeat(70)}${']'.repeat(71)}\n`
      assert.deepEqual(pick(only(issuesOf(quoted), 'YAML_TOO_DEEP')), [2, 67])
      assert.deepEqual(
        pick(only(issuesOf(`${'- '.repeat(100_000)}x\n`), 'YAML_TOO_DEEP')),
        [1, 513]
      )
      assert.deepEqual(pick(only(issuesOf(`${'- '.repeat(100)}x\n`), 'YAML_TOO_DEEP')), [1, 129])
      const blocks = Array.from({ length: 100 }, (_, i) => `${' '.repeat(i)}k:`).join('\n')
      assert.equal(only(issuesOf({ 'blocks.yaml': `${blocks} x\n` }), 'YAML_TOO_DEEP').line, 65)
      // What once followed a stack overflow inside yaml: composing a stringified complex key.
      assert.equal(only(issuesOf('? [a]\n: b\n'), 'YAML_SYNTAX').line, 1)
      assert.equal(load(minimalPolicy()).policies.length, 1)
    })

    it(
      'finds duplicate keys in one pass, even among tens of thousands',
      { timeout: 20_000 },
      () => {
        const keys = Array.from({ length: 60_000 }, (_, i) => `k${i}: ${i}`).join('\n')
        const issues = issuesOf(`${keys}\nk7: again\n`)
        const issue = only(issues, 'YAML_SYNTAX')
        assert.deepEqual([issue.line, issue.column], [60_001, 1])
      }
    )

    it('refuses a file of more than a thousand documents', () => {
      const issue = only(issuesOf('---\na: 1\n'.repeat(1001)), 'TOO_MANY_DOCUMENTS')
      assert.equal(issue.line, 2001)
    })

    it('lists a hundred problems per file and counts the rest', () => {
      const issues = issuesOf({
        'a.yaml': '---\nkind: Nope\n'.repeat(60),
        'b.yaml': 'kind: Nope\n',
      })
      assert.equal(issues.filter((i) => i.file === 'a.yaml').length, 101)
      const last = only(issues, 'TOO_MANY_ISSUES')
      assert.deepEqual([last.file, last.path], ['a.yaml', ''])
      assert.equal(issues.filter((i) => i.file === 'b.yaml').length, 2)
    })

    it('refuses bytes that are not UTF-8, at the first bad byte', () => {
      const bytes = Buffer.concat([Buffer.from('a: b\nc: dé'), Buffer.from([0xc3, 0x28])])
      const issue = only(issuesOf({ 'bad.yaml': bytes }), 'NOT_UTF8')
      assert.deepEqual([issue.file, issue.line, issue.column], ['bad.yaml', 2, 6])
    })

    it('accepts UTF-8 bytes with a byte order mark', () => {
      const bytes = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(minimalPolicy())])
      assert.equal(load({ 'bom.yaml': bytes }).policies.length, 1)
    })

    it('refuses a text over the size limit', () => {
      const text = `# ${'x'.repeat(MAX_POLICY_FILE_BYTES)}\n`
      const issue = only(issuesOf({ 'big.yaml': text }), 'TOO_LARGE')
      assert.deepEqual([issue.file, issue.line, issue.column], ['big.yaml', 1, 1])
    })
  })

  describe('when a document is not a policy document', () => {
    it('refuses an unknown kind at the kind', () => {
      const issue = only(
        issuesOf(minimalPolicy().replace('ImagePolicy', 'ClusterImagePolicy')),
        'UNKNOWN_KIND'
      )
      assert.deepEqual([issue.path, issue.line, issue.column], ['kind', 2, 7])
    })

    it('refuses a missing kind', () => {
      const issue = only(
        issuesOf('apiVersion: customs.dev/v1\nmetadata: { name: x }\n'),
        'UNKNOWN_KIND'
      )
      assert.deepEqual([issue.path, issue.line], ['kind', 1])
    })

    it('refuses another apiVersion', () => {
      const issue = only(
        issuesOf(minimalPolicy().replace('customs.dev/v1', 'customs.dev/v2')),
        'INVALID'
      )
      assert.deepEqual([issue.path, issue.line, issue.column], ['apiVersion', 1, 13])
    })

    it('refuses a document that is a list or a scalar', () => {
      const issues = issuesOf(`- a\n- b\n---\njust text\n`)
      assert.deepEqual(
        issues.map((i) => [i.code, i.path, i.line]),
        [
          ['INVALID', '', 1],
          ['INVALID', '', 4],
        ]
      )
    })

    it('ignores empty documents and comment-only files', () => {
      const set = load({
        'a.yaml': '# nothing yet\n',
        'b.yaml': `---\n---\n${minimalPolicy()}---\n# end\n`,
      })
      assert.equal(set.policies.length, 1)
    })
  })

  describe('when a value is wrong', () => {
    it('names the type expected', () => {
      const issue = only(issuesOf(policyDoc('p', 'mode: 5\nmatch: [{}]')), 'INVALID', 'spec.mode')
      assert.deepEqual([issue.line, issue.column], [5, 9])
    })

    it('refuses a key with no value rather than taking it as absent', () => {
      const issue = only(
        issuesOf(policyDoc('p', 'match: [{}]\nauthorities:\n')),
        'INVALID',
        'spec.authorities'
      )
      assert.equal(issue.line, 6)
    })

    it('reports an unknown key at the key', () => {
      const text = policyDoc('p', 'match: [{ repository: "**", tag: v1 }]\nmodes: audit')
      const issues = issuesOf(text)
      const tag = only(issues, 'UNKNOWN_FIELD', 'spec.match[0].tag')
      assert.deepEqual([tag.line, tag.column], [5, 31])
      const modes = only(issues, 'UNKNOWN_FIELD', 'spec.modes')
      assert.deepEqual([modes.line, modes.column], [6, 3])
    })

    it('refuses unknown keys at every level, __proto__ included', () => {
      const text = minimalPolicy().replace('spec:', '__proto__: { polluted: true }\nspec:')
      only(issuesOf(text), 'UNKNOWN_FIELD', '__proto__')
      assert.equal(({} as Record<string, unknown>).polluted, undefined)
    })

    it('requires match, and at least one entry', () => {
      only(issuesOf(policyDoc('p', 'mode: audit')), 'INVALID', 'spec.match')
      only(issuesOf(policyDoc('p', 'match: []')), 'INVALID', 'spec.match')
    })

    it('refuses bad names', () => {
      only(issuesOf(minimalPolicy('Not_A_Name')), 'INVALID', 'metadata.name')
      only(issuesOf(minimalPolicy(`a${'b'.repeat(63)}`)), 'INVALID', 'metadata.name')
    })

    it('refuses durations without a unit, and zero', () => {
      only(
        issuesOf(policyDoc('p', 'match: [{}]\nrules: { maxAge: 365 }')),
        'INVALID',
        'spec.rules.maxAge'
      )
      only(
        issuesOf(policyDoc('p', 'match: [{}]\nrules: { maxAge: "365" }')),
        'INVALID',
        'spec.rules.maxAge'
      )
      only(
        issuesOf(policyDoc('p', 'match: [{}]\nrules: { maxAge: 0d }')),
        'INVALID',
        'spec.rules.maxAge'
      )
      only(
        issuesOf(policyDoc('p', 'match: [{}]\nrules: { maxAge: soon }')),
        'INVALID',
        'spec.rules.maxAge'
      )
    })

    it('refuses bad sizes, layer counts and platforms', () => {
      only(
        issuesOf(policyDoc('p', 'match: [{}]\nrules: { maxSize: 4 gigs }')),
        'INVALID',
        'spec.rules.maxSize'
      )
      only(
        issuesOf(policyDoc('p', 'match: [{}]\nrules: { maxLayers: 0 }')),
        'INVALID',
        'spec.rules.maxLayers'
      )
      only(
        issuesOf(policyDoc('p', 'match: [{}]\nrules: { maxLayers: 1.5 }')),
        'INVALID',
        'spec.rules.maxLayers'
      )
      const issue = only(
        issuesOf(policyDoc('p', 'match: [{}]\nrules:\n  platforms: [linux/amd64, amd64]')),
        'INVALID',
        'spec.rules.platforms[1]'
      )
      assert.deepEqual([issue.line, issue.column], [7, 30])
    })

    it('validates digests', () => {
      const text = policyDoc(
        'p',
        `match: [{}]\nrules:\n  digests:\n    allow: [${DIGEST_1}, sha256:abc, md5:${'a'.repeat(32)}]`
      )
      const issues = issuesOf(text)
      assert.equal(only(issues, 'INVALID', 'spec.rules.digests.allow[1]').line, 8)
      assert.equal(only(issues, 'INVALID', 'spec.rules.digests.allow[2]').line, 8)
    })

    it('refuses a rule set to a value of the wrong kind', () => {
      only(
        issuesOf(policyDoc('p', 'match: [{}]\nrules: { nonRoot: "yes" }')),
        'INVALID',
        'spec.rules.nonRoot'
      )
      only(
        issuesOf(policyDoc('p', 'match: [{}]\nrules: { tags: [v1] }')),
        'INVALID',
        'spec.rules.tags'
      )
    })
  })

  describe('globs', () => {
    it('lets ** cross / and * not', () => {
      const library = compileGlobs(['library/**'])
      assert.equal(library('library/a'), true)
      assert.equal(library('library/a/b'), true)
      assert.equal(library('other/a'), false)
      const one = compileGlobs(['library/*'])
      assert.equal(one('library/a'), true)
      assert.equal(one('library/a/b'), false)
      const any = compileGlobs(['**'])
      assert.equal(any('a'), true)
      assert.equal(any('a/b/c'), true)
    })

    it('matches tags, braces and negations', () => {
      const tags = compileGlobs(['v*', '1.{2,3}.*', 'release-?'])
      assert.deepEqual(
        ['v1', 'v1.2.3', '1.2.9', '1.4.0', 'release-a', 'release-ab', 'latest'].map(tags),
        [true, true, true, false, true, false, false]
      )
      assert.equal(compileGlobs(['!latest'])('v1'), true)
      assert.equal(compileGlobs(['!latest'])('latest'), false)
    })

    it('compiles the repository default as every repository', () => {
      const set = load(policyDoc('p', 'match: [{ upstream: quay.io }]'))
      const [m] = policyNamed(set, 'p').match
      assert.equal(m?.upstream, 'quay.io')
      assert.equal(m?.repository('a/b/c'), true)
    })

    for (const [pattern, why] of [
      ['library/[z-a]', 'a reversed range'],
      ['library/[abc', 'an unclosed ['],
      ['library/{a,b', 'an unclosed {'],
      ['nginx:latest', 'a tag in the repository'],
      ['nginx@sha256:abc', 'a digest in the repository'],
      ['Library/nginx', 'an uppercase letter'],
      ['/library/nginx', 'a leading /'],
      ['library/ nginx', 'a space'],
      ['', 'nothing'],
    ] as const) {
      it(`refuses a repository glob with ${why}`, () => {
        const issue = only(
          issuesOf(policyDoc('p', `match:\n  - { repository: ${JSON.stringify(pattern)} }`)),
          'INVALID_GLOB',
          'spec.match[0].repository'
        )
        assert.deepEqual([issue.line, issue.column], [6, 21])
      })
    }

    it('refuses bad tag globs, at the entry', () => {
      const text = policyDoc('p', 'match: [{}]\nrules:\n  tags: { allow: ["v*", "v/1", "[z-a]"] }')
      const issues = issuesOf(text)
      assert.equal(only(issues, 'INVALID_GLOB', 'spec.rules.tags.allow[1]').line, 7)
      assert.equal(only(issues, 'INVALID_GLOB', 'spec.rules.tags.allow[2]').line, 7)
    })

    it('refuses an empty list of tags (omit it to allow every tag)', () => {
      only(
        issuesOf(policyDoc('p', 'match: [{}]\nrules: { tags: { allow: [] } }')),
        'INVALID',
        'spec.rules.tags.allow'
      )
    })

    it('matches label values as globs', () => {
      const set = load(
        policyDoc(
          'p',
          'match: [{}]\nrules:\n  labels: { source: "https://github.com/acme/**", team: "core-*" }'
        )
      )
      const [source, team] = policyNamed(set, 'p').rules.labels ?? []
      assert.equal(source?.value('https://github.com/acme/app'), true)
      assert.equal(source?.value('https://gitlab.com/acme/app'), false)
      assert.equal(team?.value('core-infra'), true)
      assert.equal(team?.value(''), false)
    })
  })

  describe('authorities', () => {
    const withAuthorities = (list: string, extra = ''): string =>
      policyDoc('p', `match: [{}]\nauthorities:\n${list}${extra}`)

    it('refuses an invalid subjectRegExp, compiled as the evaluator will', () => {
      const issue = only(
        issuesOf(
          withAuthorities(
            '  - name: ci\n    keyless: { issuer: "https://i.example", subjectRegExp: "a\\\\-b" }'
          )
        ),
        'INVALID_REGEX',
        'spec.authorities[0].keyless.subjectRegExp'
      )
      assert.equal(issue.line, 8)
    })

    it('requires exactly one of subject and subjectRegExp', () => {
      const both =
        '  - name: ci\n    keyless: { issuer: "https://i.example", subject: a, subjectRegExp: a }'
      only(issuesOf(withAuthorities(both)), 'INVALID', 'spec.authorities[0].keyless')
      const neither = '  - name: ci\n    keyless: { issuer: "https://i.example" }'
      only(issuesOf(withAuthorities(neither)), 'INVALID', 'spec.authorities[0].keyless')
    })

    it('accepts only the Fulcio extensions by name', () => {
      const text = withAuthorities(
        '  - name: ci\n    keyless:\n      issuer: https://i.example\n      subject: a\n      extensions: { githubWorkflowRef: x }'
      )
      const issue = only(
        issuesOf(text),
        'UNKNOWN_FIELD',
        'spec.authorities[0].keyless.extensions.githubWorkflowRef'
      )
      assert.deepEqual([issue.line, issue.column], [11, 23])
    })

    it('requires exactly one of keyless, key and static', () => {
      only(
        issuesOf(withAuthorities('  - { name: a, static: pass, key: { name: release } }')),
        'INVALID',
        'spec.authorities[0]'
      )
      only(issuesOf(withAuthorities('  - { name: a }')), 'INVALID', 'spec.authorities[0]')
    })

    it('refuses a key that trust.keys does not have', () => {
      const issue = only(
        issuesOf(withAuthorities('  - { name: k, key: { name: other } }')),
        'UNKNOWN_TRUST_KEY',
        'spec.authorities[0].key.name'
      )
      assert.deepEqual([issue.line, issue.column], [7, 31])
      const set = load(withAuthorities('  - { name: k, key: { name: other } }'), {
        keyNames: new Set(['other']),
      })
      assert.deepEqual(policyNamed(set, 'p').authorities, [
        { kind: 'key', name: 'k', key: 'other' },
      ])
    })

    it('checks attestation authorities too', () => {
      const text = policyDoc(
        'p',
        'match: [{}]\nattestations:\n  - name: prov\n    predicateType: https://slsa.dev/provenance/v1\n    authorities: [{ name: k, key: { name: nope } }]'
      )
      only(issuesOf(text), 'UNKNOWN_TRUST_KEY', 'spec.attestations[0].authorities[0].key.name')
    })

    it('refuses duplicate authority and attestation names within a policy', () => {
      const issues = issuesOf(
        policyDoc(
          'p',
          'match: [{}]\nauthorities: [{ name: a, static: pass }, { name: a, static: fail }]\nattestations:\n  - { name: x, predicateType: t }\n  - { name: x, predicateType: u }'
        )
      )
      assert.equal(only(issues, 'DUPLICATE_NAME', 'spec.authorities[1].name').line, 6)
      assert.equal(only(issues, 'DUPLICATE_NAME', 'spec.attestations[1].name').line, 9)
    })

    it('bounds authoritiesRequired by the authorities', () => {
      const two = '  - { name: a, static: pass }\n  - { name: b, key: { name: release } }'
      assert.equal(
        policyNamed(load(withAuthorities(two, '\nauthoritiesRequired: 2')), 'p')
          .authoritiesRequired,
        2
      )
      const issue = only(
        issuesOf(withAuthorities(two, '\nauthoritiesRequired: 3')),
        'INVALID',
        'spec.authoritiesRequired'
      )
      assert.equal(issue.line, 9)
      only(
        issuesOf(policyDoc('p', 'match: [{}]\nauthoritiesRequired: 1')),
        'INVALID',
        'spec.authoritiesRequired'
      )
      only(
        issuesOf(withAuthorities(two, '\nauthoritiesRequired: 0')),
        'INVALID',
        'spec.authoritiesRequired'
      )
    })

    it('requires no authority of a policy that lists none', () => {
      const p = policyNamed(load(minimalPolicy('p')), 'p')
      assert.deepEqual(p.authorities, [])
      assert.equal(p.authoritiesRequired, 0)
    })
  })

  describe('names across the set', () => {
    it('refuses two policies of one name, in two files, at the second', () => {
      const issue = only(
        issuesOf({ 'a.yaml': minimalPolicy(), 'b.yaml': minimalPolicy() }),
        'DUPLICATE_NAME'
      )
      assert.deepEqual([issue.file, issue.path, issue.line], ['b.yaml', 'metadata.name', 3])
    })

    it('refuses two exceptions of one name', () => {
      const e = exceptionDoc(
        'e',
        'images: [{ repository: a/b }]\nwaives: [{ policy: baseline }]\nreason: r\nowner: o\nexpires: 2030-01-01'
      )
      const issue = only(
        issuesOf(`${minimalPolicy()}---\n${e}---\n${e}`),
        'DUPLICATE_NAME',
        'metadata.name'
      )
      assert.equal(issue.line, 20)
    })

    it('lets a policy and an exception share a name', () => {
      const e = exceptionDoc(
        'baseline',
        'images: [{ repository: a/b }]\nwaives: [{ policy: baseline }]\nreason: r\nowner: o\nexpires: 2030-01-01'
      )
      assert.equal(load(`${minimalPolicy()}---\n${e}`).exceptions.length, 1)
    })
  })

  describe('exceptions', () => {
    const exception = (spec: string): string => `${minimalPolicy()}---\n${exceptionDoc('e', spec)}`
    const BASE =
      'images: [{ repository: "acme/*" }]\nwaives: [{ policy: baseline }]\nreason: r\nowner: o\n'

    it('refuses a waiver of a policy that is not in the set', () => {
      const issue = only(
        issuesOf(
          exception(BASE.replace('policy: baseline', 'policy: base-line') + 'expires: 2030-01-01')
        ),
        'UNKNOWN_POLICY',
        'spec.waives[0].policy'
      )
      assert.deepEqual([issue.line, issue.column], [13, 22])
    })

    it('refuses a waiver of a rule the policy does not have', () => {
      const spec = BASE.replace('policy: baseline', 'policy: baseline, rules: [tags, nonRoot]')
      const issues = issuesOf(exception(`${spec}expires: 2030-01-01`))
      const issue = only(issues, 'UNKNOWN_RULE', 'spec.waives[0].rules[0]')
      assert.deepEqual([issue.line, issue.column], [13, 40])
      assert.equal(issues.length, 1)
    })

    it('refuses a waiver of a rule that does not exist', () => {
      const spec = BASE.replace('policy: baseline', 'policy: baseline, rules: [speed]')
      only(issuesOf(exception(`${spec}expires: 2030-01-01`)), 'INVALID', 'spec.waives[0].rules[0]')
    })

    it('requires an image to name a repository or a digest', () => {
      only(
        issuesOf(
          exception(
            BASE.replace('repository: "acme/*"', 'upstream: docker.io') + 'expires: 2030-01-01'
          )
        ),
        'INVALID',
        'spec.images[0]'
      )
      const set = load(
        exception(
          BASE.replace('repository: "acme/*"', `digest: "${DIGEST_1}"`) + 'expires: 2030-01-01'
        )
      )
      const image = set.exceptions[0]?.images[0]
      assert.equal(image?.digest, DIGEST_1)
      assert.equal(image?.repository('any/thing'), true)
    })

    it('requires a reason and an owner', () => {
      const issues = issuesOf(
        exception(
          BASE.replace('reason: r', 'reason: "  "').replace('owner: o\n', '') +
            'expires: 2030-01-01'
        )
      )
      only(issues, 'INVALID', 'spec.reason')
      only(issues, 'INVALID', 'spec.owner')
    })

    it('parses dates and timestamps as the moment the exception ends', () => {
      assert.equal(parseExpiry('2027-01-31'), Date.UTC(2027, 0, 31, 23, 59, 59, 999))
      assert.equal(parseExpiry('2027-01-31T12:00:00Z'), Date.UTC(2027, 0, 31, 12))
      assert.equal(parseExpiry('2027-01-31T12:00:00+02:00'), Date.UTC(2027, 0, 31, 10))
      assert.equal(parseExpiry('2027-01-31 12:30:00.5Z'), Date.UTC(2027, 0, 31, 12, 30, 0, 500))
      const set = load(exception(`${BASE}expires: 2027-01-31`))
      assert.equal(set.exceptions[0]?.expires, Date.UTC(2027, 0, 31, 23, 59, 59, 999))
      const quoted = load(exception(`${BASE}expires: "2027-01-31T08:00:00Z"`))
      assert.equal(quoted.exceptions[0]?.expires, Date.UTC(2027, 0, 31, 8))
    })

    for (const bad of [
      '2027-02-30',
      '2027-13-01',
      '31/01/2027',
      '2027-01-31T12:00:00',
      'next week',
      '2027',
    ]) {
      it(`refuses the expiry ${bad}`, () => {
        const issue = only(issuesOf(exception(`${BASE}expires: ${bad}`)), 'INVALID', 'spec.expires')
        assert.equal(issue.line, 16)
      })
    }

    it('loads an expired exception with a warning at its expiry', () => {
      const set = load(exception(`${BASE}expires: 2025-12-31`), {
        keyNames: KEYS,
        now: () => Date.UTC(2026, 5, 1),
      })
      assert.equal(set.exceptions.length, 1)
      const [warning] = set.warnings ?? []
      assert.equal(warning?.code, 'EXPIRED_EXCEPTION')
      assert.deepEqual([warning?.path, warning?.line], ['spec.expires', 16])
      const fresh = load(exception(`${BASE}expires: 2025-12-31`), {
        keyNames: KEYS,
        now: () => Date.UTC(2025, 11, 31, 12),
      })
      assert.equal(fresh.warnings, undefined)
    })
  })

  describe('settings', () => {
    const settings = (spec: string, name = 'settings'): string =>
      `apiVersion: customs.dev/v1\nkind: PolicySettings\nmetadata: { name: ${name} }\nspec: ${spec}\n`

    it('default unmatched images to allow', () => {
      assert.equal(load(minimalPolicy()).unmatched, 'allow')
      assert.equal(load(settings('{}')).unmatched, 'allow')
      assert.equal(load(settings('{ unmatched: deny }')).unmatched, 'deny')
    })

    it('refuses a second settings document and a bad value', () => {
      const issue = only(
        issuesOf({ 'a.yaml': settings('{}'), 'b.yaml': settings('{}', 'other') }),
        'DUPLICATE_SETTINGS'
      )
      assert.deepEqual([issue.file, issue.line], ['b.yaml', 2])
      only(issuesOf(settings('{ unmatched: block }')), 'INVALID', 'spec.unmatched')
    })
  })

  describe('upstreams', () => {
    it('are checked against the configured ones when given', () => {
      const text = policyDoc(
        'p',
        'match:\n  - { upstream: docker.io }\n  - { upstream: dockerhub.io }'
      )
      const options = { keyNames: KEYS, upstreams: new Set(['docker.io', 'ghcr.io']) }
      const issue = only(issuesOf(text, options), 'UNKNOWN_UPSTREAM', 'spec.match[1].upstream')
      assert.deepEqual([issue.line, issue.column], [7, 19])
      assert.equal(load(text).policies.length, 1, 'not checked without the option')
    })

    it('must be registry hosts', () => {
      only(
        issuesOf(policyDoc('p', 'match: [{ upstream: "https://ghcr.io" }]')),
        'INVALID',
        'spec.match[0].upstream'
      )
    })

    it('warn about one-component Docker Hub names, which Customs sees under library/', () => {
      const set = load(
        policyDoc(
          'p',
          'match:\n  - { upstream: docker.io, repository: nginx }\n  - { upstream: docker.io, repository: "library/nginx" }'
        )
      )
      const [warning, ...rest] = set.warnings ?? []
      assert.equal(rest.length, 0)
      assert.deepEqual(
        [warning?.code, warning?.path, warning?.line],
        ['DOCKER_HUB_NAME', 'spec.match[0].repository', 6]
      )
    })
  })

  describe('issues', () => {
    it('are sorted by file, then line and column', () => {
      const issues = issuesOf({
        'z.yaml': 'kind: Nope\n',
        'a.yaml': policyDoc('p', 'mode: x\nmatch: []\nrules: { nonRoot: 1 }'),
      })
      assert.deepEqual(
        issues.map((i) => [i.file, i.line]),
        [
          ['a.yaml', 5],
          ['a.yaml', 6],
          ['a.yaml', 7],
          ['z.yaml', 1],
          ['z.yaml', 1],
        ]
      )
    })

    it('read file:line:column path: message in the error message', () => {
      try {
        load(policyDoc('p', 'mode: x\nmatch: [{}]'))
        assert.fail('expected a PolicyError')
      } catch (err) {
        assert.ok(err instanceof PolicyError)
        assert.match(err.message, /^policy\.yaml:5:9 spec\.mode: /)
      }
    })
  })
})

describe('revision', () => {
  const files = {
    'a.yaml': minimalPolicy('a'),
    'b.yaml': `${minimalPolicy('b')}---\n${minimalPolicy('c')}`,
  }

  it('is 16 hex characters, the same on every load and whatever the files order', () => {
    const first = load(files).revision
    assert.match(first, /^[0-9a-f]{16}$/)
    assert.equal(load(files).revision, first)
    assert.equal(load({ 'b.yaml': files['b.yaml'], 'a.yaml': files['a.yaml'] }).revision, first)
  })

  it('ignores comments, formatting, key order and file names', () => {
    const first = load(files).revision
    const reformatted = {
      'a.yaml': `# the a policy\n${minimalPolicy('a').replace('rules: { nonRoot: true }', 'rules:\n    nonRoot: true')}`,
      'b.yaml': files['b.yaml'],
    }
    assert.equal(load(reformatted).revision, first)
    const reordered = {
      'a.yaml': minimalPolicy('a').replace(
        'apiVersion: customs.dev/v1\nkind: ImagePolicy',
        'kind: ImagePolicy\napiVersion: customs.dev/v1'
      ),
      'b.yaml': files['b.yaml'],
    }
    assert.equal(load(reordered).revision, first)
    assert.equal(load({ '1.yaml': files['a.yaml'], '2.yaml': files['b.yaml'] }).revision, first)
  })

  it('changes when a document changes, is added or moves', () => {
    const first = load(files).revision
    const changed = {
      ...files,
      'a.yaml': minimalPolicy('a').replace('nonRoot: true', 'nonRoot: false'),
    }
    assert.notEqual(load(changed).revision, first)
    const added = { ...files, 'c.yaml': minimalPolicy('d') }
    assert.notEqual(load(added).revision, first)
    const swapped = {
      'a.yaml': files['a.yaml'],
      'b.yaml': `${minimalPolicy('c')}---\n${minimalPolicy('b')}`,
    }
    assert.notEqual(load(swapped).revision, first)
  })
})

describe('parsePolicyDocuments input', () => {
  it('accepts an empty list of files', () => {
    const set = parsePolicyDocuments([], OPTIONS)
    assert.deepEqual([set.policies.length, set.exceptions.length, set.unmatched], [0, 0, 'allow'])
  })
})
