// Parsing WWW-Authenticate challenges: schemes, quoted and unquoted auth-params, hostile and
// oversized headers, and properties over generated headers.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { parseChallenge } from '../../../src/upstream/challenge.js'

const DOCKER_HUB =
  'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",' +
  'scope="repository:library/alpine:pull"'

describe('parseChallenge', () => {
  describe('when the header is absent or names no supported scheme', () => {
    for (const header of [
      null,
      '',
      '   ',
      'Digest realm="x"',
      'Negotiate abc',
      'Bearerx realm="a"',
      'realm="a"',
    ]) {
      it(`returns undefined for ${JSON.stringify(header)}`, () => {
        assert.equal(parseChallenge(header), undefined)
      })
    }
  })

  describe('when the header is a Docker Hub Bearer challenge', () => {
    it('returns the scheme and every param', () => {
      assert.deepEqual(parseChallenge(DOCKER_HUB), {
        scheme: 'bearer',
        params: {
          realm: 'https://auth.docker.io/token',
          service: 'registry.docker.io',
          scope: 'repository:library/alpine:pull',
        },
      })
    })
  })

  describe('when the header is a Basic challenge', () => {
    it('returns basic with its realm', () => {
      assert.deepEqual(parseChallenge('Basic realm="Registry Realm"'), {
        scheme: 'basic',
        params: { realm: 'Registry Realm' },
      })
    })

    it('returns basic with no params for a bare scheme', () => {
      assert.deepEqual(parseChallenge('Basic'), { scheme: 'basic', params: {} })
    })
  })

  describe('when scheme and keys vary in case', () => {
    it('returns the scheme and keys lower-cased and the values as sent', () => {
      assert.deepEqual(parseChallenge('BEARER Realm="https://A.example/Token",SERVICE=Reg'), {
        scheme: 'bearer',
        params: { realm: 'https://A.example/Token', service: 'Reg' },
      })
      assert.equal(parseChallenge('bAsIc realm=x')?.scheme, 'basic')
    })
  })

  describe('when quoted values hold commas, escaped quotes and backslashes', () => {
    it('returns the values unescaped and whole', () => {
      const header =
        'Bearer scope="repository:a/b:pull,push repository:c:pull",' +
        'error="say \\"hi\\", \\\\ ok",x=y'
      assert.deepEqual(parseChallenge(header)?.params, {
        scope: 'repository:a/b:pull,push repository:c:pull',
        error: 'say "hi", \\ ok',
        x: 'y',
      })
    })

    it('returns an empty quoted value as the empty string', () => {
      assert.deepEqual(parseChallenge('Bearer realm="",service=s')?.params, {
        realm: '',
        service: 's',
      })
    })
  })

  describe('when values are unquoted', () => {
    it('returns each value up to the next comma', () => {
      assert.deepEqual(
        parseChallenge(
          'Bearer realm=https://auth.example/token?x=1 , service=svc,scope=repository:a:pull'
        )?.params,
        { realm: 'https://auth.example/token?x=1', service: 'svc', scope: 'repository:a:pull' }
      )
    })

    it('returns an empty value for a key with nothing after its equals sign', () => {
      assert.deepEqual(parseChallenge('Bearer realm=')?.params, { realm: '' })
    })
  })

  describe('when there is whitespace around the separators', () => {
    it('returns the params', () => {
      assert.deepEqual(parseChallenge('  Bearer   realm = "r" ,  service =  s  ')?.params, {
        realm: 'r',
        service: 's',
      })
    })
  })

  describe('when a key repeats', () => {
    it('returns the first value, so a later param cannot override the realm', () => {
      assert.deepEqual(
        parseChallenge('Bearer realm="https://good/t",REALM="https://evil/t"')?.params,
        {
          realm: 'https://good/t',
        }
      )
    })
  })

  describe('when a scope param is repeated with several scopes in one value', () => {
    it('returns the space-separated scopes as one string', () => {
      const c = parseChallenge('Bearer realm="r",scope="repository:a:pull repository:b:pull"')
      assert.equal(c?.params.scope, 'repository:a:pull repository:b:pull')
    })
  })

  describe('when the params are malformed', () => {
    it('returns the params before the first bad one, and nothing after it', () => {
      assert.deepEqual(parseChallenge('Bearer realm="r",service="unterminated,scope=x')?.params, {
        realm: 'r',
      })
      assert.deepEqual(parseChallenge('Bearer realm="a" service="b"')?.params, {})
      assert.deepEqual(parseChallenge('Bearer ,,,')?.params, {})
      assert.deepEqual(parseChallenge('Bearer =x,realm=r')?.params, {})
      assert.deepEqual(parseChallenge('Bearer realm="a"junk')?.params, {})
    })

    it('returns basic and no realm for a Basic token68 value', () => {
      const c = parseChallenge('Basic dXNlcjpwYXNz==')
      assert.equal(c?.scheme, 'basic')
      assert.equal(c?.params.realm, undefined)
    })

    it('does not let a param key named __proto__ change the params prototype', () => {
      const c = parseChallenge('Bearer __proto__=x,realm=r')
      const proto: unknown = Object.getPrototypeOf(c?.params)
      assert.ok(proto === Object.prototype || proto === null)
      assert.equal(c?.params.realm, 'r')
    })

    it('returns params whose names are also Object.prototype members', () => {
      const c = parseChallenge('Bearer constructor="c",toString=t,realm=r')
      assert.equal(Object.hasOwn(c?.params ?? {}, 'constructor'), true)
      assert.equal(c?.params.constructor, 'c')
      assert.equal(c?.params.tostring, 't')
      assert.equal(c?.params.realm, 'r')
    })
  })

  describe('when the header is oversized', () => {
    it('returns undefined over 8192 characters', () => {
      const header = `Bearer realm="${'a'.repeat(8192)}"`
      assert.equal(parseChallenge(header), undefined)
    })

    it('returns the challenge at exactly 8192 characters', () => {
      const prefix = 'Bearer realm="'
      const header = `${prefix}${'a'.repeat(8192 - prefix.length - 1)}"`
      assert.equal(header.length, 8192)
      assert.equal(parseChallenge(header)?.params.realm?.length, 8192 - prefix.length - 1)
    })

    it('returns quickly for a long run of backslashes and quotes', () => {
      const started = performance.now()
      parseChallenge(`Bearer realm="${'\\"'.repeat(4000)}`)
      parseChallenge(`Bearer ${'a=,'.repeat(2700)}`)
      assert.ok(performance.now() - started < 500)
    })
  })

  describe('when several challenges are joined in one header (as Headers.get joins them)', () => {
    it('returns the Bearer challenge first in the header with its own params', () => {
      const c = parseChallenge('Bearer realm="https://a/t",service="s", Basic realm="b"')
      assert.equal(c?.scheme, 'bearer')
      assert.equal(c?.params.realm, 'https://a/t')
      assert.equal(c?.params.service, 's')
    })

    // The doc comment promises "the first Bearer or Basic challenge in the header".
    it('returns a Bearer challenge that follows another scheme', () => {
      const c = parseChallenge('Negotiate, Bearer realm="https://a/t",service="s"')
      assert.equal(c?.scheme, 'bearer')
      assert.equal(c?.params.realm, 'https://a/t')
    })

    it('returns a Basic challenge that follows another scheme', () => {
      const c = parseChallenge('Negotiate abc==, Basic realm="r"')
      assert.deepEqual(c, { scheme: 'basic', params: { realm: 'r' } })
    })

    it('does not take a scheme name inside a quoted value for a challenge', () => {
      assert.deepEqual(parseChallenge('Basic realm="Log in, bearer of good news"'), {
        scheme: 'basic',
        params: { realm: 'Log in, bearer of good news' },
      })
      assert.equal(parseChallenge('Negotiate error="x, Bearer realm=https://a/t"'), undefined)
    })
  })
})

// ---------------------------------------------------------------------------------------------
// Properties

const keyArb = fc.oneof(
  fc.stringMatching(/^[A-Za-z0-9_.-]{1,12}$/),
  // Names an object literal already has: the parser must still keep them as params.
  fc.constantFrom('constructor', 'toString', 'valueOf', 'hasOwnProperty', '__proto__')
)
const quotedValueArb = fc.string({ maxLength: 40 })
const tokenValueArb = fc.stringMatching(/^[A-Za-z0-9!#$%&'*+.^_`|~:/?=@-]{0,30}$/)

/** A param list with keys unique ignoring case, each value quoted or not. */
const paramsArb = fc.uniqueArray(
  fc.tuple(
    keyArb,
    fc.oneof(
      quotedValueArb.map((v) => ({ v, q: true })),
      tokenValueArb.map((v) => ({ v, q: false }))
    )
  ),
  {
    selector: ([k]) => k.toLowerCase(),
    maxLength: 8,
  }
)

function quote(value: string): string {
  return `"${value.replace(/[\\"]/g, (c) => `\\${c}`)}"`
}

describe('parseChallenge properties', () => {
  it('never throws on arbitrary strings', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 300 }), (s) => {
        parseChallenge(s)
        parseChallenge(`Bearer ${s}`)
        parseChallenge(`Basic realm="${s}`)
      }),
      { numRuns: 500 }
    )
  })

  it('never throws on strings built from the characters the grammar cares about', () => {
    const grammar = fc.string({
      unit: fc.constantFrom('a', 'B', '=', ',', '"', '\\', ' ', '\t', '\n', '.', '_', '-'),
      maxLength: 200,
    })
    fc.assert(
      fc.property(grammar, (s) => {
        const c = parseChallenge(`bearer ${s}`)
        assert.ok(c !== undefined)
        for (const v of Object.values(c.params)) assert.equal(typeof v, 'string')
      }),
      { numRuns: 500 }
    )
  })

  it('recovers every key (lower-cased) and value of a well-formed challenge', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('Bearer', 'bearer', 'BASIC', 'Basic'),
        paramsArb,
        fc.constantFrom(',', ', ', ' , ', ',\t'),
        (scheme, params, sep) => {
          const list = params.map(([k, { v, q }]) => `${k}=${q ? quote(v) : v}`)
          const header = `${scheme} ${list.join(sep)}`
          const c = parseChallenge(header)
          assert.ok(c !== undefined)
          assert.equal(c.scheme, scheme.toLowerCase())
          const expected = Object.fromEntries(params.map(([k, { v }]) => [k.toLowerCase(), v]))
          assert.deepEqual({ ...c.params }, expected)
        }
      ),
      { numRuns: 500 }
    )
  })
})
