import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { CustomsError } from '../../../src/errors.js'
import { parseDigest } from '../../../src/oci/digest.js'
import { isRepositoryName, parseReference, referrersTag } from '../../../src/oci/reference.js'

const HEX = 'a'.repeat(64)

describe('parseReference', () => {
  it('returns a tag for a valid tag', () => {
    assert.deepEqual(parseReference('3.19'), { kind: 'tag', tag: '3.19' })
  })
  it('returns a digest for a sha256 digest', () => {
    assert.deepEqual(parseReference(`sha256:${HEX}`), { kind: 'digest', digest: `sha256:${HEX}` })
  })
  for (const bad of [`sha256:${'A'.repeat(64)}`, `sha256:${HEX}0`, `md5:${'a'.repeat(32)}`, 'sha256:', ':x']) {
    it(`rejects the digest ${bad.slice(0, 20)} with DIGEST_INVALID`, () => {
      assert.throws(() => parseReference(bad), (e: unknown) => e instanceof CustomsError && e.code === 'DIGEST_INVALID')
    })
  }
  for (const bad of ['-x', '.x', 'a'.repeat(129), 'a/b', '']) {
    it(`rejects the tag ${JSON.stringify(bad.slice(0, 20))} with TAG_INVALID`, () => {
      assert.throws(() => parseReference(bad), (e: unknown) => e instanceof CustomsError && e.code === 'TAG_INVALID')
    })
  }
})

describe('isRepositoryName', () => {
  it('accepts nested lowercase names', () => {
    assert.ok(isRepositoryName('library/alpine'))
    assert.ok(isRepositoryName('a/b__c/d-e.f'))
  })
  for (const bad of ['..', 'a/../b', 'A/b', 'a//b', '/a', 'a/', 'a%2fb', 'a'.repeat(256)]) {
    it(`rejects ${JSON.stringify(bad.slice(0, 20))}`, () => assert.equal(isRepositoryName(bad), false))
  }
})

describe('referrersTag', () => {
  it('is sha256-<hex> for a sha256 digest', () => {
    assert.equal(referrersTag(parseDigest(`sha256:${HEX}`)), `sha256-${HEX}`)
  })
})
